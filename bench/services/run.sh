#!/bin/bash
# Service-rule benchmarks (as root; never touches the root namespace; builds proxy-bench in release):
#  1+2+4: proxy-bench: model, diff, netlink full apply of S services x E endpoints into an empty
#         namespace, one service's endpoints changed (store event to applied), RSS; alternated
#         with /work/shared/bench/nft-reference.sh S E, ROUNDS times.
#  restart: a full sync, then a second backend reads the kernel back and applies the restart plan.
#  3:     first-packet cost: TCP connect latency client -> ClusterIP -> server through a node
#         namespace programmed with 10 and with S services (alternated), median of CONNECTS.
# usage: bench/services/run.sh [SERVICES] [ENDPOINTS] [ROUNDS] [CONNECTS]
set -euo pipefail
S=${1:-10000}; E=${2:-5}; ROUNDS=${3:-2}; CONNECTS=${4:-2000}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
P=pb$$
cleanup() { for n in $(ip netns list | awk '{print $1}' | grep "^$P" || true); do ip netns pids "$n" | xargs -r kill 2>/dev/null || true; ip netns del "$n"; done; }
trap cleanup EXIT
cd "$ROOT"
SCRATCH=${SCRATCH:-.build-proxy}
swift build -c release --product proxy-bench --scratch-path "$SCRATCH" >/dev/null
BIN=$(swift build -c release --product proxy-bench --scratch-path "$SCRATCH" --show-bin-path)/proxy-bench

for r in $(seq 1 "$ROUNDS"); do
  ip netns add ${P}apply
  "$BIN" --services "$S" --endpoints "$E" --repeat 3 --rounds 100 --netns ${P}apply | grep -E "netlink|rss|encode|chains"
  ip netns del ${P}apply
  /work/shared/bench/nft-reference.sh "$S" "$E"
done

# Restart: read back, then the planner's rewrite of every chain (digests let unchanged chains be skipped).
ip netns add ${P}restart
"$BIN" --services "$S" --endpoints "$E" --netns ${P}restart --apply-only --restart
ip netns del ${P}restart

# First packet: client 10.244.1.2 -> ClusterIP 10.96.0.1:80 (service s1) -> endpoints 10.128.0.5-9:8080,
# all held by one server namespace. Every connection is a new flow, so each SYN walks the nat rules.
first_packet() {
  local n=$1 N=${P}node C=${P}cli V=${P}srv
  ip netns add $N; ip netns add $C; ip netns add $V
  for x in $N $C $V; do ip -n $x link set lo up; done
  ip link add c0 netns $N type veth peer name eth0 netns $C
  ip link add s0 netns $N type veth peer name eth0 netns $V
  ip -n $N addr add 10.244.1.1/24 dev c0; ip -n $N addr add 10.128.255.254/16 dev s0
  ip -n $N link set c0 up; ip -n $N link set s0 up
  ip -n $C addr add 10.244.1.2/24 dev eth0; ip -n $C link set eth0 up; ip -n $C route add default via 10.244.1.1
  for a in 5 6 7 8 9; do ip -n $V addr add 10.128.0.$a/16 dev eth0; done
  ip -n $V link set eth0 up; ip -n $V route add default via 10.128.255.254
  ip netns exec $N sysctl -qw net.ipv4.ip_forward=1
  "$BIN" --services "$n" --endpoints 5 --netns $N --apply-only
  ip netns exec $V python3 -c '
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("0.0.0.0", 8080)); s.listen(512)
while True:
    c, _ = s.accept(); c.close()' &
  sleep 0.5
  ip netns exec $C timeout 120 python3 -c '
import socket, time, statistics, sys
n = int(sys.argv[2]); out = []
for i in range(n):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    t = time.perf_counter(); s.connect(("10.96.0.1", 80)); out.append(time.perf_counter() - t); s.close()
out.sort()
print("first-packet services=%s connects=%d median_us=%.1f p90_us=%.1f" % (sys.argv[1], n, out[n // 2] * 1e6, out[n * 9 // 10] * 1e6))' "$n" "$CONNECTS"
  cleanup
}
for r in $(seq 1 "$ROUNDS"); do first_packet 10; first_packet "$S"; done
