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
# The package carries no Swift runtime: a binary that loads it from the build machine's toolchain
# (built without --static-swift-stdlib) would install and then fail to start on every node.
for b in "$binary" "$(dirname "$binary")/nodenet-cni"; do
  if ldd "$b" 2>/dev/null | grep -q 'libswift'; then
    echo "build-deb.sh: $b loads the Swift runtime from $(ldd "$b" | awk '/libswiftCore/ {print $3}'); build it with: swift build -c release --static-swift-stdlib" >&2
    exit 1
  fi
done
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
# procps: /bin/kill, which the unit's ExecReload runs (SIGHUP reloads the configuration).
cat > "$stage/DEBIAN/control" <<CONTROL
Package: nodenet
Version: $version
Architecture: $arch
Maintainer: nodenet developers <dev@nodenet.invalid>
Depends: libmnl0, libsystemd0, libsqlite3-0, iproute2, procps
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
# Removal. prerm "remove" (also the first step of a purge; never on upgrade): stop and disable
# the agent, then take its dataplane off the node with `nodenet reset --keep-state`: without the
# agent and the plugin nothing would keep the bridge, routes and service rules true, and stale
# service rules would steer traffic to gone endpoints. This has to happen in prerm because postrm
# runs after dpkg removed /usr/bin/nodenet. postrm "purge" then deletes the state and run
# directories (stored objects, addresses), which need no binary.
cat > "$stage/DEBIAN/prerm" <<'PRERM'
#!/bin/sh
set -e
if [ "$1" = remove ]; then
  if [ -d /run/systemd/system ]; then
    systemctl disable --now nodenet.service >/dev/null 2>&1 || systemctl stop nodenet.service || true
  else
    systemctl disable nodenet.service >/dev/null 2>&1 || true
  fi
  /usr/bin/nodenet reset --keep-state || echo "nodenet: reset failed; see above, or run nodenet reset again before removing" >&2
fi
PRERM
cat > "$stage/DEBIAN/postrm" <<'POSTRM'
#!/bin/sh
set -e
case "$1" in
  remove)
    if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi ;;
  purge)
    rm -rf /var/lib/nodenet /run/nodenet
    if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi ;;
esac
POSTRM
chmod 0755 "$stage/DEBIAN/postinst" "$stage/DEBIAN/prerm" "$stage/DEBIAN/postrm"
mkdir -p dist
out="dist/nodenet_${version}_${arch}.deb"
dpkg-deb --root-owner-group --build "$stage" "$out" >/dev/null
echo "$out"
