#!/usr/bin/env bash
# Where a batch-1 decode step's time goes, per kernel (Nsight Compute on the GPU machine):
#   BUILD=build-dev bash bench/cuda_profile.sh CONFIG.json [OUT_DIR] [CTX]
# Runs model_bench on synthetic weights for a few decode steps under ncu (kernels serialized, so
# PDL overlap is lost: the busy total is an upper bound of a real step's GPU time) and prints GPU
# time and DRAM read rate per kernel name for one decode step (tools/ncu_step_profile.py).
set -euo pipefail
CFG=${1:?usage: cuda_profile.sh CONFIG.json [OUT_DIR] [CTX]}
OUT=${2:-/tmp/cairn-prof}
CTX=${3:-512}
BUILD=${BUILD:-build}
mkdir -p "$OUT"
name=$(basename "$CFG" .json)-$CTX
ncu --clock-control none --metrics gpu__time_duration.sum,dram__bytes_read.sum --csv \
    "$BUILD/bench/model_bench" --synthetic "$CFG" --backend cuda --decode-ctx "$CTX" --gen 4 >"$OUT/$name.csv" 2>"$OUT/$name.err" ||
    { tail -20 "$OUT/$name.err"; exit 1; }
python3 tools/ncu_step_profile.py "$OUT/$name.csv" k_embed | tee "$OUT/$name.txt"
