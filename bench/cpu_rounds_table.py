#!/usr/bin/env python3
"""Summarises rounds.sh's log: per measurement the median, best and range (tok/s), and per round the
NEW / BASE ratio of each pair (median of the ratios: each pair ran back to back, so it sees the
same load), decode's fraction of the roofline measured in its round.
usage: bench/cpu_rounds_table.py ROUNDS_LOG [FIRST_ROUND]
(the logs of the rounds.sh scripts in bench/results/cpu-here-2026-12-07-{decode,quant-int,attn,fuse})"""
import re, statistics, sys
from collections import defaultdict
first = int(sys.argv[2]) if len(sys.argv) > 2 else 1
val = defaultdict(dict)   # (kind, what, ver) -> round -> tok/s
frac = defaultdict(dict)
bw = {}
rnd = 0
for line in open(sys.argv[1]):
    m = re.match(r"round (\d+)", line)
    if m: rnd = int(m.group(1)); continue
    if rnd < first: continue
    m = re.match(r"bw ([0-9.]+)", line)
    if m: bw[rnd] = float(m.group(1)); continue
    m = re.match(r"cairn (\w+) q(\d) .*? tok_s=([0-9.]+).*frac_roofline=([0-9.]+)", line)
    if m: val[("decode", m.group(2), m.group(1))][rnd] = float(m.group(3)); frac[(m.group(2), m.group(1))][rnd] = float(m.group(4)); continue
    m = re.match(r"prefill (\w+) q(\d) .*? tok_s=([0-9.]+)", line)
    if m: val[("prefill", m.group(2), m.group(1))][rnd] = float(m.group(3)); continue
    m = re.match(r"(attn|attnio) (\w+) ms=([0-9.]+)", line)
    if m: val[(m.group(1), "-", m.group(2))][rnd] = float(m.group(3)); continue
    m = re.match(r'llama q(\d)_0 .*avg_ts="([0-9.]+)"', line)
    if m: val[("decode", m.group(1), "llama")][rnd] = float(m.group(2))
def s(d, f=".1f", best=max):
    v = sorted(d.values())
    return f"{statistics.median(v):{f}} (best {best(v):{f}}; {v[0]:{f}}-{v[-1]:{f}}, {len(v)} rounds)" if v else "-"
for kind, what in (("attn", "blocks shuffled"), ("attnio", "blocks in order")):
    a_b, a_n = val[(kind, "-", "base")], val[(kind, "-", "new")]
    if a_n:
        r = [a_b[k] / a_n[k] for k in a_n if k in a_b]
        print(f"attention ms/layer (decode650, f32 cache, {what}): base {s(a_b, '.3f', min)} | new {s(a_n, '.3f', min)} | base/new median {statistics.median(r):.2f}x")
print(f"bandwidth GB/s: median {statistics.median(bw.values()):.1f}, best {max(bw.values()):.1f}")
for kind in ("decode", "prefill"):
    for b in ("4", "8"):
        base, new = val[(kind, b, "BASE")], val[(kind, b, "NEW")]
        ratios = [new[r] / base[r] for r in new if r in base]
        line = f"{kind} q{b}: base {s(base)} | new {s(new)} | new/base median {statistics.median(ratios):.2f}x"
        if kind == "decode":
            line += f" | llama {s(val[(kind, b, 'llama')])}"
            fr = frac[(b, "NEW")]
            line += f" | new roofline frac median {statistics.median(fr.values()):.2f} best {max(fr.values()):.2f}"
            fb = frac[(b, "BASE")]
            line += f" (base {statistics.median(fb.values()):.2f} / {max(fb.values()):.2f})"
        print(line)
