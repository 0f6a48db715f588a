#!/usr/bin/env bash
# What the GPU machine's python3 lacks, unpacked into .gpu-pkgs/ (git-ignored) to travel
# with the tree: the test tools (hypothesis, array-api-strict and -compat, threadpoolctl)
# and, for the data-parallel tests, mpi4py and MPICH (its mpiexec and libmpi).
#
#   bash scripts/gpu_packages.sh [PYTHON_VERSION]      # default 3.12, the GPU image's
#
# gpu_check.sh puts .gpu-pkgs on PYTHONPATH and .gpu-pkgs/mpich on PATH and
# LD_LIBRARY_PATH when they are there. Run it here, where the package index is
# reachable; the GPU machine has no network.
set -eu
cd "$(dirname "$0")/.."
PYVER=${1:-3.12}
PIP=${PIP:-.venv/bin/pip}
WHEELS=$(mktemp -d)
trap 'rm -rf "$WHEELS"' EXIT

"$PIP" download --quiet --dest "$WHEELS" --only-binary=:all: --no-deps \
  --python-version "$PYVER" --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux_2_5_x86_64 --platform manylinux1_x86_64 \
  hypothesis sortedcontainers attrs array-api-compat array-api-strict threadpoolctl \
  mpi4py mpich

rm -rf .gpu-pkgs && mkdir -p .gpu-pkgs/mpich
for wheel in "$WHEELS"/*.whl; do
  unzip -q -o "$wheel" -d .gpu-pkgs  # unzip keeps the executables' mode bits
done
# MPICH's wheel keeps its programs and library as data files: give them a prefix of their own
data=$(echo .gpu-pkgs/mpich-*.data/data)
mv "$data/bin" "$data/lib" .gpu-pkgs/mpich/
rm -rf .gpu-pkgs/mpich-*.data .gpu-pkgs/mpich/lib/libmpi_abi.so* .gpu-pkgs/mpich/lib/pkgconfig
# mpi4py loads the build that matches the libmpi it finds: MPICH's, never Open MPI's
rm -f .gpu-pkgs/mpi4py/MPI.openmpi.*.so
du -sh .gpu-pkgs
# what the GPU run carries beside the tree: the device tool takes 64 MiB in all
total=$(du -cb .gpu-pkgs .gpu-data 2>/dev/null | tail -n 1 | awk '{print int($1 / 1048576)}')
echo "to carry: ${total} MiB with .gpu-data (the device tool takes 64 MiB in all, the tree's 2 too)"
[ "$total" -lt 61 ] || echo "warning: too much to carry; .gpu-data should hold only the IDX files" >&2
