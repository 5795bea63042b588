#!/usr/bin/env python3
# Run: /usr/bin/python3 (numpy). Checks the pending patch's k_gemm_s64 / k_s64_reduce against x @ w^T.
# Host emulation of k_gemm_s64 + k_s64_reduce's index math (lane fragments, ring slots, splits, epilogue).
import numpy as np
S64_WARPS, S64_ROWS, S64_STAGES = 8, 128, 4

def mma(acc, af, b0, b1):
    # af[lane] = 4 words, each word = 2 values; b0/b1[lane] = word (2 values); acc[lane] = 4 floats
    A = np.zeros((16, 16)); B = np.zeros((16, 8))
    for lane in range(32):
        g, c = lane >> 2, lane & 3
        A[g, 2*c:2*c+2] = af[lane][0]; A[g+8, 2*c:2*c+2] = af[lane][1]
        A[g, 2*c+8:2*c+10] = af[lane][2]; A[g+8, 2*c+8:2*c+10] = af[lane][3]
        B[2*c:2*c+2, g] = b0[lane]; B[2*c+8:2*c+10, g] = b1[lane]
    C = A @ B
    for lane in range(32):
        g, c = lane >> 2, lane & 3
        acc[lane][0] += C[g, 2*c]; acc[lane][1] += C[g, 2*c+1]
        acc[lane][2] += C[g+8, 2*c]; acc[lane][3] += C[g+8, 2*c+1]

def words(u16x8):  # a 16-byte unit as 4 words of 2 values
    return [u16x8[2*j:2*j+2] for j in range(4)]

def gemm_s64(xb, w, n, m, k, n_sm, segs, bias, accumulate, outs):
    NT = (n + 7) // 8
    tiles = (m + S64_ROWS - 1) // S64_ROWS; n_chunks = k // 64
    most = max(1, n_chunks // 4); fit = 2 * n_sm // tiles
    S = 1 if fit < 1 else min(fit, most)
    part = np.zeros((S, n, m)) if S > 1 else None
    wflat = w.reshape(-1)
    def store(tok, row, v):
        seg = 0
        for i in range(1, len(segs) - 1):
            if row >= segs[i]: seg = i
        j = row - segs[seg]
        if bias[seg] is not None: v += bias[seg][j]
        outs[seg][tok, j] = (outs[seg][tok, j] if accumulate else 0) + v
    for bx in range(tiles):
        for split in range(S):
            c_lo = split * n_chunks // S; cnt = (split + 1) * n_chunks // S - c_lo
            xs = np.zeros((S64_STAGES, NT * 8, 72))
            def load_x(i):
                if i < cnt:
                    ch = c_lo + i
                    for u in range(NT * 64):
                        tok, q = u >> 3, u & 7
                        src = xb[min(tok, n - 1), ch * 64 + q * 8: ch * 64 + q * 8 + 8]
                        xs[i % S64_STAGES, tok, q * 8:q * 8 + 8] = src if tok < n else 0
            for i in range(S64_STAGES - 1): load_x(i)
            accs = [[[[0.0]*4 for _ in range(NT)] for _ in range(32)] for _ in range(S64_WARPS)]
            # emulate chunk by chunk (all warps), the ring as the kernel orders it
            def load_w(warp, i):
                row0 = bx * S64_ROWS + warp * 16; cc = (c_lo + i) * 8
                a = []
                for lane in range(32):
                    g, c = lane >> 2, lane & 3
                    r0 = min(row0 + g, m - 1); r1 = min(row0 + g + 8, m - 1)
                    u0 = r0 * (k // 8) + c * 2 + cc; u1 = r1 * (k // 8) + c * 2 + cc
                    unit = lambda u: wflat[u * 8:u * 8 + 8]
                    a.append([[unit(u0), unit(u0 + 1)], [unit(u1), unit(u1 + 1)]])
                return a
            for i in range(cnt):
                load_x(i + S64_STAGES - 1)
                xc = xs[i % S64_STAGES]
                for warp in range(S64_WARPS):
                    a = load_w(warp, i)
                    for h in range(2):
                        bvec = [[xc[nt * 8 + (lane >> 2), (lane & 3) * 16 + h * 8:(lane & 3) * 16 + h * 8 + 8] for nt in range(NT)] for lane in range(32)]
                        for i0 in (0, 2):
                            af = []
                            for lane in range(32):
                                r0w, r1w = words(a[lane][0][h]), words(a[lane][1][h])
                                af.append([r0w[i0], r1w[i0], r0w[i0 + 1], r1w[i0 + 1]])
                            for nt in range(NT):
                                b0 = [words(bvec[lane][nt])[i0] for lane in range(32)]
                                b1 = [words(bvec[lane][nt])[i0 + 1] for lane in range(32)]
                                accn = [accs[warp][lane][nt] for lane in range(32)]
                                mma(accn, af, b0, b1)
            for warp in range(S64_WARPS):
                row0 = bx * S64_ROWS + warp * 16
                for lane in range(32):
                    g, c = lane >> 2, lane & 3
                    for nt in range(NT):
                        for e in range(4):
                            row = row0 + g + 8 * (e >> 1); tok = nt * 8 + 2 * c + (e & 1)
                            if row >= m or tok >= n: continue
                            v = accs[warp][lane][nt][e]
                            if part is not None: part[split, tok, row] = v
                            else: store(tok, row, v)
    if part is not None:
        for idx in range(n * m):
            tok, row = idx // m, idx % m
            v = 0.0
            for s in range(S): v += part[s, tok, row]
            store(tok, row, v)
    return S

rng = np.random.default_rng(1)
for (n, k, m, segs_m, n_sm, acc) in [(17, 256, 300, [300], 132, False), (24, 64, 200, [200], 4, True),
                                    (40, 384, 260, [128, 64, 68], 2, False), (9 + 8, 192, 130, [130], 1, False),
                                    (64, 512, 129, [129], 8, True), (33, 1024, 130, [130], 132, False), (20, 4160, 140, [100, 40], 132, True)]:
    x = rng.standard_normal((n, k)); w = rng.standard_normal((m, k))
    segs = [0]
    for s in segs_m: segs.append(segs[-1] + s)
    bias = [rng.standard_normal(s) if i != 1 else None for i, s in enumerate(segs_m)]
    outs = [rng.standard_normal((n, s)) for s in segs_m]
    want = [o.copy() if acc else np.zeros_like(o) for o in outs]
    full = x @ w.T
    for i, s in enumerate(segs_m):
        want[i] += full[:, segs[i]:segs[i + 1]] + (bias[i] if bias[i] is not None else 0)
    S = gemm_s64(x, w, n, m, k, n_sm, segs, bias, acc, outs)
    err = max(np.abs(o - wv).max() for o, wv in zip(outs, want))
    print(f"n={n} k={k} m={m} segs={segs_m} splits={S} acc={acc}: max err {err:.2e}")
