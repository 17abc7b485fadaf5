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
. "$(dirname "$0")/common.sh"
pps() { connection_rate $1 10.96.0.0 $SECS $PAR; }
i=0
for f in "$@"; do topology ${P}n$i ${P}c$i ${P}v$i 0 1 2 3 4; ip netns exec ${P}n$i nft -f $f; i=$((i+1)); done
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
