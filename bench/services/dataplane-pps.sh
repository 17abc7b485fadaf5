#!/bin/bash
# Dataplane-only connections/s: one node namespace per ruleset file (loaded by `nft -f`, no agent running), each
# with its own client pod and endpoint server, as agent-bench.sh's topology (client 10.244.200.2 -> ClusterIP
# 10.96.0.0:80 -> endpoints 10.128.0.0-4:8080). Rounds run every node's clients at the same time (CONC=1: the
# load of other work on the machine falls on every ruleset alike, and a ruleset with cheaper connections gets
# more of them from the same CPU share) or one node after the other (CONC=0). Prints connections/s per ruleset
# per round. Root; never touches the root namespace.
# usage: bench/services/dataplane-pps.sh ROUNDS SECONDS PARALLEL ruleset.nft...
# The rulesets of RESULTS.md: the reference (../shared/bench/gen-kube-proxy-ruleset.py 10 5), and `nft list
# ruleset` of a node where `nodenet agent` programmed 10 services x 5 endpoints (whole, or only the proxy's part).
set -euo pipefail
ROUNDS=$1; SECS=$2; PAR=$3; shift 3
P=dp$$; T=$(mktemp -d)
cleanup() { rm -rf "$T"; for n in $(ip netns list | awk '{print $1}' | grep "^$P" || true); do ip netns pids "$n" | xargs -r kill 2>/dev/null || true; ip netns del "$n"; done; }
trap cleanup EXIT
ep() { python3 -c "n=$1; print(f'10.{128 + n // 65536}.{(n // 256) % 256}.{n % 256}')"; }
topology() {
  local N=$1 C=$2 V=$3
  ip netns add $N; ip netns add $C; ip netns add $V
  for x in $N $C $V; do ip -n $x link set lo up; done
  ip link add c0 netns $N type veth peer name eth0 netns $C
  ip link add s0 netns $N type veth peer name eth0 netns $V
  ip -n $N addr add 10.244.200.1/24 dev c0; ip -n $N link set c0 up
  ip -n $N addr add 10.127.255.254/32 dev s0; ip -n $N link set s0 up; ip -n $N route add 10.128.0.0/12 dev s0
  ip -n $C addr add 10.244.200.2/24 dev eth0; ip -n $C link set eth0 up; ip -n $C route add default via 10.244.200.1
  ip -n $V link set eth0 up; ip -n $V route add 10.127.255.254 dev eth0; ip -n $V route add default via 10.127.255.254
  for k in 0 1 2 3 4; do ip -n $V addr add "$(ep $k)/32" dev eth0; done
  ip netns exec $N sysctl -qw net.ipv4.ip_forward=1
  ip netns exec $V python3 -c '
import socket, os
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("0.0.0.0", 8080)); s.listen(4096)
for _ in range(3):
    if os.fork() == 0: break
while True:
    c, _ = s.accept(); c.close()' &
}
pps() {
  ip netns exec $1 python3 -c '
import socket, time, sys, os
vip, secs, par = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
r, w = os.pipe()
for p in range(par):
    if os.fork() == 0:
        n = 0; end = time.time() + secs
        while time.time() < end:
            s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            try: s.connect((vip, 80)); n += 1
            except OSError: pass
            s.close()
        os.write(w, b"%d\n" % n); os._exit(0)
for p in range(par): os.wait()
os.close(w)
print("%.0f" % (sum(int(x) for x in os.read(r, 1 << 16).split()) / secs))' 10.96.0.0 $SECS $PAR
}
i=0
for f in "$@"; do topology ${P}n$i ${P}c$i ${P}v$i; ip netns exec ${P}n$i nft -f $f; i=$((i+1)); done
sleep 0.5
for r in $(seq $ROUNDS); do
  i=0; line="round $r (load $(cut -d' ' -f1 /proc/loadavg)):"
  if [ "${CONC:-0}" = 1 ]; then
    pids=""; for f in "$@"; do pps ${P}c$i > $T/out$i & pids="$pids $!"; i=$((i+1)); done; wait $pids
    i=0; for f in "$@"; do line="$line $(basename $f .nft)=$(cat $T/out$i)"; i=$((i+1)); done
  else
    for f in "$@"; do line="$line $(basename $f .nft)=$(pps ${P}c$i)"; i=$((i+1)); done
  fi
  echo "$line"
done
