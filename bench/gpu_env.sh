# gpu_env.sh: the common start of the GPU benchmark scripts (cuda_bench.sh, cuda_quant_bench.sh),
# sourced with the output folder:   source "$(dirname "$0")/gpu_env.sh" "${1:-/tmp/cairn-bench}"
# Makes OUT, measures the GPU's read bandwidth and bf16 GEMM peak once (bench/gpu_peak, also
# written to $OUT/peak.txt) and sets bw (bytes/s), gemm (TFLOP/s) and MB: the model_bench command
# whose decode and prefill lines stand beside those ceilings (its rooflines: model/model_cost.h).
OUT=$1
BUILD=${BUILD:-build}
mkdir -p "$OUT"
export CAIRN_LOG=${CAIRN_LOG:-warn}
peak=$("$BUILD/bench/gpu_peak")
echo "$peak" | tee "$OUT/peak.txt"
bw=$(echo "$peak" | sed -n 's/.*read_bytes_per_s=\([^ ]*\).*/\1/p')
gemm=$(echo "$peak" | sed -n 's/.*gemm_bf16_tflops=\([^ ]*\).*/\1/p')
MB="$BUILD/bench/model_bench --bytes-per-s $bw --gemm-tflops $gemm"
