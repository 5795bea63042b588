cd /work/main
LB=/tmp/peer/lc/build-cpu/bin/llama-bench
for rep in 1 2 3 4; do
  echo "== rep $rep $(date +%T) $(cut -d' ' -f1-3 /proc/loadavg)"
  CAIRN_LOG=error build/bench/model_bench /tmp/cairn-peer/qwen3-1.7b --backend cpu --threads 2 --prefill 512 --decode-ctx 512 --gen 64 2>&1 | grep -E "^(prefill|decode)" | sed 's/^/cairn /'
  $LB -m /tmp/cairn-peer/qwen3-1.7b-bf16.gguf -t 2 -p 512 -n 0 -r 2 -o csv 2>/dev/null | tail -1 | awk -F, "{print \"llama prefill\", \$40}"
  $LB -m /tmp/cairn-peer/qwen3-1.7b-bf16.gguf -t 2 -p 0 -n 64 -d 512 -r 1 -o csv 2>/dev/null | tail -1 | awk -F, "{print \"llama decode\", \$40}"
done
