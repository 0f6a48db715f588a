#!/usr/bin/env bash
# The test suite as four pytest processes at once, one per group of test files: the GPU
# check's tests section. One process ran about 80% of the suite on CuPy in its 180 s on
# the H200 (2026-12-04), nearly all of it on the host, while the machine has 16 cores.
#
#   bash scripts/gpu_test_shards.sh LOG [PYTEST_ARGS...]
#
# Every shard gets PYTEST_ARGS; LOG receives the shards' whole output, one after another,
# also when the run is stopped (timeout's TERM): a cut run still shows how far each got.
# Prints each shard's failures and summary line; exits non-zero when any shard failed.
set -u
cd "$(dirname "$0")/.."
log=$1; shift
PY=${PYTHON:-python3}
shards=(
  "tests/backends/test_ops.py"
  "tests/backends --ignore=tests/backends/test_ops.py"
  "tests/framework"
  "tests --ignore=tests/backends --ignore=tests/framework"
)
parts=$(mktemp -d)
pids=()

collect() {  # the shards' logs into LOG, and a line or two of each on stdout
  local i
  : >"$log"
  for i in "${!shards[@]}"; do
    { echo "== shard $i: pytest ${shards[$i]}"; cat "$parts/$i.log"; echo; } >>"$log"
    echo "shard $i (${shards[$i]}):"
    grep -E '^(FAILED|ERROR) ' "$parts/$i.log" | head -n 20
    tail -n 1 "$parts/$i.log" | sed -e '$a\'  # a cut shard's last line has no newline
  done
  rm -rf "$parts"
}
stopped() {
  kill "${pids[@]}" 2>/dev/null
  wait
  echo "stopped before the shards finished"
  collect
  exit 124
}
trap stopped TERM INT

for i in "${!shards[@]}"; do
  # word splitting of the shard's own arguments is meant: paths and options
  # shellcheck disable=SC2086
  $PY -m pytest ${shards[$i]} "$@" >"$parts/$i.log" 2>&1 &
  pids+=($!)
done
rc=0
for pid in "${pids[@]}"; do
  wait "$pid" || rc=1
done
collect
exit $rc
