#!/bin/bash
# ClusterDNS benchmark: the same N service A records served by nodenet's dns-bench, unbound
# (2 threads) and dnsmasq on loopback, each loaded by dnsperf for SECS with random queries
# (adapted from shared/bench/dns-reference.sh, same names and query mix, same run).
# Prints qps, lost queries and average latency per server, the ratios against unbound and
# dnsmasq, and dns-bench's resident memory (store + zone + server) with N services and
# N*EPS endpoints.
# The machine is shared, so the three servers are measured in ROUNDS interleaved rounds and
# each one's best round counts; CPU time per query at a fixed 40k qps is printed as well
# (less sensitive to other load than the saturation figure).
# A second dns-bench serves UDP through the batch fast path (udpBatchIO: recvmmsg/sendmmsg
# threads below NIO), measured in the same rounds ("nodenet-batch").
# Usage: bench/dns/run.sh [services=10000] [seconds=10] [endpointsPerService=5] [rounds=3]
# Env: DNS_BENCH_BIN: a dns-bench already built (else built into .build-dns).
set -euo pipefail
N=${1:-10000}; SECS=${2:-10}; EPS=${3:-5}; ROUNDS=${4:-3}
cd "$(dirname "$0")/../.."
for b in unbound dnsmasq dnsperf python3; do command -v $b >/dev/null || { echo "missing $b (apt-get install unbound dnsmasq dnsperf)" >&2; exit 2; }; done
if [ -z "${DNS_BENCH_BIN:-}" ]; then
  swift build -c release --scratch-path .build-dns --product dns-bench >/dev/null
  BIN=$(swift build -c release --scratch-path .build-dns --show-bin-path)/dns-bench
else BIN=$DNS_BENCH_BIN; fi
T=$(mktemp -d); PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf $T' EXIT
python3 - "$N" "$T" <<'PY'
import random, sys
n, t = int(sys.argv[1]), sys.argv[2]
random.seed(1)
with open(f"{t}/hosts", "w") as h, open(f"{t}/unbound-local.conf", "w") as u:
    for i in range(n):
        name, addr = f"svc{i}.ns{i % 50}.svc.cluster.local", f"10.96.{i // 250}.{i % 250 + 1}"
        h.write(f"{addr} {name}\n"); u.write(f'local-data: "{name} 5 IN A {addr}"\n')
with open(f"{t}/queries", "w") as q:
    for _ in range(200000):
        j = random.randrange(n); q.write(f"svc{j}.ns{j % 50}.svc.cluster.local A\n")
PY
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
  local-zone: "cluster.local." static
  include: $T/unbound-local.conf
U
unbound -c $T/unbound.conf >$T/unbound.log 2>&1 & UPID=$!; PIDS+=($UPID)
dnsmasq --no-daemon --no-resolv --no-hosts --addn-hosts=$T/hosts --listen-address=127.0.0.55 --bind-interfaces \
  --port=5303 --cache-size=10000 --local=/cluster.local/ >$T/dnsmasq.log 2>&1 & DPID=$!; PIDS+=($DPID)
"$BIN" 127.0.0.56 5304 "$N" "$EPS" >$T/nodenet.log 2>&1 & NPID=$!; PIDS+=($NPID)
DNS_BENCH_UDP_BATCH=1 "$BIN" 127.0.0.57 5307 "$N" "$EPS" >$T/batch.log 2>&1 & BPID=$!; PIDS+=($BPID)
ok=0
for i in $(seq 1 150); do
  dig +short +time=1 +tries=1 @127.0.0.54 -p 5302 svc1.ns1.svc.cluster.local >/dev/null 2>&1 && \
  dig +short +time=1 +tries=1 @127.0.0.55 -p 5303 svc1.ns1.svc.cluster.local >/dev/null 2>&1 && \
  [ "$(dig +short +time=1 +tries=1 @127.0.0.56 -p 5304 svc1.ns1.svc.cluster.local 2>/dev/null)" = "10.96.0.2" ] && \
  [ "$(dig +short +time=1 +tries=1 @127.0.0.57 -p 5307 svc1.ns1.svc.cluster.local 2>/dev/null)" = "10.96.0.2" ] && { ok=1; break; }
  sleep 0.2
