#!/usr/bin/env python3
"""Summarizes an `ncu --csv --metrics gpu__time_duration.sum,dram__bytes_read.sum` log of decode
steps: GPU time and DRAM read rate per kernel name, and the GPU-busy time of one step (kernels
between the last two launches of the step's first kernel), to set against the measured wall time per step.
    python3 tools/ncu_step_profile.py ncu.csv [FIRST_KERNEL_SUBSTRING]"""
import csv, sys, collections

rows = [r for r in csv.DictReader(l for l in open(sys.argv[1]) if l.startswith('"'))]
first = sys.argv[2] if len(sys.argv) > 2 else 'k_embed'
kern = collections.OrderedDict()
order = []
for r in rows:
    kid = r['ID']
    name = r['Kernel Name'].split('(')[0][:60]
    k = kern.setdefault(kid, {'name': name})
    v = float(r['Metric Value'].replace(',', ''))
    unit = r['Metric Unit']
    if r['Metric Name'] == 'gpu__time_duration.sum':
        k['ns'] = v * {'nsecond': 1, 'usecond': 1e3, 'msecond': 1e6, 'second': 1e9}.get(unit, 1)
    elif r['Metric Name'] == 'dram__bytes_read.sum':
        k['bytes'] = v * {'byte': 1, 'Kbyte': 1e3, 'Mbyte': 1e6, 'Gbyte': 1e9}.get(unit, 1)
ks = list(kern.values())
starts = [i for i, k in enumerate(ks) if first in k['name']]
if len(starts) >= 3:   # the step before the last start: a decode step, not the prompt's
    ks = ks[starts[-2]:starts[-1]]
    print(f'one step: {len(ks)} kernels')
elif len(starts) >= 2:
    ks = ks[starts[0]:starts[1]]
    print(f'one step: {len(ks)} kernels')
tot = collections.defaultdict(lambda: [0, 0.0, 0.0])
for k in ks:
    t = tot[k['name']]
    t[0] += 1; t[1] += k.get('ns', 0); t[2] += k.get('bytes', 0)
busy = sum(t[1] for t in tot.values())
print(f'GPU busy {busy / 1e3:.1f} us')
for name, (n, ns, b) in sorted(tot.items(), key=lambda kv: -kv[1][1]):
    print(f'{name:60s} n={n:4d} {ns / 1e3:9.1f} us {100 * ns / busy:5.1f}%  {b / ns if ns else 0:7.1f} GB/s')
