#!/bin/bash
# rounds.sh N: N interleaved rounds: membw 2, cairn base/new decode at 512 (4 and 8 bit, roofline from the round's
# bandwidth), llama.cpp Q4_0/Q8_0 (tg64 at depth 512), prefill 512 base/new. Every timed run through the bench lock.
# BASE: main 895ed10; NEW: branch cpuattn (binaries copied to /tmp/cpuattn so rebuilds do not race).
# Also per round: attn_bench decode650_0.6b and _inorder (attention alone, 28 layers of f32 cache) base / new.
NEW=/tmp/cpuattn/new/model_bench
BASE=/tmp/cpuattn/base/model_bench
LB=/tmp/peer/lc/build-cpu/bin/llama-bench
P=/tmp/cairn-peer
L=/tmp/cairn-bench.lock
for r in $(seq $1); do
  echo "round $r $(date +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
  bw=$(flock $L /tmp/cpuattn/base/membw 2 | tail -1 | sed -n 's/.* \([0-9.]*\)GB\/s/\1/p'); echo "bw $bw"
  for v in base new; do
    echo "attn $v $(flock $L /tmp/cpuattn/$v/attn_bench --backend cpu --kv-dtype f32 --only decode650_0.6b --reps 20 | grep -o 'ms=.*')"
    echo "attnio $v $(flock $L /tmp/cpuattn/$v/attn_bench --backend cpu --kv-dtype f32 --only decode650_0.6b_inorder --reps 20 | grep -o 'ms=.*')"
  done
  for b in 4 8; do
    for v in BASE NEW; do
      bin=${!v}
      echo "cairn $v q$b load $(cut -d' ' -f1 /proc/loadavg) $(flock $L bash -c "CAIRN_LOG=error $bin $P/qwen3-0.6b-q$b --backend cpu --threads 2 --prefill 0 --decode-ctx 512 --gen 64 --bytes-per-s ${bw}e9 2>&1 | tail -1")"
    done
    echo "llama q${b}_0 load $(cut -d' ' -f1 /proc/loadavg) $(flock $L $LB -m $P/qwen3-0.6b-q${b}_0.gguf -t 2 -p 0 -n 64 -d 512 -r 3 -o csv 2>/dev/null | tail -1 | awk -F, '{print "avg_ts=" $(NF-1) " sd=" $NF}')"
  done
  for b in 4 8; do
    for v in BASE NEW; do
      bin=${!v}
      echo "prefill $v q$b load $(cut -d' ' -f1 /proc/loadavg) $(flock $L bash -c "CAIRN_LOG=error $bin $P/qwen3-0.6b-q$b --backend cpu --threads 2 --prefill 512 --decode-ctx 16 --gen 1 2>&1 | grep '^prefill'")"
    done
  done
done
echo "end $(date +%T)"
