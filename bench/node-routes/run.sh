#!/bin/bash
# Node-routes benchmarks (root): convergence of NodeRoutesActor for N peers appearing in the
# store, against `ip -batch` of the same entries in the same run (alternating rounds), for
# host-gw (1 route per peer) and vxlan (neighbour + FDB + route per peer); then repair
# latency (a route deleted behind the actor's back, median of 20).
# Usage: bench/node-routes/run.sh [PEERS] [ROUNDS]     Defaults: 5000 peers, 3 rounds.
set -euo pipefail
N=${1:-5000}
ROUNDS=${2:-3}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
REFERENCE=${REFERENCE:-/work/shared/bench/routes-reference.sh}
SCRATCH=${SCRATCH:-$ROOT/.build-routes}
[ "$(id -u)" = 0 ] || { echo "run as root (creates network namespaces)" >&2; exit 1; }
[ "$ROUNDS" -ge 1 ] && [ "$ROUNDS" -le 20 ] || { echo "ROUNDS must be 1..20" >&2; exit 1; }

swift build --package-path "$ROOT" --scratch-path "$SCRATCH" -c release --product routes-bench >&2
BENCH="$SCRATCH/release/routes-bench"

median() { python3 -c 'import statistics,sys; print(f"{statistics.median(float(x) for x in sys.argv[1:]):.3f}")' "$@"; }

for mode in host-gw vxlan; do
    ref=(); ours=()
    for ((i = 0; i < ROUNDS; i++)); do
        if [ "$mode" = host-gw ]; then
            r=$(bash "$REFERENCE" "$N" | sed -n 's/.*ip_batch_s=\([0-9.]*\).*/\1/p')
        else
            r=$(bash "$HERE/vxlan-reference.sh" "$N" | sed -n 's/.*batch_s=\([0-9.]*\).*/\1/p')
        fi
        line=$(timeout 300 "$BENCH" converge "$N" "$mode")
        s=$(sed -n 's/.*seconds=\([0-9.e-]*\).*/\1/p' <<<"$line")
        ref+=("$r"); ours+=("$s")
        echo "$mode round $((i + 1)): ip -batch ${r}s, nodenet ${s}s ($line)" >&2
    done
    mr=$(median "${ref[@]}"); mo=$(median "${ours[@]}")
    echo "converge mode=$mode peers=$N rounds=$ROUNDS ip_batch_s=$mr nodenet_s=$mo ratio=$(python3 -c "print(f'{$mo/$mr:.2f}')")"
done
timeout 300 "$BENCH" repair 20 100
