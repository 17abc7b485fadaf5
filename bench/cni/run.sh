#!/bin/bash
# CNI benchmark: nodenet against the reference bridge + host-local plugins, in the same run.
#   1. PODS serial ADDs then DELs, each plugin exec'd from a loop inside the node namespace
#      (as a runtime does): ../shared/bench/cni-reference.sh for the reference, the same loop here.
#   2. BURST ADDs started at once: ../shared/bench/cni-reference-concurrent.sh, the same here.
# The plugin is the release nodenet-cni executable (static Swift stdlib; installed as
# /opt/cni/bin/nodenet), the agent the release nodenet binary running in the node namespace.
# Usage (root): bench/cni/run.sh [PODS] [BURST] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-50}; B=${2:-100}; ROUNDS=${3:-3}
REF=${REF:-../shared/bench}
swift build -c release --static-swift-stdlib --product nodenet >/dev/null
swift build -c release --static-swift-stdlib --product nodenet-cni >/dev/null
AGENT=$PWD/.build/release/nodenet
BIN=$PWD/.build/release/nodenet-cni
P=cnibench$$
DATA=$(mktemp -d)
cleanup() {
  for ns in $(ip netns list | awk '{print $1}' | grep "^$P-" || true); do
    ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true; ip netns del "$ns" 2>/dev/null || true
  done
  rm -rf "$DATA"
}
trap cleanup EXIT

start_agent() {  # $1 node ns, $2 cidr
  mkdir -p "$DATA/$1"
  nsenter --net=/var/run/netns/$1 "$AGENT" agent --node-name node1 --pod-cidrs "$2" --state-dir "$DATA/$1/state" \
    --run-dir "$DATA/$1/run" --metrics-listen "" > "$DATA/$1/agent.log" 2>&1 &
  for _ in $(seq 100); do "$AGENT" status --socket "$DATA/$1/run/nodenet.sock" >/dev/null 2>&1 && return; sleep 0.1; done
  echo "agent did not start" >&2; exit 1
}

serial() {  # one round of N serial ADDs then DELs through nodenet; prints add and del ms per pod
  local node=$P-s$1
  ip netns add $node; ip -n $node link set lo up
  for i in $(seq 1 "$N"); do ip netns add "$P-s$1-$i"; done
  start_agent $node 10.244.1.0/24
  cat > "$DATA/conf-$1.json" <<J
{"cniVersion":"1.0.0","name":"nodenet","type":"nodenet","socket":"$DATA/$node/run/nodenet.sock"}
J
  cat > "$DATA/loop.sh" <<'L'
verb=$1 n=$2 p=$3 bin=$4 conf=$5
t0=$(date +%s%N)
for i in $(seq 1 "$n"); do
  CNI_COMMAND=$verb CNI_CONTAINERID=c$i CNI_NETNS=/var/run/netns/$p-$i CNI_IFNAME=eth0 CNI_PATH=/opt/cni/bin \
    "$bin" < "$conf" > /dev/null || { echo "$verb $i failed" >&2; exit 1; }
done
echo $(( $(date +%s%N) - t0 ))
L
  local add del
  add=$(ip netns exec $node bash "$DATA/loop.sh" ADD "$N" "$P-s$1" "$BIN" "$DATA/conf-$1.json")
  ip netns exec "$P-s$1-1" ping -c1 -W1 10.244.1.$((N+1)) >/dev/null || { echo "nodenet pods cannot reach each other" >&2; exit 1; }
  del=$(ip netns exec $node bash "$DATA/loop.sh" DEL "$N" "$P-s$1" "$BIN" "$DATA/conf-$1.json")
  awk -v n="$N" -v a="$add" -v d="$del" 'BEGIN{printf "%.2f %.2f\n", a/n/1e6, d/n/1e6}'
}

burst() {  # B ADDs at once; prints total p50 p99 ms
  local node=$P-b$1
  ip netns add $node; ip -n $node link set lo up
  for i in $(seq 1 "$B"); do ip netns add "$P-b$1-$i"; done
  start_agent $node 10.244.0.0/16
  echo "{\"cniVersion\":\"1.0.0\",\"name\":\"nodenet\",\"type\":\"nodenet\",\"socket\":\"$DATA/$node/run/nodenet.sock\"}" > "$DATA/bconf-$1.json"
  cat > "$DATA/one.sh" <<'L'
t0=$(date +%s%N)
CNI_COMMAND=ADD CNI_CONTAINERID=c$1 CNI_NETNS=/var/run/netns/$2-$1 CNI_IFNAME=eth0 CNI_PATH=/opt/cni/bin "$3" < "$4" > "$5/out-$1" || echo FAIL
echo $(( ($(date +%s%N) - t0) / 1000000 ))
L
  local total
  total=$(ip netns exec $node bash -c "t0=\$(date +%s%N); for i in \$(seq 1 $B); do bash $DATA/one.sh \$i $P-b$1 $BIN $DATA/bconf-$1.json $DATA & done > $DATA/lat-$1; wait; echo \$(( (\$(date +%s%N) - t0) / 1000000 ))")
  grep -q FAIL "$DATA/lat-$1" && { echo "some nodenet ADDs failed" >&2; exit 1; }
  local distinct; distinct=$(cat $DATA/out-* | grep -o '"address":"[^"]*"' | sort -u | wc -l)
  [ "$distinct" = "$B" ] || { echo "only $distinct distinct addresses of $B" >&2; exit 1; }
  rm -f $DATA/out-*
  sort -n "$DATA/lat-$1" | awk -v t="$total" '{a[NR]=$1} END{printf "%d %d %d\n", t, a[int(NR*0.5)], a[int(NR*0.99)]}'
}

median() { sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
for r in $(seq 1 "$ROUNDS"); do
  bash "$REF/cni-reference.sh" "$N" | tee -a "$DATA/ref-serial"
  serial $r | tee -a "$DATA/nn-serial"
  bash "$REF/cni-reference-concurrent.sh" "$B" | tee -a "$DATA/ref-burst"
  burst $r | tee -a "$DATA/nn-burst"
done
ra=$(sed 's/.*add_ms_per_pod=\([0-9.]*\).*/\1/' "$DATA/ref-serial" | median)
rd=$(sed 's/.*del_ms_per_pod=\([0-9.]*\).*/\1/' "$DATA/ref-serial" | median)
na=$(awk '{print $1}' "$DATA/nn-serial" | median); nd=$(awk '{print $2}' "$DATA/nn-serial" | median)
rp=$(sed 's/.*p99_ms=\([0-9]*\).*/\1/' "$DATA/ref-burst" | median); np=$(awk '{print $3}' "$DATA/nn-burst" | median)
rt=$(sed 's/.*total_ms=\([0-9]*\).*/\1/' "$DATA/ref-burst" | median); nt=$(awk '{print $1}' "$DATA/nn-burst" | median)
awk -v n=$N -v b=$B -v r=$ROUNDS -v ra=$ra -v rd=$rd -v na=$na -v nd=$nd -v rp=$rp -v np=$np -v rt=$rt -v nt=$nt 'BEGIN{
  printf "cni pods=%d rounds=%d ref_add_ms=%.2f nodenet_add_ms=%.2f add_ratio=%.2f ref_del_ms=%.2f nodenet_del_ms=%.2f del_ratio=%.2f\n", n, r, ra, na, na/ra, rd, nd, nd/rd
  printf "cni burst=%d ref_total_ms=%d nodenet_total_ms=%d ref_p99_ms=%d nodenet_p99_ms=%d p99_ratio=%.2f\n", b, rt, nt, rp, np, np/rp }'
