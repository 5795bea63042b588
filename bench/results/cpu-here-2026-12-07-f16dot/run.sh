# Usage: bash run.sh > OUT.txt. Qwen3-1.7B f16: cairn cpu (f16 hi/lo dot products) vs cpu-precise (the f32 tiles, which plain cpu
# ran for f16 before) vs llama.cpp f16, interleaved; each rep under the bench lock.
cd /work/wt/cpuf16
LB=/tmp/peer/lc/build-cpu/bin/llama-bench
M=/tmp/cairn-peer/qwen3-1.7b-f16
G=/tmp/cairn-peer/qwen3-1.7b-f16.gguf
for rep in 1 2 3 4; do
  flock /tmp/cairn-bench.lock bash -c "
  echo \"== rep $rep \$(date +%T) load \$(cut -d' ' -f1-3 /proc/loadavg)\"
  for b in cpu cpu-precise; do
    CAIRN_LOG=error build/bench/model_bench $M --backend \$b --threads 2 --prefill 512 --decode-ctx 512 --gen 64 2>&1 | grep -E '^(prefill|decode)' | sed \"s/^/cairn-\$b /\"
  done
  $LB -m $G -t 2 -p 512 -n 0 -r 2 -o csv 2>/dev/null | tail -1 | awk -F, '{print \"llama prefill\", \$40}'
  $LB -m $G -t 2 -p 0 -n 64 -d 512 -r 1 -o csv 2>/dev/null | tail -1 | awk -F, '{print \"llama decode\", \$40}'
  echo \"   end \$(date +%T) load \$(cut -d' ' -f1-3 /proc/loadavg)\""
  sleep 5
done
