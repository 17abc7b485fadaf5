#!/usr/bin/env bash
# Sets up the machine (scripts/setup.sh) and runs the whole test suite. Privileged tests run
# when this runs as root (CI does); each works inside network namespaces it creates itself.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# Leftover test namespaces of crashed earlier runs (our prefix only).
for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^nnt[0-9]+-' || true); do ip netns del "$ns" || true; done
# Serially: the privileged suites each build namespaces, run agents and time repairs; on a
# 2-core machine running them all at once makes timing checks flaky for no gain.
# The run's output is kept so that a failure ends with the list of what failed: CI shows the tail
# of a long log, and the failing tests would otherwise be hundreds of lines above it.
log=$(mktemp /tmp/nodenet-test.XXXXXX.log)
# Line-buffered: piped into tee, the test process's stdout would otherwise be written in 4 KiB
# blocks, and a run stopped from outside would end its log a page before where it really was.
run=(stdbuf -oL -eL swift test --skip-build --no-parallel "$@")
# NODENET_TEST_TIMEOUT=<seconds> (CI sets it from what is left of its own limit): past it, the
# run is stopped with the tests still running named, instead of CI being cut off mid-log.
watchdog=""
if [ -n "${NODENET_TEST_TIMEOUT:-}" ]; then
  (
    sleep "$NODENET_TEST_TIMEOUT"
    echo "test: over the ${NODENET_TEST_TIMEOUT}s budget; the last tests started:"
    grep -E '◇ Test .* started' "$log" | tail -3
    echo "test: processes still running under the test run:"
    ps -eo pid,ppid,etimes,args --forest | grep -vE ' (ps|grep|sleep) ' | grep -A40 -E 'swift-test|PackageTests' | head -60
    pkill -TERM -f 'PackageTests.xctest' || true; sleep 10; pkill -KILL -f 'PackageTests.xctest|swift-test' || true
  ) &
  watchdog=$!
fi
set +e
"${run[@]}" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
[ -z "$watchdog" ] || kill "$watchdog" 2>/dev/null || true
echo "test: the slowest suites:"
grep -E '✔ Suite .* passed after|✘ Suite .* failed after' "$log" | sed -E 's/.*Suite ([A-Za-z0-9_]+) .* after ([0-9.]+) seconds.*/\2 \1/' | sort -rn | head -12 || true
if [ "$status" -ne 0 ]; then
  echo "test: failed (exit $status); the failing tests and their recorded issues:"
  grep -E '^✘|recorded an issue|^error:|: error:' "$log" | grep -v 'Test run with' | head -80 || true
  exit 1
fi
rm -f "$log"
# The containerd CRI test again against the newer containerd releases setup.sh unpacked (1.7 from
# Debian 13, 2.x from sid): the same kubelet-shaped calls, the same packaged conflist.
if [ $# -eq 0 ]; then
  for d in /opt/nodenet-test/containerd-*/usr/bin; do
    [ -x "$d/containerd" ] || continue
    echo "test: ContainerdTests against containerd $("$d/containerd" --version | awk '{print $3}')"
    NODENET_CONTAINERD_DIR=$d swift test --skip-build --no-parallel --filter ContainerdTests
  done
fi
