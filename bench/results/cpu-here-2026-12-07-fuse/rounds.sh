#!/bin/bash
# rounds.sh N: N interleaved rounds: membw 2, cairn base/new decode at 512 (4 and 8 bit, roofline from the round's
# bandwidth), llama.cpp Q4_0/Q8_0 (tg64 at depth 512), prefill 512 base/new. Every timed run through the bench lock.
# BASE: main bb7827c; NEW: branch cpufuse (binaries copied to /tmp/cpufuse/{base,new} so rebuilds do not race).
D=/tmp/cpufuse
LB=/tmp/peer/lc/build-cpu/bin/llama-bench
P=/tmp/cairn-peer
L=/tmp/cairn-bench.lock
for r in $(seq $1); do
  echo "round $r $(date +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
  bw=$(flock $L $D/base/membw 2 | tail -1 | sed -n 's/.* \([0-9.]*\)GB\/s/\1/p'); echo "bw $bw"
  for b in 4 8; do
    for v in base new; do
      echo "cairn ${v^^} q$b load $(cut -d' ' -f1 /proc/loadavg) $(flock $L bash -c "CAIRN_LOG=error $D/$v/model_bench $P/qwen3-0.6b-q$b --backend cpu --threads 2 --prefill 0 --decode-ctx 512 --gen 64 --bytes-per-s ${bw}e9 2>&1 | tail -1")"
    done
    echo "llama q${b}_0 load $(cut -d' ' -f1 /proc/loadavg) $(flock $L $LB -m $P/qwen3-0.6b-q${b}_0.gguf -t 2 -p 0 -n 64 -d 512 -r 3 -o csv 2>/dev/null | tail -1 | awk -F, '{print "avg_ts=" $(NF-1) " sd=" $NF}')"
  done
  if [ -z "$NOPREFILL" ]; then
    for b in 4 8; do
      for v in base new; do
        echo "prefill ${v^^} q$b load $(cut -d' ' -f1 /proc/loadavg) $(flock $L bash -c "CAIRN_LOG=error $D/$v/model_bench $P/qwen3-0.6b-q$b --backend cpu --threads 2 --prefill 512 --decode-ctx 16 --gen 1 2>&1 | grep '^prefill'")"
      done
    done
  fi
done
echo "end $(date +%T)"
