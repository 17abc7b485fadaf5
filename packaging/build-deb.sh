#!/usr/bin/env bash
# Builds dist/nodenet_<version>_<arch>.deb from the release binary with dpkg-deb.
# Usage: packaging/build-deb.sh [--binary PATH]   (default: builds the release binaries first;
#   with --binary, nodenet-cni is taken from the same directory)
# Prints the path of the .deb on stdout (build output goes to stderr).
# The files are install.sh's layout, including both plugin links: /opt/cni/bin/nodenet (upstream
# runtimes) and /usr/lib/cni/nodenet (Debian's containerd and podman), each -> /usr/bin/nodenet-cni.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
binary=""
[ "${1:-}" = "--binary" ] && binary=$2
if [ -z "$binary" ]; then
  swift build -c release --static-swift-stdlib --product nodenet >&2
  swift build -c release --static-swift-stdlib --product nodenet-cni >&2
  binary="$here/.build/release/nodenet"
fi
version=$("$binary" version | awk '{print $2}')
arch=$(dpkg --print-architecture)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
chmod 0755 "$stage"
packaging/install.sh --destdir "$stage" --binary "$binary"
for link in opt/cni/bin/nodenet usr/lib/cni/nodenet; do
  [ "$(readlink "$stage/$link")" = /usr/bin/nodenet-cni ] || { echo "build-deb.sh: /$link is not a link to /usr/bin/nodenet-cni" >&2; exit 1; }
done
strip --strip-unneeded "$stage/usr/bin/nodenet" "$stage/usr/bin/nodenet-cni"
mkdir -p "$stage/DEBIAN"
cat > "$stage/DEBIAN/control" <<CONTROL
Package: nodenet
Version: $version
Architecture: $arch
Maintainer: nodenet developers <dev@nodenet.invalid>
Depends: libmnl0, libsystemd0, libsqlite3-0, iproute2
Recommends: nftables, conntrack
Section: net
Priority: optional
Description: Kubernetes node networking in one agent
 nodenet replaces a CNI plugin with its IPAM, node subnet routing, kube-proxy
 and cluster DNS with one agent per node, sharing one cluster state store.
CONTROL
printf '/etc/nodenet/config.yaml\n/etc/cni/net.d/10-nodenet.conflist\n/etc/iproute2/rt_protos.d/nodenet.conf\n' > "$stage/DEBIAN/conffiles"
cat > "$stage/DEBIAN/postinst" <<'POSTINST'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
POSTINST
chmod 0755 "$stage/DEBIAN/postinst"
mkdir -p dist
out="dist/nodenet_${version}_${arch}.deb"
dpkg-deb --root-owner-group --build "$stage" "$out" >/dev/null
echo "$out"
