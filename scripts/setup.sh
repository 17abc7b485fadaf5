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
  # test peers: TCP/UDP servers and clients inside the test namespaces; python3-yaml for the
  # NetworkPolicy cases generator (Tests/AgentTests/NetworkPolicyCases/generate.py)
  socat python3 python3-yaml
  # real peers: DNS clients and the servers we benchmark against, etcd, a container runtime
  dnsutils dnsperf unbound dnsmasq-base etcd-server etcd-client
  # the stub resolvers pods run, built at test time: musl's getaddrinfo (musl-gcc), Go's resolver
  musl-tools golang-go
  podman runc busybox-static containernetworking-plugins
  # a Kubernetes runtime for the CRI end-to-end test (containerd 1.6 from bookworm; it runs the
  # reference `loopback` plugin from containernetworking-plugins), and the venv for its client
  containerd python3-venv
  # packaging checks; a booted Debian container to test the .deb under a real systemd
  systemd dpkg-dev hyperfine systemd-container debootstrap
  # Debian's package checker (LintianTests), and promtool from Debian's prometheus package
  # (MetricsEndToEndTests runs `promtool check metrics` on a scrape)
  lintian prometheus
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

# The containerd test's CRI client: Python gRPC generated at test time from the project's own
# runtime.proto. From PyPI in a venv under a fixed path, not Debian's python3-grpc-tools: that
# is 1.14 (2018), whose bundled protoc predates the protobuf 3.21 runtime Debian pairs it with.
# Debian's own python3 (python3-venv), whatever `python3` PATH finds first. Pinned versions
# that work together; skipped when the venv already has them.
# kubernetes-validate: ManifestValidationTests checks every shipped manifest against the
# Kubernetes schemas it bundles (no cluster, no network at test time).
venv=/opt/nodenet-test/venv
pins=(grpcio==1.85.4 grpcio-tools==1.85.4 protobuf==7.36.2 kubernetes-validate==1.37.0)
if ! "$venv/bin/python" -c 'import grpc, grpc_tools, google.protobuf, kubernetes_validate' 2>/dev/null; then
  echo "setup: creating $venv (${pins[*]})"
  /usr/bin/python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "${pins[@]}"
fi

# Newer containerd releases for the same CRI test (scripts/test.sh runs it against each): Debian
# 13 carries 1.7 and sid 2.x, bookworm neither. Downloaded from the Debian mirror this machine
# already uses (its URI read from the apt sources, with a private apt state, so the system's
# package lists never see another release) and unpacked under /opt/nodenet-test, never
# installed. A failed download only means those runs are skipped, with a note.
fetch_containerd() {  # $1 suite, $2 directory
  local suite=$1 dir=$2 state=/opt/nodenet-test/apt-$1
  [ -x "$dir/usr/bin/containerd" ] && return 0
  local uri
  uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  [ -n "$uri" ] || uri=$(awk '$1 == "deb" && $0 !~ /security/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
  [ -n "$uri" ] || { echo "setup: no Debian mirror in the apt sources; containerd from $suite skipped"; return 0; }
  mkdir -p "$state/lists/partial" "$state/archives/partial"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uri $suite main" > "$state/sources.list"
  local opts=(-o "Dir::Etc::SourceList=$state/sources.list" -o Dir::Etc::SourceParts=/dev/null
              -o "Dir::State::Lists=$state/lists" -o "Dir::Cache::Archives=$state/archives" -o APT::Sandbox::User=root)
  if apt-get -q "${opts[@]}" update >/dev/null 2>&1 && (cd "$state" && apt-get -q "${opts[@]}" download containerd >/dev/null 2>&1); then
    rm -rf "$dir" && dpkg -x "$state"/containerd_*.deb "$dir" && rm -f "$state"/containerd_*.deb
    # A release built against a newer C library than this machine's cannot run here: drop it.
    if "$dir/usr/bin/containerd" --version >/dev/null 2>&1; then
      echo "setup: containerd from $suite: $("$dir/usr/bin/containerd" --version | awk '{print $3}')"
    else
      echo "setup: containerd from $suite does not run on this machine; its test runs are skipped"
      rm -rf "$dir"
    fi
  else
    echo "setup: containerd from $suite could not be downloaded; its test runs are skipped"
  fi
}
fetch_containerd trixie /opt/nodenet-test/containerd-1.7
fetch_containerd sid /opt/nodenet-test/containerd-2

command -v swift >/dev/null || { echo "setup: swift is not on PATH (Swift 6.x is required)" >&2; exit 1; }
echo "setup: building (debug)"
swift build --build-tests
