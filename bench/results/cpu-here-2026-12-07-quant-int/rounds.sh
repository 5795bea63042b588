#!/bin/bash
# interleaved rounds until $1 (HH:MM UTC): bandwidth, cairn base/new decode 4 and 8 bit, llama.cpp Q4_0/Q8_0,
# prefill 512 base/new at 4 and 8 bit. BASE: main a27febf; NEW: this branch (binaries copied so rebuilds do not race).
NEW=/tmp/ci8/new/model_bench
BASE=/tmp/ci8base/build/bench/model_bench
LB=/tmp/peer/lc/build-cpu/bin/llama-bench
P=/tmp/cairn-peer
r=0
while [ "$(date +%H:%M)" \< "$1" ]; do
  r=$((r+1))
  echo "round $r $(date +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
  bw=$(/tmp/ci8/new/membw 2 | tail -1 | sed -n 's/.* \([0-9.]*\)GB\/s/\1/p'); echo "bw $bw"
  for b in 4 8; do
    for v in BASE NEW; do
      bin=${!v}
      echo "cairn $v q$b load $(cut -d' ' -f1 /proc/loadavg) $(CAIRN_LOG=error $bin $P/qwen3-0.6b-q$b --backend cpu --threads 2 --prefill 0 --decode-ctx 512 --gen 64 --bytes-per-s ${bw}e9 2>&1 | tail -1)"
    done
    echo "llama q${b}_0 load $(cut -d' ' -f1 /proc/loadavg) $($LB -m $P/qwen3-0.6b-q${b}_0.gguf -t 2 -p 0 -n 64 -r 3 -o csv 2>/dev/null | tail -1 | awk -F, '{print "avg_ts=" $(NF-1) " sd=" $NF}')"
  done
  for b in 4 8; do
    for v in BASE NEW; do
      bin=${!v}
      echo "prefill $v q$b load $(cut -d' ' -f1 /proc/loadavg) $(CAIRN_LOG=error $bin $P/qwen3-0.6b-q$b --backend cpu --threads 2 --prefill 512 --decode-ctx 16 --gen 1 2>&1 | grep '^prefill')"
    done
  done
done
echo "end $(date +%T)"
