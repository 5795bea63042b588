#!/bin/bash
# prefill_pairs.sh N: N back-to-back base/new pairs of prefill 512 (4 and 8 bit), each run under the bench lock
P=/tmp/cairn-peer; L=/tmp/cairn-bench.lock
for r in $(seq $1); do
  for b in 4 8; do for v in base new; do
    echo "prefill $v q$b round $r load $(cut -d' ' -f1 /proc/loadavg) $(flock $L bash -c "CAIRN_LOG=error /tmp/cpuattn/$v/model_bench $P/qwen3-0.6b-q$b --backend cpu --threads 2 --prefill 512 --decode-ctx 16 --gen 1 2>&1 | grep '^prefill' | grep -o 'tok_s=[0-9.]*'")"
  done; done
done
