#!/bin/bash
# Cluster DNS inside the running agent, against unbound in the same run (issue #15 benchmarks 1-2).
# A node namespace runs the release `nodenet agent` (embedded store) with S services and S*EPS
# endpoints applied and their nftables rules programmed; a second namespace holds the upstream
# stub (dnsmasq, *.example.test, TTL 3600). dnsperf runs in the node namespace against the agent
# (169.254.20.10:53, its node-local address) and against unbound (2 threads, so-reuseport,
# local-data for the same cluster names, forward-zone "." to the same stub) on 127.0.0.54:5302,
# interleaved over ROUNDS rounds, best round each; plus CPU time per query at a fixed 40k qps.
# EXT% of the queries are external names (x<j>.example.test, 1,000 of them) that both servers
# answer from their cache (warmed first).
# Never touches the root namespace; every namespace and process is removed on exit.
# Usage: bench/dns/agent.sh [services=10000] [endpointsPerService=5] [seconds=10] [rounds=3] [ext%=0]
# Env: NODENET_BIN (default .build-rel/release/nodenet), UDP_BATCH=1 for the agent's batch UDP path, PERF=1 to record a perf profile of the agent
# (PERF_OUT, default /tmp/nodenet-perf-agent.txt).
set -euo pipefail
S=${1:-10000}; EPS=${2:-5}; SECS=${3:-10}; ROUNDS=${4:-3}; EXT=${5:-0}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${NODENET_BIN:-$ROOT/.build-rel/release/nodenet}
for b in unbound dnsmasq dnsperf python3 dig; do command -v $b >/dev/null || { echo "missing $b (scripts/setup.sh installs it)" >&2; exit 2; }; done
[ -x "$BIN" ] || { echo "no $BIN: swift build -c release --product nodenet --scratch-path .build-rel" >&2; exit 2; }
P=nndb$$; NODE=$P-node; UP=$P-up
T=$(mktemp -d /tmp/nodenet-dnsbench.XXXX); PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.5
  for n in $NODE $UP; do ip netns pids $n 2>/dev/null | xargs -r kill -9 2>/dev/null || true; ip netns del $n 2>/dev/null || true; done
  rm -rf "$T"
}
trap cleanup EXIT
in_node() { nsenter --net=/var/run/netns/$NODE "$@"; }

ip netns add $NODE; ip netns add $UP
ip -n $NODE link set lo up; ip -n $UP link set lo up
ip link add eth0 netns $NODE type veth peer name eth0 netns $UP
ip -n $NODE addr add 192.168.77.11/24 dev eth0; ip -n $NODE link set eth0 up
ip -n $UP addr add 192.168.77.1/24 dev eth0; ip -n $UP link set eth0 up
ip -n $NODE route add default via 192.168.77.1

nsenter --net=/var/run/netns/$UP dnsmasq --no-daemon --no-resolv --no-hosts --bind-interfaces --listen-address=192.168.77.1 \
  --port=53 --address=/example.test/192.0.2.10 --local-ttl=3600 --cache-size=0 >$T/dnsmasq.log 2>&1 & PIDS+=($!)

python3 - "$S" "$EPS" "$EXT" "$T" <<'PY'
import random, sys
s, eps, ext, t = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
random.seed(1)
def cip(i): return f"10.100.{i // 250}.{i % 250 + 1}"
# Manifests in chunks of 500 services (one apply each stays well inside the CLI's 30 s timeout).
with open(f"{t}/unbound-local.conf", "w") as u:
    m = open(f"{t}/services-0000.yaml", "w")
    for ns in range(50):
        m.write(f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: ns{ns}}}\n---\n")
    for i in range(s):
        if i % 500 == 0 and i > 0:
            m.close(); m = open(f"{t}/services-{i:05d}.yaml", "w")
        name, ns = f"svc{i}", f"ns{i % 50}"
        m.write(f"apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {ns}}}\n"
                f"spec: {{clusterIP: {cip(i)}, ports: [{{name: http, port: 80, targetPort: 8080}}]}}\n---\n")
        eps_text = ", ".join(f"{{addresses: [10.200.{(i * eps + j) // 250 % 250}.{(i * eps + j) % 250 + 1}], conditions: {{ready: true}}}}"
                             for j in range(eps))
        m.write(f"apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {name}-abcde, namespace: {ns}, "
                f"labels: {{kubernetes.io/service-name: {name}}}}}\naddressType: IPv4\n"
                f"ports: [{{name: http, port: 8080, protocol: TCP}}]\nendpoints: [{eps_text}]\n---\n")
        u.write(f'local-data: "{name}.{ns}.svc.cluster.local 5 IN A {cip(i)}"\n')
    m.close()
