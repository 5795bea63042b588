#!/bin/bash
# cpu_decode_profile.sh MODEL_BENCH MODEL_DIR: per-op cpu decode time a token at context 520-784, 2 threads
# (CAIRN_PROFILE=1 runs of gen 264 and gen 8 after a 512-token context; their difference over 256 tokens),
# each run under the bench lock. Used by the CPU decode sections of docs/bench.md (issue 16).
set -euo pipefail
B=$1; M=$2; T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
for g in 8 264; do
  flock /tmp/cairn-bench.lock bash -c "CAIRN_PROFILE=1 CAIRN_LOG=info $B $M --backend cpu --threads 2 --prefill 0 --decode-ctx 512 --gen $g 2>&1" > $T/prof_raw_$g.txt
done
echo "load $(cut -d' ' -f1-3 /proc/loadavg) $(grep '^decode' $T/prof_raw_264.txt | cut -d' ' -f1-5)"
T=$T python3 - <<'PY'
import os, re
T = os.environ["T"]
def parse(f):
    d = {}
    for l in open(f):
        m = re.search(r'profile (.+?)\s+([0-9.]+) s', l)
        if m: d[m.group(1).strip()] = float(m.group(2))
    return d
a = parse(f'{T}/prof_raw_8.txt'); b = parse(f'{T}/prof_raw_264.txt')
tot = 0
for k in b:
    v = (b[k] - a.get(k, 0)) / 256 * 1e3; tot += v
    print(f"  {k:20s} {v:6.3f} ms")
print(f"  {'total':20s} {tot:6.3f} ms")
PY
