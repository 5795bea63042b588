#!/usr/bin/env python3
# Control-flow emulation of qmma_walk: which (tile, groups) each stage loads into which buffer, what
# each multiply consumes, when a tile's sums are emitted; checks every warp covers exactly its groups
# of every tile of the block, in order, and that emits see complete sums.
QMMA_U = 4
def walk(n_tiles, grid, n_warps, n_groups, D):
    seen = {}
    for bid in range(grid):
        S = ((n_groups + n_warps - 1) // n_warps + QMMA_U - 1) // QMMA_U
        tiles = (n_tiles - 1 - bid) // grid + 1
        if bid >= n_tiles: tiles = 0   # (the kernel is never launched with more blocks than tiles)
        total = tiles * S
        barriers = []
        for warp in range(n_warps):
            G_lo, G_hi = warp * n_groups // n_warps, (warp + 1) * n_groups // n_warps
            st = [None] * D
            def load(s, slot):
                i = s // S; G = G_lo + (s - i * S) * QMMA_U
                st[slot] = (bid + i * grid, G) if G < G_hi else st[slot]
            for d in range(D - 1):
                if d < total: load(d, d)
            acc = []
            nb = 0
            for s0 in range(0, total, D):
                for d in range(D):
                    s = s0 + d
                    if s + D - 1 < total: load(s + D - 1, (d + D - 1) % D)
                    if s >= total: continue
                    i = s // S; j = s - i * S; G = G_lo + j * QMMA_U
                    if G < G_hi:
                        assert st[d] == (bid + i * grid, G), (bid, warp, s, st[d], (bid + i * grid, G))
                        acc.append((bid + i * grid, G))
                    if j != S - 1: continue
                    nb += 1
                    for (t, g) in acc:
                        assert t == bid + i * grid
                        for u in range(QMMA_U):
                            if g + u < G_hi: seen[(t, g + u)] = seen.get((t, g + u), 0) + 1
                    acc = []
            barriers.append(nb)
        assert len(set(barriers)) <= 1, barriers   # every warp reaches each tile's barrier
    for t in range(n_tiles):
        for g in range(n_groups):
            assert seen.get((t, g), 0) == 1, (t, g, seen.get((t, g), 0))
    return True

import itertools
n = 0
for n_tiles, grid, n_warps, n_groups, D in itertools.product([1, 3, 16, 37, 264, 1075], [1, 2, 5, 264], [4, 8], [1, 3, 16, 32, 33, 64, 192, 48], [2, 3, 4]):
    if grid > n_tiles: continue
    walk(n_tiles, grid, n_warps, n_groups, D); n += 1
print(n, "configurations: every (tile, group) multiplied once, stages matched, barriers uniform")
