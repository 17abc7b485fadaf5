#!/bin/bash
# Service benchmarks against the release `nodenet agent`, as users run it: the agent in a node
# namespace on the embedded store, the cluster applied with `nodenet apply`, and in the same run
# the reference (kube-proxy's nftables shape loaded by `nft -f`, ../shared/bench) on the same
# topology. As root; never touches the root namespace.
#
#  full:    S services x E endpoints applied (JSON) until the last service answers a TCP connect
#           from a client namespace, vs nft-reference.sh S E (full_s).
#  change:  CHANGES EndpointSlice changes (one service's endpoints replaced, `nodenet apply`),
#           each: store event to kernel committed, as the agent measures it (status "programming").
#  first:   connect latency to a ClusterIP (median of CONNECTS new flows) with S services loaded.
#  rss:     the agent's VmRSS after the load and at the end, VmHWM (peak).
#  pps:     new TCP connections per second through a ClusterIP (PARALLEL client processes, SECONDS
#           each) through nodenet's rules and through the reference ruleset (a second node of the
#           same topology beside the agent's), rounds alternated.
# usage: bench/services/agent-bench.sh [SERVICES] [ENDPOINTS] [CHANGES] [CONNECTS] [SECONDS] [PARALLEL]
# env: REFERENCE=0 skips the reference (its nft -f of 30,000 services takes many minutes and is
#      not needed for the change and first-packet figures); PPS=0 skips the pps phase on both
#      sides; AGENT_NICE=-10 runs the agent at that nice level (separates the scheduler's waits
#      on a machine loaded by others from the agent's own time); AGENT_ARGS adds agent flags (--log-level debug: the proxy logs each sync's phases,
#      kept in AGENT_LOG when set); ROUNDS=N alternates N rounds of first packet and pps between nodenet's node and
#      the reference's (default 3); PERF=FILE records `perf record -g` of the agent during the changes into FILE.
#      CLUSTER_CIDR (default 10.128.0.0/9) is the agent's cluster CIDR: it holds the client pod
#      (10.244.200.2) and the endpoints (10.128.x, the reference generator's addresses), as pod
#      addresses are in a cluster. (With the agent's default 10.244.0.0/16 the endpoints were
#      off-cluster, so nodenet's pod-egress rule masqueraded every benchmark connection, which
#      the reference node never does.)
#      REFPLUS=1 (default with REFERENCE=1) adds a third node: the reference ruleset plus every
#      table and chain the agent's other parts program (network policy, DNS notrack,
#      pod-egress, host ports), copied from the agent's node after the load, so that the pps
#      ratio against it compares the service dataplanes alone, each beside the same rest.
set -euo pipefail
REFERENCE=${REFERENCE:-1}; PPS=${PPS:-1}; PERF=${PERF:-}; ROUNDS=${ROUNDS:-3}; REFPLUS=${REFPLUS:-$REFERENCE}
CLUSTER_CIDR=${CLUSTER_CIDR:-10.128.0.0/9}
S=${1:-10000}; E=${2:-5}; CHANGES=${3:-100}; CONNECTS=${4:-2000}; SECONDS_PPS=${5:-5}; PARALLEL=${6:-4}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${NODENET:-$ROOT/.build/release/nodenet}
[ -x "$BIN" ] || { echo "no release binary at $BIN (swift build -c release --product nodenet)" >&2; exit 1; }
P=ab$$; T=$(mktemp -d)
cleanup() {
  [ -f "$T/agent.pid" ] && kill "$(cat "$T/agent.pid")" 2>/dev/null && sleep 0.5 || true
  for n in $(ip netns list | awk '{print $1}' | grep "^$P" || true); do ip netns pids "$n" | xargs -r kill 2>/dev/null || true; ip netns del "$n"; done
  [ -n "${AGENT_LOG:-}" ] && cp "$T/agent.log" "$AGENT_LOG"
  rm -rf "$T"
}
trap cleanup EXIT
vip() { python3 -c "n=$1; print(f'10.96.{n // 256}.{n % 256}' if n < 65536 else f'10.97.{(n-65536) // 256}.{n % 256}')"; }
. "$(dirname "$0")/common.sh"
# The endpoints of the first and the last service live on the server namespace.
served() { for s in 0 $((S - 1)); do for k in $(seq 0 $((E - 1))); do echo $((s * E + k)); done; done; }

