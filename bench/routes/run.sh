#!/bin/bash
# Route programming benchmark: nodenet (netlink-bench) against `ip -batch` (the shared
# reference script), same workload, same run, alternating rounds; prints medians and ratios.
# Usage (root): bench/routes/run.sh [ROUTES] [ROUNDS]     Defaults: 5000 routes, 5 rounds.
# Everything runs inside throwaway network namespaces that both tools create and delete.
set -euo pipefail
N=${1:-5000}
ROUNDS=${2:-5}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
REFERENCE=${REFERENCE:-/work/shared/bench/routes-reference.sh}
SCRATCH=${SCRATCH:-$ROOT/.build-netlink}
[ "$(id -u)" = 0 ] || { echo "run as root (creates network namespaces)" >&2; exit 1; }
[ "$ROUNDS" -ge 1 ] && [ "$ROUNDS" -le 50 ] || { echo "ROUNDS must be 1..50" >&2; exit 1; }

swift build --package-path "$ROOT" --scratch-path "$SCRATCH" -c release --product netlink-bench >&2
BENCH="$SCRATCH/release/netlink-bench"

ref=(); install=(); replace=()
for ((i = 0; i < ROUNDS; i++)); do
    r=$(bash "$REFERENCE" "$N" | sed -n 's/.*ip_batch_s=\([0-9.]*\).*/\1/p')
    line=$("$BENCH" "$N")
    ref+=("$r")
    install+=("$(sed -n 's/.*install_s=\([0-9.e-]*\).*/\1/p' <<<"$line")")
    replace+=("$(sed -n 's/.*replace_s=\([0-9.e-]*\).*/\1/p' <<<"$line")")
    echo "round $((i + 1)): ip -batch ${r}s, nodenet install ${install[-1]}s, replace ${replace[-1]}s" >&2
done

python3 - "$N" "${ref[*]}" "${install[*]}" "${replace[*]}" <<'PY'
import statistics, sys
n = sys.argv[1]
ref, ins, rep = ([float(x) for x in a.split()] for a in sys.argv[2:5])
r, i, p = statistics.median(ref), statistics.median(ins), statistics.median(rep)
print(f"routes={n} rounds={len(ref)} ip_batch_s={r:.3f} nodenet_install_s={i:.3f} nodenet_replace_s={p:.3f} "
      f"ratio={i / r:.2f} replace_over_install={p / i:.2f}")
PY
