#!/usr/bin/env bash
# Installs nodenet where design.md says a node keeps it:
#   /usr/bin/nodenet (the agent and CLI), /usr/bin/nodenet-cni (the CNI plugin alone: a runtime
#   execs it for every pod, and without the agent's libraries it starts about 3x faster),
#   /opt/cni/bin/nodenet -> /usr/bin/nodenet-cni (where upstream containerd, CRI-O and podman look)
#   and /usr/lib/cni/nodenet -> /usr/bin/nodenet-cni (Debian's containerd and podman look there),
#   /etc/nodenet/config.yaml (kept if present), the reference conflist as
#   /usr/share/doc/nodenet/examples/10-nodenet.conflist (the agent itself writes
#   /etc/cni/net.d/10-nodenet.conflist once it is ready: config key cni.conflist),
#   /lib/systemd/system/nodenet.service, /etc/iproute2/rt_protos.d/nodenet.conf.
# Usage: packaging/install.sh [--destdir DIR] [--binary PATH] [--cni-binary PATH]
# With --destdir it only stages files (for packaging); otherwise it also reloads systemd.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
destdir=""
binary="$here/.build/release/nodenet"
cni_binary=""
while [ $# -gt 0 ]; do
  case "$1" in
    --destdir) destdir=$2; shift 2 ;;
    --binary) binary=$2; shift 2 ;;
    --cni-binary) cni_binary=$2; shift 2 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
# The plugin is built next to the agent binary unless given.
[ -n "$cni_binary" ] || cni_binary="$(dirname "$binary")/nodenet-cni"
for b in "$binary" "$cni_binary"; do
  [ -x "$b" ] || { echo "install.sh: no binary at $b (build both: swift build -c release --static-swift-stdlib --product nodenet, then --product nodenet-cni)" >&2; exit 1; }
done

install -D -m 0755 "$binary" "$destdir/usr/bin/nodenet"
install -D -m 0755 "$cni_binary" "$destdir/usr/bin/nodenet-cni"
for dir in opt/cni/bin usr/lib/cni; do
  install -d -m 0755 "$destdir/$dir"
  ln -sfn /usr/bin/nodenet-cni "$destdir/$dir/nodenet"
done
install -D -m 0644 "$here/packaging/nodenet.service" "$destdir/lib/systemd/system/nodenet.service"
install -D -m 0644 "$here/packaging/rt_protos.conf" "$destdir/etc/iproute2/rt_protos.d/nodenet.conf"
# Configuration: never overwrite what an operator edited.
# The directory the agent writes the conflist into (the unit lets it write there).
install -d -m 0755 "$destdir/etc/cni/net.d"
install -D -m 0644 "$here/etc/cni/net.d/10-nodenet.conflist" "$destdir/usr/share/doc/nodenet/examples/10-nodenet.conflist"
for f in etc/nodenet/config.yaml; do
  if [ -e "$destdir/$f" ] && [ -z "$destdir" ]; then
    echo "install.sh: keeping existing /$f"
  else
    install -D -m 0644 "$here/$f" "$destdir/$f"
  fi
done
install -d -m 0700 "$destdir/var/lib/nodenet"

if [ -z "$destdir" ] && [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  echo "installed; start with: systemctl enable --now nodenet"
fi