with open(f"{t}/queries", "w") as q, open(f"{t}/external", "w") as e:
    for j in range(1000): e.write(f"x{j}.example.test A\n")
    for _ in range(200000):
        if random.randrange(100) < ext:
            q.write(f"x{random.randrange(1000)}.example.test A\n")
        else:
            j = random.randrange(s); q.write(f"svc{j}.ns{j % 50}.svc.cluster.local A\n")
PY

# UDP_BATCH=1: the agent serves UDP with the batch fast path (dns.udpBatchIO, recvmmsg/sendmmsg).
printf 'dns:\n  udpBatchIO: %s\n' "$([ "${UDP_BATCH:-0}" = 1 ] && echo true || echo false)" >$T/config.yaml
nsenter --net=/var/run/netns/$NODE "$BIN" agent --config $T/config.yaml --node-name node1 --node-ip 192.168.77.11 --pod-cidrs 10.244.1.0/24 --state-dir $T/state --run-dir $T/run \
  --dns-upstreams 192.168.77.1:53 --metrics-listen "" >$T/agent.log 2>&1 & APID=$!; PIDS+=($APID)
nn() { "$BIN" "$@" --socket $T/run/nodenet.sock; }
for _ in $(seq 200); do grep -q '"ready" : true' <<<"$(nn status --json 2>/dev/null)" && break; sleep 0.1; done
start=$(date +%s.%N)
for f in $T/services-*.yaml; do nn apply -f $f >/dev/null; done
# The service rules programmed: the services row in sync with every service.
for _ in $(seq 1200); do
  nn status --json 2>/dev/null | python3 -c '
import json, sys
d = json.load(sys.stdin)
row = next(a for a in d["actors"] if a["name"] == "services")
sys.exit(0 if row["state"] == "in-sync" and row.get("counters", {}).get("services", 0) >= int(sys.argv[1]) else 1)' "$S" && break
  sleep 0.5
done
echo "applied and programmed $S services / $((S * EPS)) endpoints in $(python3 -c "import time; print(round(time.time() - $start, 1))") s"

cat > $T/unbound.conf <<U
server:
  interface: 127.0.0.54
  port: 5302
  num-threads: 2
  so-reuseport: yes
  do-daemonize: no
  use-syslog: no
  username: ""
  chroot: ""
  directory: "$T"
  pidfile: ""
  access-control: 127.0.0.0/8 allow
  msg-cache-size: 64m
  rrset-cache-size: 64m
  local-zone: "cluster.local." static
  include: $T/unbound-local.conf
forward-zone:
  name: "."
  forward-addr: 192.168.77.1
U
nsenter --net=/var/run/netns/$NODE unbound -c $T/unbound.conf >$T/unbound.log 2>&1 & UPID=$!; PIDS+=($UPID)
ok=0
for _ in $(seq 150); do
  [ "$(in_node dig +short +time=1 +tries=1 @127.0.0.54 -p 5302 svc1.ns1.svc.cluster.local 2>/dev/null)" = "10.100.0.2" ] && \
  [ "$(in_node dig +short +time=1 +tries=1 @169.254.20.10 svc1.ns1.svc.cluster.local 2>/dev/null)" = "10.100.0.2" ] && { ok=1; break; }
  sleep 0.2
