#!/usr/bin/env bash
# Prepares a fresh Debian 12 machine for nodenet: the system packages it builds and tests
# against, then a build. Safe to run again. Needs root (apt-get) and Swift 6 on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  # build: libmnl and libsystemd (the design's two system libraries), SQLite for GRDB
  libmnl-dev libsystemd-dev libsqlite3-dev pkg-config
  # static C libraries: the CNI plugin executable (nodenet-cni) links statically
  libc6-dev libstdc++-12-dev
  # kernel-facing tools the tests and the demo use to look at what nodenet did
  iproute2 nftables conntrack iputils-ping util-linux procps curl
  # test peers: TCP/UDP servers and clients inside the test namespaces
  socat python3
  # real peers: DNS clients and the servers we benchmark against, etcd, a container runtime
  dnsutils dnsperf unbound dnsmasq-base etcd-server etcd-client
  podman runc busybox-static containernetworking-plugins
  # packaging checks; a booted Debian container to test the .deb under a real systemd
  systemd dpkg-dev hyperfine systemd-container debootstrap
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
# unbound's package enables a system service we do not want answering anything here.
if [ -d /run/systemd/system ]; then systemctl disable --now unbound >/dev/null 2>&1 || true; fi

command -v swift >/dev/null || { echo "setup: swift is not on PATH (Swift 6.x is required)" >&2; exit 1; }
echo "setup: building (debug)"
swift build --build-tests
