"""Packs one static executable into an OCI image layout tarball (what `ctr images import`
reads): a single uncompressed layer holding it at /<name>, the image config with it as the
entrypoint, the manifest, index.json naming the image, and oci-layout. Every blob is
addressed by its sha256 digest, as the OCI image spec requires. Needs nothing but Python.

Usage: oci_image.py EXECUTABLE IMAGE_NAME OUTPUT_TAR
  IMAGE_NAME is a full reference, e.g. localhost/nodenet-test/pause:3.9
"""

import hashlib
import io
import json
import os
import sys
import tarfile


def blob(data):
    return "sha256:" + hashlib.sha256(data).hexdigest(), data


def tar_bytes(entries):
    """A deterministic tar (fixed owner and time) of (name, bytes, mode) entries."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data, mode in entries:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime, info.uid, info.gid = len(data), mode, 0, 0, 0
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def main():
    executable, image, output = sys.argv[1:4]
    name = os.path.basename(executable)
    with open(executable, "rb") as f:
        program = f.read()
    # Uncompressed, so the layer's digest is also its diff_id.
    layer_digest, layer = blob(tar_bytes([(name, program, 0o755)]))
    config_digest, config = blob(json.dumps({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": ["/" + name], "User": "65535:65535", "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    }, sort_keys=True).encode())
    manifest_digest, manifest = blob(json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": len(layer)}],
    }, sort_keys=True).encode())
    index = json.dumps({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": len(manifest),
            "platform": {"architecture": "amd64", "os": "linux"},
            # containerd names the imported image after this annotation; the tag alone is
            # the OCI spec's own ref.name.
            "annotations": {"io.containerd.image.name": image,
                            "org.opencontainers.image.ref.name": image.rsplit(":", 1)[-1]},
        }],
    }, sort_keys=True).encode()
    entries = [("oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode(), 0o644),
               ("index.json", index, 0o644)]
    for digest, data in [(layer_digest, layer), (config_digest, config), (manifest_digest, manifest)]:
        entries.append(("blobs/sha256/" + digest.split(":", 1)[1], data, 0o644))
    with open(output, "wb") as f:
        f.write(tar_bytes(entries))
    print(manifest_digest)


if __name__ == "__main__":
    main()
