#!/bin/bash
# ab.sh ROUNDS BITS BIN...: interleaved decode-512 runs (4 or 8 bit), one line each, with load
R=$1; B=$2; shift 2
for r in $(seq $R); do
  for bin in "$@"; do
    out=$(flock /tmp/cairn-bench.lock bash -c "CAIRN_LOG=error $bin /tmp/cairn-peer/qwen3-0.6b-q$B --backend cpu --threads 2 --prefill 0 --decode-ctx 512 --gen 64 2>&1 | grep '^decode' | sed 's/.*tok_s=\([0-9.]*\).*/\1/'")
    echo "r$r q$B $(basename $bin) $out load $(cut -d' ' -f1 /proc/loadavg)"
  done
done
