#!/usr/bin/env bash
# The test suite as pytest processes running at once, one per group of test files: the GPU
# check's tests section. One process ran about 80% of the suite on CuPy in its 180 s on
# the H200 (2026-12-04), nearly all of it on the host, while the machine has 16 cores.
# Five shards split the suite under the caller's XPNET_BACKEND; where PyTorch sees a CUDA
# device a sixth runs the framework, models and operations on its CUDA tensors
# (XPNET_BACKEND=torch XPNET_DEVICE=cuda:0), which no other section runs through the suite,
# and where JAX sees a GPU a seventh runs the operations, the Trainer and checkpoints on
# JAX's GPU arrays (JAX's own tests and the models' parity run in the five, on its default
# device).
#
#   REQUIRE=cupy,torch,jax bash scripts/gpu_test_shards.sh LOG [PYTEST_ARGS...]
#
# Every shard gets PYTEST_ARGS, and with REQUIRE set, --xpnet-require REQUIRE: a test
# skipped because a required backend cannot be used fails (framework/testing/plugin.py);
# where REQUIRE names torch and PyTorch sees no CUDA device (or jax and JAX sees no GPU),
# that shard cannot run, which fails the run too. LOG receives the shards' whole output,
# one after another, also when the run is stopped (timeout's TERM): a cut run still shows
# how far each got. Every shard may reach JAX (its own tests, the models' parity), and JAX
# would take 75% of the card up front in each: XLA_PYTHON_CLIENT_PREALLOCATE=false.
# Prints each shard's failures, its skip reasons (counted, the same reason once) and its
# summary line; exits non-zero when any shard failed.
set -u
cd "$(dirname "$0")/.."
log=$1; shift
PY=${PYTHON:-python3}
REQUIRE=${REQUIRE:-}
export XLA_PYTHON_CLIENT_PREALLOCATE=${XLA_PYTHON_CLIENT_PREALLOCATE:-false}
rc=0
if [ -n "$REQUIRE" ]; then set -- --xpnet-require "$REQUIRE" "$@"; fi
# [environment|]pytest arguments
shards=(
  "tests/backends/test_ops.py"
  "tests/backends --ignore=tests/backends/test_ops.py"
  "tests/framework"
  "tests/models"
  "tests --ignore=tests/backends --ignore=tests/framework --ignore=tests/models"
)
gpu_shard() {  # LIBRARY PROBE SHARD ARRAYS LACK: SHARD where PROBE (Python) exits 0
  if $PY -c "$2" 2>/dev/null; then
    shards+=("$3")
  elif [[ ",$REQUIRE," == *",$1,"* ]]; then
    echo "FAILED: $1 is required (REQUIRE=$REQUIRE), but $5: the shard on $4 cannot run"
    rc=1
  else
    echo "no shard on $4: $5"
  fi
}
gpu_shard torch 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' \
  "XPNET_BACKEND=torch XPNET_DEVICE=cuda:0|tests/framework tests/models tests/backends/test_ops.py" \
  "PyTorch's CUDA tensors" "PyTorch is missing or sees no CUDA device"
# JAX on the GPU, the default backend: the operations (the wing's XLA convolution against
# the reference), the Trainer and checkpoints (its own tests and the models' parity with
# NumPy run in the shards above, on JAX's default device)
gpu_shard jax 'import sys, jax; sys.exit(0 if jax.default_backend() == "gpu" else 1)' \
  "XPNET_BACKEND=jax XPNET_DEVICE=gpu|tests/backends/test_ops.py tests/framework/test_trainer.py tests/framework/test_checkpoint.py" \
  "JAX's GPU arrays" "JAX is missing or sees no GPU"
parts=$(mktemp -d)
pids=()

label() {  # a shard as the command line it runs
  case $1 in *"|"*) echo "${1%%|*} pytest ${1#*|}" ;; *) echo "pytest $1" ;; esac
}
skips() {  # pytest -rs's SKIPPED lines, counted by reason (the place dropped), most first
  grep -E '^SKIPPED \[[0-9]+\] ' "$1" \
    | sed -E 's/^SKIPPED \[([0-9]+)\] [^:]+:[0-9]+: /\1\t/' \
    | awk -F'\t' '{n[$2] += $1} END {for (r in n) printf "  skipped %d: %s\n", n[r], r}' \
    | sort -t' ' -k4,4nr -k2 | head -n 25
}
collect() {  # the shards' logs into LOG, and a few lines of each on stdout
  local i
  : >"$log"
  for i in "${!shards[@]}"; do
    { echo "== shard $i: $(label "${shards[$i]}")"; cat "$parts/$i.log"; echo; } >>"$log"
    echo "shard $i ($(label "${shards[$i]}")):"
    grep -E '^(FAILED|ERROR) ' "$parts/$i.log" | head -n 20
    skips "$parts/$i.log"
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
  shard=${shards[$i]} environment=""
  case $shard in *"|"*) environment=${shard%%|*} shard=${shard#*|} ;; esac
  # word splitting of the shard's own settings and arguments is meant: paths and options
  # shellcheck disable=SC2086
  env $environment $PY -m pytest $shard "$@" >"$parts/$i.log" 2>&1 &
  pids+=($!)
done
for pid in "${pids[@]}"; do
  wait "$pid" || rc=1
done
collect
exit $rc
