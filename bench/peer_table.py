#!/usr/bin/env python3
"""peer_table.py LOG...: the markdown table of bench/peer_llamacpp.sh cpu from its per-pair logs.

Each log holds repetitions of one pair, each opened by a line
    == LABEL rep N HH:MM:SS load: 1m, 5m, 15m
then the measured read bandwidth (membw), cairn's model_bench prefill/decode lines, llama-bench's
JSON lines (pp512 at depth 0 with three samples, tg128 at depth 512) and the GGUF's decode bytes per
token. Per repetition: cairn prefill is model_bench's best of 3, llama.cpp prefill the best of its 3
samples; decode is one run of 128 tokens after a 512-token prompt in both. The table gives the median
and the range over repetitions, the ratio of medians, and each decode rate as a fraction of the
bandwidth roofline (bytes per token / bandwidth measured before that pair)."""
import json
import re
import statistics
import sys


def parse(path):
    reps = []
    for line in open(path):
        if line.startswith("== "):
            m = re.match(r"== (\S+) rep (\d+) (\S+) load: ([\d.]+)", line)
            reps.append({"label": m.group(1), "time": m.group(3), "load": float(m.group(4))})
            continue
        if not reps:
            continue
        r = reps[-1]
        if line.startswith("membw"):
            r["bw"] = float(re.search(r"read_bandwidth=([\d.]+)GB/s", line).group(1)) * 1e9
        elif line.startswith("cairn prefill"):
            r["c_pp"] = float(re.search(r"tok_s=([\d.]+)", line).group(1))
        elif line.startswith("cairn decode"):
            r["c_tg"] = float(re.search(r"tok_s=([\d.]+)", line).group(1))
            r["c_bytes"] = float(re.search(r"bytes_per_tok=([\d.]+)", line).group(1))
        elif line.startswith("llama.cpp {"):
            j = json.loads(line[len("llama.cpp "):])
            if j["n_gen"] == 0:
                r["l_pp"] = max(j["samples_ts"])
            else:
                r["l_tg"] = j["avg_ts"]
        elif line.startswith("llama.cpp decode_bytes_per_tok="):
            r["l_bytes"] = float(line.split("=")[1])
    return [r for r in reps if all(k in r for k in ("bw", "c_pp", "c_tg", "l_pp", "l_tg", "l_bytes"))]


def stat(xs, fmt="{:.1f}"):
    return f"{fmt.format(statistics.median(xs))} ({fmt.format(min(xs))}–{fmt.format(max(xs))})"


def main():
    print("| pair | prefill 512, cairn | prefill 512, llama.cpp | ratio | decode, cairn | decode, llama.cpp | ratio "
          "| decode % of roofline, cairn / llama.cpp | decode MB/token, cairn / llama.cpp | read GB/s | load (1 min) per rep |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for path in sys.argv[1:]:
        reps = parse(path)
        if not reps:
            print(f"| {path}: no complete repetition | | | | | | | | | | |")
            continue
        med = lambda k: statistics.median(r[k] for r in reps)
        c_frac = [r["c_tg"] * r["c_bytes"] / r["bw"] * 100 for r in reps]
        l_frac = [r["l_tg"] * r["l_bytes"] / r["bw"] * 100 for r in reps]
        loads = ", ".join(f"{r['load']:.2f}" for r in reps)
        print(f"| {reps[0]['label']} (n={len(reps)}) | {stat([r['c_pp'] for r in reps])} | {stat([r['l_pp'] for r in reps])} "
              f"| {med('c_pp') / med('l_pp'):.2f}× | {stat([r['c_tg'] for r in reps], '{:.2f}')} "
              f"| {stat([r['l_tg'] for r in reps], '{:.2f}')} | {med('c_tg') / med('l_tg'):.2f}× "
              f"| {statistics.median(c_frac):.0f}% / {statistics.median(l_frac):.0f}% "
              f"| {med('c_bytes') / 1e6:.0f} / {med('l_bytes') / 1e6:.0f} | {stat([r['bw'] / 1e9 for r in reps])} | {loads} |")


if __name__ == "__main__":
    main()