done
[ $ok = 1 ] || { echo "servers did not come up"; cat $T/*.log; exit 1; }
rss() { awk '/VmRSS/{print int($2/1024)}' /proc/$1/status; }
MEM_IDLE=$(rss $NPID)
# dnsperf: qps, lost, average latency (ms).
perf() {
  dnsperf -s "$1" -p "$2" -d $T/queries -l "$SECS" -c 4 -Q 1000000 >$T/perf.$2 2>&1
  awk '/Queries per second/{q=$4} /Queries lost/{l=$3} /Average Latency/{a=$4*1000} END{printf "%d %d %.3f\n", q, l, a}' $T/perf.$2
}
best() { sort -n -k1 | tail -1; }
for r in $(seq 1 "$ROUNDS"); do
  perf 127.0.0.56 5304 >>$T/n.rounds; echo >>$T/n.rounds
  perf 127.0.0.57 5307 >>$T/b.rounds; echo >>$T/b.rounds
  perf 127.0.0.54 5302 >>$T/u.rounds; echo >>$T/u.rounds
  perf 127.0.0.55 5303 >>$T/d.rounds; echo >>$T/d.rounds
done
MEM_LOAD=$(rss $NPID)
read NQ NL NA < <(grep . $T/n.rounds | best)
read UQ UL UA < <(grep . $T/u.rounds | best)
read BQ BL BA < <(grep . $T/b.rounds | best)
read DQ DL DA < <(grep . $T/d.rounds | best)
# CPU (user+system) per answered query at a fixed rate.
cpu() {
  read u0 s0 < <(awk '{print $14, $15}' /proc/$1/stat)
  dnsperf -s "$2" -p "$3" -d $T/queries -l 5 -c 4 -Q 40000 >$T/cpu.$3 2>&1
  read u1 s1 < <(awk '{print $14, $15}' /proc/$1/stat)
  awk -v t=$(( (u1 - u0 + s1 - s0) )) '/Queries completed/{printf "%.2f", t * 10000 / $3}' $T/cpu.$3
}
NC=$(cpu $NPID 127.0.0.56 5304); BC=$(cpu $BPID 127.0.0.57 5307); UC=$(cpu $UPID 127.0.0.54 5302); DC=$(cpu $DPID 127.0.0.55 5303)
echo "services=$N endpoints=$((N * EPS)) seconds=$SECS rounds=$ROUNDS (best round each)"
for s in n b u d; do echo "  $s rounds (qps lost avg_ms): $(grep . $T/$s.rounds | tr '\n' ';')"; done
printf "%-8s qps=%-8s lost=%-6s avg_latency_ms=%-7s cpu_us_per_query_at_40k=%s\n" nodenet "$NQ" "$NL" "$NA" "$NC" nodenet-batch "$BQ" "$BL" "$BA" "$BC" unbound "$UQ" "$UL" "$UA" "$UC" dnsmasq "$DQ" "$DL" "$DA" "$DC"
python3 -c "print(f'ratio qps nodenet/unbound={$NQ/$UQ:.2f} nodenet/dnsmasq={$NQ/$DQ:.2f}  latency nodenet/unbound={$NA/max($UA,1e-9):.2f}  cpu/query nodenet/unbound={$NC/max($UC,1e-9):.2f}')"
python3 -c "print(f'batch path: ratio qps nodenet-batch/unbound={$BQ/$UQ:.2f} nodenet-batch/nodenet={$BQ/$NQ:.2f}  latency nodenet-batch/unbound={$BA/max($UA,1e-9):.2f}  cpu/query nodenet-batch/unbound={$BC/max($UC,1e-9):.2f} nodenet-batch/nodenet={$BC/max($NC,1e-9):.2f}')"
echo "nodenet rss_mb idle=$MEM_IDLE after_load=$MEM_LOAD ($(grep -o 'rss_mb_store_only=[0-9]*' $T/nodenet.log): the store alone, before the DNS server starts)"