connects() {  # C VIP N: median and p90 of N connect() calls, microseconds
  ip netns exec $1 timeout 300 python3 -c '
import socket, time, sys
vip, n = sys.argv[1], int(sys.argv[2]); out = []
for i in range(n):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    t = time.perf_counter(); s.connect((vip, 80)); out.append(time.perf_counter() - t); s.close()
out.sort(); print("median_us=%.1f p90_us=%.1f" % (out[n // 2] * 1e6, out[n * 9 // 10] * 1e6))' "$2" "$3"
}

pps() {  # C VIP: new connections per second, PARALLEL processes for SECONDS_PPS
  echo "connections_per_s=$(connection_rate $1 $2 "$SECONDS_PPS" "$PARALLEL")"
}

rss() { awk '/VmRSS|VmHWM/ {printf "%s %d MB  ", $1, $2 / 1024}' /proc/"$(cat "$T/agent.pid")"/status; echo; }

# --- nodenet ---
topology ${P}n ${P}c ${P}v $(served)
mkdir -p "$T/state" "$T/run"
nsenter --net=/var/run/netns/${P}n nice -n "${AGENT_NICE:-0}" "$BIN" agent --node-name node1 --node-ip 10.127.255.254 --pod-cidrs 10.244.1.0/24 \
  --cluster-cidr "$CLUSTER_CIDR" --state-dir "$T/state" --run-dir "$T/run" --dns-listen 169.254.20.10 --dns-upstreams 127.0.0.1:53 ${AGENT_ARGS:-} > "$T/agent.log" 2>&1 &
echo $! > "$T/agent.pid"
nn() { "$BIN" "$@" --socket "$T/run/nodenet.sock"; }
for _ in $(seq 200); do grep -q '"ready" : true' <<<"$(nn status --json 2>/dev/null)" && break; sleep 0.1; done
python3 - "$S" "$E" "$T" <<'PY'
import json, sys
S, E, T = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
def ip(n, a, b): return f"{a}.{b + n // 65536}.{(n // 256) % 256}.{n % 256}"
items = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench"}}]
for s in range(S):
    items.append({"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"s{s}", "namespace": "bench"},
                  "spec": {"clusterIP": ip(s, 10, 96), "selector": {"app": f"s{s}"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}})
    items.append({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                  "metadata": {"name": f"s{s}-x", "namespace": "bench", "labels": {"kubernetes.io/service-name": f"s{s}"}},
                  "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
                  "endpoints": [{"addresses": [ip(s * E + k, 10, 128)], "conditions": {"ready": True}, "nodeName": "node2"} for k in range(E)]})
# The control API takes requests up to 8 MiB: 2,000 services (and their slices) per file.
for i in range(0, len(items), 4000):
    json.dump({"apiVersion": "v1", "kind": "List", "items": items[i:i + 4000]}, open(f"{T}/cluster-{i // 4000:04d}.json", "w"))
PY
LAST=$(vip $((S - 1)))
t0=$(date +%s.%N)
for f in "$T"/cluster-*.json; do nn apply -f "$f" > /dev/null; done
t1=$(date +%s.%N)
until ip netns exec ${P}c timeout 1 python3 -c "import socket,sys; socket.create_connection(('$LAST', 80), 0.5).close()" 2>/dev/null; do
  awk "BEGIN {exit !($(date +%s.%N) - $t0 > 600)}" && { echo "last service never answered" >&2; exit 1; }
  sleep 0.01
done
t2=$(date +%s.%N)
printf "nodenet full: apply (store holds %d services) %.2f s; store to last service answering %.2f s; total %.2f s\n" \
  "$S" "$(echo "$t1 - $t0" | bc)" "$(echo "$t2 - $t1" | bc)" "$(echo "$t2 - $t0" | bc)"
printf "nodenet rss after load: "; rss

# One service's endpoints replaced CHANGES times (alternating two sets), each event to kernel.
python3 - "$S" "$E" "$T" <<'PY'
import json, sys
S, E, T = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
def ip(n, a, b): return f"{a}.{b + n // 65536}.{(n // 256) % 256}.{n % 256}"
s = S // 2
for v, base in (("a", (S + 1) * E), ("b", s * E)):
    json.dump({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
               "metadata": {"name": f"s{s}-x", "namespace": "bench", "labels": {"kubernetes.io/service-name": f"s{s}"}},
               "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
               "endpoints": [{"addresses": [ip(base + k, 10, 128)], "conditions": {"ready": True}, "nodeName": "node2"} for k in range(E)]},
              open(f"{T}/change-{v}.json", "w"))
PY
# Each change's store-event-to-kernel time is the agent's own: the growth of the histogram
# nodenet_proxy_network_programming_seconds' _sum over that change's sync (its _count moving
# also says the sync happened). (The status row's "programming" figure is refreshed only every
# few seconds while nothing is pending, so it cannot be read per change.)
metric() { ip netns exec ${P}n curl -s 127.0.0.1:9154/metrics | awk -v n="nodenet_proxy_network_programming_seconds_$1" '$1 == n {print $2}'; }
: > "$T/changes"
# The agent's own figures around the changes: its CPU time (utime+stime, clock ticks) and the
# histogram's buckets before and after.
cpu() { awk '{print $14 + $15}' /proc/"$(cat "$T/agent.pid")"/stat; }
histogram() { ip netns exec ${P}n curl -s 127.0.0.1:9154/metrics | grep '^nodenet_proxy_network_programming_seconds_bucket' || true; }
histogram > "$T/hist-before"
cpu0=$(cpu)
if [ -n "$PERF" ]; then
  perf record -g -F 2000 -o "$PERF" -p "$(cat "$T/agent.pid")" > "$T/perf.log" 2>&1 &
  PERF_PID=$!
  sleep 1  # perf attaches asynchronously; nothing is measured by this wait
fi
for i in $(seq 1 "$CHANGES"); do
  c0=$(metric count); s0=$(metric sum)
  nn apply -f "$T/change-$([ $((i % 2)) = 1 ] && echo a || echo b).json" > /dev/null
  c1=$c0
  for _ in $(seq 1000); do c1=$(metric count); [ "$c1" != "$c0" ] && break; sleep 0.005; done
  s1=$(metric sum)
  awk "BEGIN { if ($c1 > $c0) printf \"%.4f\\n\", ($s1 - $s0) * 1000 / ($c1 - $c0) }" >> "$T/changes"
done
[ -n "$PERF" ] && { kill -INT $PERF_PID; wait $PERF_PID || true; }
cpu1=$(cpu)
histogram > "$T/hist-after"
printf "nodenet agent cpu during the %d changes: %.1f ms per change (utime+stime, whole agent: apply handling, store, proxy, status requests)\n" \
  "$CHANGES" "$(echo "($cpu1 - $cpu0) * 1000 / $(getconf CLK_TCK) / $CHANGES" | bc -l)"
python3 - "$T/hist-before" "$T/hist-after" <<'PY'
import re, sys
def read(p):
    out = {}
    for line in open(p):
        m = re.match(r'.*le="([^"]+)".* ([0-9.e+]+)$', line.strip())
        if m: out[m.group(1)] = float(m.group(2))
    return out
a, b = read(sys.argv[1]), read(sys.argv[2])
d = sorted(((float(k), b[k] - a.get(k, 0)) for k in b), key=lambda x: x[0])
if not d: print("histogram: no metrics endpoint"); sys.exit()
n = d[-1][1]
def q(f):
    for le, c in d:
        if c >= f * n: return le
print("nodenet_proxy_network_programming_seconds over the changes: %d syncs, p50 <= %g ms, p99 <= %g ms; cumulative: %s"
      % (n, q(0.5) * 1e3, q(0.99) * 1e3, " ".join("%g:%d" % (le * 1e3, c) for le, c in d if le <= 0.05)))
PY
python3 - "$T/changes" "$S" <<'PY'
import sys
v = sorted(float(x) for x in open(sys.argv[1]) if x.strip())
n = len(v)
print("nodenet change (%s services, event to kernel, %d changes): p50 %.3f ms  p99 %.3f ms  max %.3f ms"
      % (sys.argv[2], n, v[n // 2], v[min(n - 1, n * 99 // 100)], v[-1]))
PY
printf "nodenet rss at the end: "; rss
if [ "$REFERENCE" = 1 ]; then
  /work/shared/bench/nft-reference.sh "$S" "$E"
  # --- reference: kube-proxy's nftables shape loaded by nft -f on a second node of the same
  # topology beside the running agent, so the first-packet and pps rounds alternate between the
  # two under the same machine load (other engineers' builds come and go).
  topology ${P}m ${P}d ${P}w $(served)
  python3 /work/shared/bench/gen-kube-proxy-ruleset.py "$S" "$E" > "$T/ref.nft"
  ip netns exec ${P}m nft -f "$T/ref.nft"
fi
if [ "$REFERENCE" = 1 ] && [ "$REFPLUS" = 1 ]; then
  # The agent's rules other than the service proxy's (other tables; in the nodenet tables the
  # chains declared to other owners, Netlink/NodenetTables.swift), beside the reference.
  ip netns exec ${P}n nft list ruleset | python3 -c '
import re, sys
foreign = re.compile(r"^(pod-egress|hostports.*|dns-notrack.*)$")
for whole, fam, name, body in re.findall(r"^(table (\S+) (\S+) \{\n(.*?)^\}\n)", sys.stdin.read(), re.S | re.M):
    if name != "nodenet":
        print(whole)
        continue
    chains = [c for c, n in re.findall(r"(\tchain (\S+) \{.*?\n\t\}\n)", body, re.S) if foreign.match(n)]
    if chains: print("table %s %s {\n%s}" % (fam, name, "".join(chains)))' > "$T/rest.nft"
  topology ${P}x ${P}e ${P}y $(served)
  ip netns exec ${P}x nft -f "$T/ref.nft"
  ip netns exec ${P}x nft -f "$T/rest.nft"
  printf "reference+rest node: %s chains of the agent's other parts beside the reference\n" "$(grep -c '^\s*chain ' "$T/rest.nft")"
fi
for r in $(seq 1 "$ROUNDS"); do
  printf "round %d nodenet first packet (%d services): " "$r" "$S"; connects ${P}c "$(vip 0)" "$CONNECTS"
  [ "$REFERENCE" = 1 ] && { printf "round %d reference first packet (%d services): " "$r" "$S"; connects ${P}d "$(vip 0)" "$CONNECTS"; }
  [ "$REFERENCE" = 1 ] && [ "$REFPLUS" = 1 ] && { printf "round %d reference+rest first packet (%d services): " "$r" "$S"; connects ${P}e "$(vip 0)" "$CONNECTS"; }
  [ "$PPS" = 1 ] && { printf "round %d nodenet pps (%d services): " "$r" "$S"; pps ${P}c "$(vip 0)"; }
  [ "$PPS" = 1 ] && [ "$REFERENCE" = 1 ] && { printf "round %d reference pps (%d services): " "$r" "$S"; pps ${P}d "$(vip 0)"; }
  [ "$PPS" = 1 ] && [ "$REFERENCE" = 1 ] && [ "$REFPLUS" = 1 ] && { printf "round %d reference+rest pps (%d services): " "$r" "$S"; pps ${P}e "$(vip 0)"; }
done
printf "nodenet agent cpu in all: %.2f s\n" "$(echo "$(cpu) / $(getconf CLK_TCK)" | bc -l)"