done
[ $ok = 1 ] || { echo "servers did not come up"; tail -20 $T/*.log; exit 1; }
# Warm both caches with the external names.
if [ "$EXT" -gt 0 ]; then
  in_node dnsperf -s 169.254.20.10 -p 53 -d $T/external -n 1 -c 1 -Q 2000 >/dev/null 2>&1
  in_node dnsperf -s 127.0.0.54 -p 5302 -d $T/external -n 1 -c 1 -Q 2000 >/dev/null 2>&1
fi

perf_run() {
  in_node dnsperf -s "$1" -p "$2" -d $T/queries -l "$SECS" -c 4 -Q 1000000 >$T/perf.$2 2>&1
  awk '/Queries per second/{q=$4} /Queries lost/{l=$3} /Average Latency/{a=$4*1000} END{printf "%d %d %.3f\n", q, l, a}' $T/perf.$2
}
best() { sort -n -k1 | tail -1; }
for r in $(seq 1 "$ROUNDS"); do
  perf_run 169.254.20.10 53 >>$T/n.rounds
  perf_run 127.0.0.54 5302 >>$T/u.rounds
done
cpu() {
  read u0 s0 < <(awk '{print $14, $15}' /proc/$1/stat)
  in_node dnsperf -s "$2" -p "$3" -d $T/queries -l 5 -c 4 -Q 40000 >$T/cpu.$3 2>&1
  read u1 s1 < <(awk '{print $14, $15}' /proc/$1/stat)
  awk -v t=$(( (u1 - u0 + s1 - s0) )) '/Queries completed/{printf "%.2f", t * 10000 / $3}' $T/cpu.$3
}
NC=$(cpu $APID 169.254.20.10 53); UC=$(cpu $UPID 127.0.0.54 5302)
# Per-thread CPU of the agent under load (which threads share the DNS work), and with PERF=1 a
# profile (cpu-clock: this VM has no hardware counters).
threads() { for t in /proc/$APID/task/*; do echo "$(basename $t) $(cat $t/comm) $(awk '{print $14 + $15}' $t/stat)"; done; }
threads >$T/threads.0
if [ "${PERF:-0}" = 1 ]; then
  perf record -e cpu-clock -F 499 -g -p $APID -o $T/perf.data -- sleep 5 >/dev/null 2>&1 & PERFPID=$!
fi
in_node dnsperf -s 169.254.20.10 -p 53 -d $T/queries -l 5 -c 4 -Q 1000000 >/dev/null 2>&1
threads >$T/threads.1
echo "agent threads by CPU ticks during 5 s of load (tid name ticks):"
join <(sort $T/threads.0) <(sort $T/threads.1) | awk '{d = $5 - $3; if (d > 0) print "  " $1, $2, d}' | sort -k3 -n -r | head -8
if [ "${PERF:-0}" = 1 ]; then
  wait $PERFPID || true
  perf report -i $T/perf.data --no-children --sort comm,dso,symbol --stdio 2>/dev/null | grep -E '^ +[0-9.]+%' | head -60 > ${PERF_OUT:-/tmp/nodenet-perf-agent.txt} || true
  echo "perf profile: ${PERF_OUT:-/tmp/nodenet-perf-agent.txt}"
fi
read NQ NL NA < <(best <$T/n.rounds)
read UQ UL UA < <(best <$T/u.rounds)
echo "services=$S endpoints=$((S * EPS)) external=$EXT% seconds=$SECS rounds=$ROUNDS udp_batch=${UDP_BATCH:-0} (best round each; agent threads: $(ls /proc/$APID/task | wc -l))"
for s in n u; do echo "  $s rounds (qps lost avg_ms): $(tr '\n' ';' <$T/$s.rounds)"; done
printf "%-14s qps=%-8s lost=%-6s avg_latency_ms=%-7s cpu_us_per_query_at_40k=%s\n" "nodenet agent" "$NQ" "$NL" "$NA" "$NC" unbound "$UQ" "$UL" "$UA" "$UC"
python3 -c "print(f'ratio qps agent/unbound={$NQ/$UQ:.2f}  latency agent/unbound={$NA/max($UA,1e-9):.2f}  cpu/query agent/unbound={$NC/max($UC,1e-9):.2f}')"
echo "agent rss_mb=$(awk '/VmRSS/{print int($2/1024)}' /proc/$APID/status)"
