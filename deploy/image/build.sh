#!/usr/bin/env bash
# Builds the nodenet container image locally with podman, pulling nothing: FROM scratch with
# /usr/bin/nodenet, /usr/bin/nodenet-cni, exactly the shared libraries `ldd` says they load
# (copied from this machine, at the same paths), and /bin/busybox (sh, cp, mv) for the
# DaemonSet's install step (deploy/nodenet.yaml).
#   deploy/image/build.sh [--binary PATH] [--tag NAME]
# Default binary: the release build (swift build -c release --static-swift-stdlib, as the .deb);
# nodenet-cni is taken from the same directory. Default tag: localhost/nodenet:<version>.
# Prints the tag on stdout. Ship it to nodes without a registry with
#   podman save TAG | ssh NODE podman load     (or ctr -n k8s.io images import for containerd)
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
binary=""
tag=""
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) binary=$2; shift 2 ;;
    --tag) tag=$2; shift 2 ;;
    *) echo "build.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
if [ -z "$binary" ]; then
  (cd "$here" && swift build -c release --static-swift-stdlib --product nodenet >&2 && swift build -c release --static-swift-stdlib --product nodenet-cni >&2)
  binary="$here/.build/release/nodenet"
fi
cni="$(dirname "$binary")/nodenet-cni"
for b in "$binary" "$cni"; do [ -x "$b" ] || { echo "build.sh: no executable $b" >&2; exit 1; }; done
[ -x /bin/busybox ] || { echo "build.sh: /bin/busybox is missing (apt-get install busybox-static)" >&2; exit 1; }
version=$("$binary" version | awk '{print $2}')
[ -n "$tag" ] || tag="localhost/nodenet:$version"

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
root="$ctx/rootfs"
install -D -m 0755 "$binary" "$root/usr/bin/nodenet"
install -D -m 0755 "$cni" "$root/usr/bin/nodenet-cni"
# Symbols are not needed on a node (the .deb strips them too): a third of the size.
strip --strip-unneeded "$root/usr/bin/nodenet" "$root/usr/bin/nodenet-cni"
install -D -m 0755 /bin/busybox "$root/bin/busybox"
for tool in sh cp mv cat ls; do ln -s busybox "$root/bin/$tool"; done
# Every library the binaries load, and the dynamic loader, at the path ldd resolved.
libs=$( (ldd "$binary" 2>/dev/null || true; ldd "$cni" 2>/dev/null || true) \
       | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// && $1 ~ /ld-linux/ {print $1}' | sort -u)
for lib in $libs; do
  install -D -m 0644 "$(readlink -f "$lib")" "$root$lib"
done
[ -e "$root/lib64/ld-linux-x86-64.so.2" ] || [ "$(uname -m)" != x86_64 ] || { echo "build.sh: no dynamic loader found by ldd" >&2; exit 1; }
chmod 0755 "$root"/lib*/ld-linux* 2>/dev/null || true
install -d -m 0755 "$root/etc/nodenet" "$root/tmp" "$root/var/lib/nodenet" "$root/run/nodenet" "$root/host"
chmod 1777 "$root/tmp"
# The reference configuration (the DaemonSet mounts its ConfigMap over it).
install -m 0644 "$here/etc/nodenet/config.yaml" "$root/etc/nodenet/config.yaml"
printf 'root:x:0:0:root:/:/bin/sh\n' > "$root/etc/passwd"
printf 'root:x:0:\n' > "$root/etc/group"
cp "$here/deploy/image/Containerfile" "$ctx/Containerfile"
podman build --quiet --pull=never --tag "$tag" "$ctx" >&2
echo "$tag"
