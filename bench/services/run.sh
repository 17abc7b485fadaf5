#!/bin/bash
# Service-rule benchmark: nodenet's proxy (model + diff, then applied inside a private namespace)
# against the kube-proxy-shaped nft baseline, in the same run. Never touches the root namespace.
# usage: bench/services/run.sh [SERVICES] [ENDPOINTS]   (as root; builds proxy-bench in release)
set -euo pipefail
S=${1:-10000}; E=${2:-5}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
NS=proxybench$$
trap 'ip netns del $NS 2>/dev/null || true' EXIT
cd "$ROOT"
swift build -c release --product proxy-bench --scratch-path "${SCRATCH:-.build-proxy}" >/dev/null
BIN=$(swift build -c release --product proxy-bench --scratch-path "${SCRATCH:-.build-proxy}" --show-bin-path)/proxy-bench
ip netns add $NS
"$BIN" --services "$S" --endpoints "$E" --netns $NS
/work/shared/bench/nft-reference.sh "$S" "$E"
