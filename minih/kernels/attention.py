"""Numba twins of minih.ops.attention: projections, smeared keys, causal attention, output.

Where the time goes (REF, one training step; docs/04_numba.md): the projections,
the output projection and the unembedding are plain big matrix products, and for
those BLAS (numpy's `@`, OpenBLAS) *is* the right kernel: a hand-written loop
would only be slower. So project_*, output_* and head_results reshape and call
BLAS (through minih/kernels/blas.py, which splits a big product over the threads).
The causal attention itself is not a plain matmul (a triangle per (b, h),
a softmax in the middle), so it gets its own kernels, each over a range of (batch,
head) pairs [bh0, bh1) that threads.run_chunks hands out to the threads: each (b, h)
pair owns its slice of every output, so no two threads write the same element. They
work on tiles of 8 query rows x 16 keys held in vector registers (kernels/simd.py), and
fuse the reference's four attention passes: the training forward keeps no [T, T]
pattern, and the backward recomputes it from q, k and each row's log-sum-exp (section 3
below says how and why). Where a caller reads or edits the scores or the pattern, the
model runs the passes instead: attention_scores and attention_pattern have twins here
(the same tiles; a row softmax), attention_z and the plain attention_backward are the
reference's own (a batched matmul is already BLAS).

Shape legend: B = batch, T = positions (query i, key j), D = d_model, H = n_heads, E = d_head
"""
import numpy as np

from numba.extending import register_jitable

from ._jit import as_floats, expect_shape, kernel, softmax_row
from .blas import matmul, matmul_tn
from .simd import (LANES, add16, causal16, exp16, fma16, hmax16, hsum16, load16, max16, mul16,
                   splat16, store16, sub16)
from .threads import run_chunks


def _check_heads(name, W, H=None):
    if W.ndim != 3 or (H is not None and W.shape[0] != H):
        raise ValueError(f"{name} must be [H, ., .]{'' if H is None else f' with H={H}'}, got {W.shape}")


# --- 1. projections: BLAS ----------------------------------------------------------

def project_forward(x, W):
    """Numba twin of minih.ops.attention.project_forward (BLAS: a plain matmul).

    out[b,t,h,e] = sum_d x[b,t,d] W[h,d,e]:  x [B,T,D] @ W as [D, H*E] -> [B,T,H,E]
    """
    x, W = as_floats("x W", x, W)
    _check_heads("W", W)
    B, T, D = x.shape
    H, _, E = W.shape
    expect_shape("W", W, (H, D, E))
    W2 = W.transpose(1, 0, 2).reshape(D, H * E)                  # [D, H*E]
    return matmul(x.reshape(B * T, D), W2).reshape(B, T, H, E)


def project_backward(d_out, x, W):
    """Numba twin of minih.ops.attention.project_backward (BLAS): -> d_x [B,T,D], d_W [H,D,E]"""
    d_out, x, W = as_floats("d_out x W", d_out, x, W)
    B, T, D = x.shape
    H, _, E = W.shape
    expect_shape("d_out", d_out, (B, T, H, E))
    d_out2 = d_out.reshape(B * T, H * E)                         # [B*T, H*E]
    W2 = W.transpose(1, 0, 2).reshape(D, H * E)                  # [D, H*E]
    d_x = matmul(d_out2, W2.T).reshape(B, T, D)                  # forward: out = x @ W2
    d_W2 = matmul_tn(x.reshape(B * T, D), d_out2)                # [D, H*E] = x^T d_out2
    return d_x, np.ascontiguousarray(d_W2.reshape(D, H, E).transpose(1, 0, 2))


# --- 2. smeared keys ------------------------------------------------------------------

@kernel()
def _smear_forward(k, s, k_s, b0, b1):
    B, T, H, E = k.shape
    for b in range(b0, b1):                                      # each b owns k_s[b]
        for h in range(H):
            for e in range(E):
                k_s[b, 0, h, e] = k[b, 0, h, e]                  # k'[0] = k[0]
        for t in range(1, T):
            for h in range(H):
                for e in range(E):                               # k'[t] = s k[t] + (1-s) k[t-1]
                    k_s[b, t, h, e] = s[h] * k[b, t, h, e] + (1 - s[h]) * k[b, t - 1, h, e]


def smear_forward(k, smear):
    """Numba twin of minih.ops.attention.smear_forward.

    k'[j] = s*k[j] + (1-s)*k[j-1] for j >= 1, k'[0] = k[0], s = sigmoid(smear[h]).
    k [B,T,H,E], smear [H] -> k' [B,T,H,E]
    """
    k, smear = as_floats("k smear", k, smear)
    expect_shape("smear", smear, (k.shape[2],))
    s = 1.0 / (1.0 + np.exp(-smear))                             # [H]
    k_s = np.empty_like(k)
    run_chunks(k.shape[0], lambda b0, b1: _smear_forward(k, s, k_s, b0, b1))
    return k_s


@kernel()
def _smear_backward(d_ks, k, s, d_k, d_s_part, b0, b1):
    B, T, H, E = k.shape
    for b in range(b0, b1):                      # b owns d_k[b] and its partial row d_s_part[b]
        for t in range(T):
            for h in range(H):
                w_here = s[h] if t > 0 else 1.0                  # weight of k[t] in k'[t]
                for e in range(E):
                    g = w_here * d_ks[b, t, h, e]
                    if t + 1 < T:                                # k[t] in k'[t+1], weight 1-s
                        g += (1 - s[h]) * d_ks[b, t + 1, h, e]
                    d_k[b, t, h, e] = g
                    if t > 0:                                    # d k'[t] / d s = k[t] - k[t-1]
                        d_s_part[b, h] += d_ks[b, t, h, e] * (k[b, t, h, e] - k[b, t - 1, h, e])


def smear_backward(d_ks, k, smear):
    """Numba twin of minih.ops.attention.smear_backward: -> d_k [B,T,H,E], d_smear [H].

    d_smear sums over the batch; each b sums into its own partial row (no race).
    """
    d_ks, k, smear = as_floats("d_ks k smear", d_ks, k, smear)
    expect_shape("d_ks", d_ks, k.shape)
    expect_shape("smear", smear, (k.shape[2],))
    s = 1.0 / (1.0 + np.exp(-smear))                             # [H]
    d_k = np.empty_like(k)
    d_s_part = np.zeros((k.shape[0], k.shape[2]), dtype=k.dtype)  # [B, H]
    run_chunks(k.shape[0], lambda b0, b1: _smear_backward(d_ks, k, s, d_k, d_s_part, b0, b1))
    return d_k, d_s_part.sum(axis=0) * s * (1 - s)               # d s / d smear = s (1 - s)


# --- 3. causal softmax attention -------------------------------------------------------
#
# One (b, h) pair at a time, in tiles of ROWS = 8 query rows x 16 keys held in vector
# registers (simd.py), each pair owning its slice of every output. The reference makes the
# [B,H,T,T] scores and pattern and keeps the pattern for the backward; these two kernels
# fuse its four passes instead (FlashAttention's trick, Dao et al. 2022):
#     _attention_forward   z and lse[b,h,i] = log sum_{j <= i} exp(scores[b,h,i,j]), the
#                          log of each softmax row's sum: no [T, T] array in memory
#     _attention_backward  d_q, d_k, d_v, recomputing the pattern as exp(scores - lse)
# For a REF batch the pattern is 67 MB per layer; writing it to memory and reading it
# back cost more than computing it again (docs/04_numba.md has the measurements). The
# model uses them for training only, where nothing reads or edits the pattern.
# Per pair, each copies its head's rows into scratch first, padded with zeros to whole
# tiles: Tq = T rounded up to ROWS query rows, Tk = T rounded up to 16 keys, Ep = E
# rounded up to 16 dimensions (zero dimensions add nothing to a dot product; padded keys
# lie in every row's future, so the causal mask removes them; padded query rows are never
# copied out, and in the backward their d_z rows are zero, so d_s = p (0 - 0) = 0 and they
# add nothing to d_k or d_v). Then every tile is whole: no leftover rows, keys or
# dimensions anywhere below. The copies are small (a [T, E] head is 16 KB in REF) and
# put each head's rows next to each other.
#
# A tile of query rows i0 <= i < i0 + 8 sees keys j < n = i0 + 8 rounded up to 16, the
# end of the 16-key block holding its last row's diagonal; every row's diagonal lies in
# that last block, so only it needs the causal mask (simd.causal16). The masked half of
# each [T, T] square is never computed.

ROWS = 8           # query rows per tile: 8 accumulators of 16 lanes (docs/04_numba.md)


@register_jitable       # compiled into its compiled callers, plain Python in their .py_func
def _dots_8x16(a, i0, xT, j, zero):
    """The 8 x 16 block a[i0:i0+8] @ xT[:, j:j+16], as eight vectors (row r's sixteen keys
    in c_r): c_r = sum_e a[i0 + r, e] xT[e, j:j+16].

    The eight vectors stay in registers while e runs: each load of xT serves eight rows,
    each number of a sixteen keys. The callers below store the block, each its own way.
    """
    c0 = c1 = c2 = c3 = c4 = c5 = c6 = c7 = splat16(zero)
    for e in range(a.shape[1]):
        x = load16(xT[e], j)                                     # keys j..j+15 of dimension e
        c0 = fma16(splat16(a[i0, e]), x, c0)
        c1 = fma16(splat16(a[i0 + 1, e]), x, c1)
        c2 = fma16(splat16(a[i0 + 2, e]), x, c2)
        c3 = fma16(splat16(a[i0 + 3, e]), x, c3)
        c4 = fma16(splat16(a[i0 + 4, e]), x, c4)
        c5 = fma16(splat16(a[i0 + 5, e]), x, c5)
        c6 = fma16(splat16(a[i0 + 6, e]), x, c6)
        c7 = fma16(splat16(a[i0 + 7, e]), x, c7)
    return c0, c1, c2, c3, c4, c5, c6, c7


@register_jitable
def _causal_8x16(c, j, i0, ninf):
    """The block c of _dots_8x16 with key j + l > query i0 + r set to ninf (-inf)."""
    c0, c1, c2, c3, c4, c5, c6, c7 = c
    return (causal16(c0, j, i0, ninf), causal16(c1, j, i0 + 1, ninf),
            causal16(c2, j, i0 + 2, ninf), causal16(c3, j, i0 + 3, ninf),
            causal16(c4, j, i0 + 4, ninf), causal16(c5, j, i0 + 5, ninf),
            causal16(c6, j, i0 + 6, ninf), causal16(c7, j, i0 + 7, ninf))


@kernel()
def _tile_scores(s, a, i0, xT, n, ninf, zero, m):
    """s[r, j] = a[i0 + r] . xT[:, j] for keys j <= i0 + r, -inf for i0 + r < j < n; and
    m[r] = max_j s[r, j], for the tile's rows r < 8.

    forward: scores[i, j] = q[i] / sqrt(E) . k[j]   (a = q / sqrt(E), xT = k^T)
    """
    last = n - LANES                                             # the block holding the diagonal
    m0 = m1 = m2 = m3 = m4 = m5 = m6 = m7 = splat16(ninf)        # each row's max, lane by lane
    for j in range(0, n, LANES):
        c = _dots_8x16(a, i0, xT, j, zero)
        if j == last:
            c = _causal_8x16(c, j, i0, ninf)
        c0, c1, c2, c3, c4, c5, c6, c7 = c
        m0, m1, m2, m3 = max16(m0, c0), max16(m1, c1), max16(m2, c2), max16(m3, c3)
        m4, m5, m6, m7 = max16(m4, c4), max16(m5, c5), max16(m6, c6), max16(m7, c7)
        store16(s[0], j, c0)
        store16(s[1], j, c1)
        store16(s[2], j, c2)
        store16(s[3], j, c3)
        store16(s[4], j, c4)
        store16(s[5], j, c5)
        store16(s[6], j, c6)
        store16(s[7], j, c7)
    m[0], m[1], m[2], m[3] = hmax16(m0), hmax16(m1), hmax16(m2), hmax16(m3)
    m[4], m[5], m[6], m[7] = hmax16(m4), hmax16(m5), hmax16(m6), hmax16(m7)


@kernel()
def _tile_pattern(p, a, i0, xT, n, lse, ninf, zero):
    """p[r, j] = exp(a[i0 + r] . xT[:, j] - lse[i0 + r]) for keys j <= i0 + r, 0 for
    i0 + r < j < n: the forward's pattern, recomputed from its scores and lse.

    backward: pattern[i, j] = exp(q[i] / sqrt(E) . k[j] - lse[i])   (a = q / sqrt(E), xT = k^T)
    """
    last = n - LANES
    l0, l1, l2, l3 = splat16(lse[i0]), splat16(lse[i0 + 1]), splat16(lse[i0 + 2]), splat16(lse[i0 + 3])
    l4, l5, l6, l7 = splat16(lse[i0 + 4]), splat16(lse[i0 + 5]), splat16(lse[i0 + 6]), splat16(lse[i0 + 7])
    for j in range(0, n, LANES):
        c = _dots_8x16(a, i0, xT, j, zero)
        if j == last:
            c = _causal_8x16(c, j, i0, ninf)                     # exp(-inf) = 0
        c0, c1, c2, c3, c4, c5, c6, c7 = c
        store16(p[0], j, exp16(sub16(c0, l0)))
        store16(p[1], j, exp16(sub16(c1, l1)))
        store16(p[2], j, exp16(sub16(c2, l2)))
        store16(p[3], j, exp16(sub16(c3, l3)))
        store16(p[4], j, exp16(sub16(c4, l4)))
        store16(p[5], j, exp16(sub16(c5, l5)))
        store16(p[6], j, exp16(sub16(c6, l6)))
        store16(p[7], j, exp16(sub16(c7, l7)))


@kernel()
def _tile_d_scores(d_s, a, i0, xT, n, p, dot, zero):
    """d_s[r, j] = p[r, j] * (a[i0 + r] . xT[:, j] - dot[i0 + r]) for keys j < n.

    backward: d_s[i, j] = p[i, j] * (d_p[i, j] - d_z[i] . z[i]),  d_p[i, j] = d_z[i] . v[j]
              (a = d_z, xT = v^T, dot = d_z . z row by row)
    """
    d0, d1, d2, d3 = splat16(dot[i0]), splat16(dot[i0 + 1]), splat16(dot[i0 + 2]), splat16(dot[i0 + 3])
    d4, d5, d6, d7 = splat16(dot[i0 + 4]), splat16(dot[i0 + 5]), splat16(dot[i0 + 6]), splat16(dot[i0 + 7])
    for j in range(0, n, LANES):
        c0, c1, c2, c3, c4, c5, c6, c7 = _dots_8x16(a, i0, xT, j, zero)
        store16(d_s[0], j, mul16(load16(p[0], j), sub16(c0, d0)))
        store16(d_s[1], j, mul16(load16(p[1], j), sub16(c1, d1)))
        store16(d_s[2], j, mul16(load16(p[2], j), sub16(c2, d2)))
        store16(d_s[3], j, mul16(load16(p[3], j), sub16(c3, d3)))
        store16(d_s[4], j, mul16(load16(p[4], j), sub16(c4, d4)))
        store16(d_s[5], j, mul16(load16(p[5], j), sub16(c5, d5)))
        store16(d_s[6], j, mul16(load16(p[6], j), sub16(c6, d6)))
        store16(d_s[7], j, mul16(load16(p[7], j), sub16(c7, d7)))


@kernel()
def _tile_sums(out, i0, w, x, n, scales, zero):
    """out[i0 + r, e] = scales[r] * sum_{j < n} w[r, j] x[j, e] for the tile's rows r < 8.

    forward:  z[i]   = (1 / sum_j u[i, j]) sum_j u[i, j] v[j]      (w = u = exp(s - m), x = v)
    backward: d_q[i] = (1 / sqrt(E)) sum_j d_s[i, j] k[j]           (w = d_s, x = k)
    Sixteen dimensions e at a time; eight vectors hold the 8 x 16 block of out while j runs.
    """
    for e in range(0, x.shape[1], LANES):
        c0 = c1 = c2 = c3 = c4 = c5 = c6 = c7 = splat16(zero)
        for j in range(n):
            x_j = load16(x[j], e)                                # dimensions e..e+15 of key j
            c0 = fma16(splat16(w[0, j]), x_j, c0)
            c1 = fma16(splat16(w[1, j]), x_j, c1)
            c2 = fma16(splat16(w[2, j]), x_j, c2)
            c3 = fma16(splat16(w[3, j]), x_j, c3)
            c4 = fma16(splat16(w[4, j]), x_j, c4)
            c5 = fma16(splat16(w[5, j]), x_j, c5)
            c6 = fma16(splat16(w[6, j]), x_j, c6)
            c7 = fma16(splat16(w[7, j]), x_j, c7)
        store16(out[i0], e, mul16(c0, splat16(scales[0])))
        store16(out[i0 + 1], e, mul16(c1, splat16(scales[1])))
        store16(out[i0 + 2], e, mul16(c2, splat16(scales[2])))
        store16(out[i0 + 3], e, mul16(c3, splat16(scales[3])))
        store16(out[i0 + 4], e, mul16(c4, splat16(scales[4])))
        store16(out[i0 + 5], e, mul16(c5, splat16(scales[5])))
        store16(out[i0 + 6], e, mul16(c6, splat16(scales[6])))
        store16(out[i0 + 7], e, mul16(c7, splat16(scales[7])))


@kernel()
def _tile_add_outer(acc, w, a, i0, n):
    """acc[j, e] += sum_r w[r, j] a[i0 + r, e] for keys j < n: the tile's rows, summed into
    every key's row (the transposed product of _tile_sums).

    backward: d_v[j] += sum_i p[i, j] d_z[i]                   (w = p,   a = d_z)
              d_k[j] += sum_i d_s[i, j] q[i] / sqrt(E)         (w = d_s, a = q / sqrt(E))
    The tile's eight rows of a stay in vectors; each key j adds eight products to its row.
    Two sums of four, so that two chains of multiply-adds run side by side.
    """
    for e in range(0, a.shape[1], LANES):
        a0, a1, a2, a3 = load16(a[i0], e), load16(a[i0 + 1], e), load16(a[i0 + 2], e), load16(a[i0 + 3], e)
        a4, a5, a6, a7 = load16(a[i0 + 4], e), load16(a[i0 + 5], e), load16(a[i0 + 6], e), load16(a[i0 + 7], e)
        for j in range(n):
            u = fma16(splat16(w[0, j]), a0, fma16(splat16(w[1, j]), a1,
                      fma16(splat16(w[2, j]), a2, mul16(splat16(w[3, j]), a3))))
            t = fma16(splat16(w[4, j]), a4, fma16(splat16(w[5, j]), a5,
                      fma16(splat16(w[6, j]), a6, fma16(splat16(w[7, j]), a7, load16(acc[j], e)))))
            store16(acc[j], e, add16(u, t))


@kernel()
def _exp_rows(s, n, m, total, zero):
    """s[r, j] = exp(s[r, j] - m[r]) for keys j < n, and total[r] = their sum, for the tile's
    rows r < 8 (the softmax's numerators and sum; masked keys, -inf, give exactly 0)."""
    for r in range(ROWS):
        row = s[r]
        shift = splat16(m[r])
        acc = splat16(zero)
        for j in range(0, n, LANES):
            p = exp16(sub16(load16(row, j), shift))
            store16(row, j, p)
            acc = add16(acc, p)
        total[r] = hsum16(acc)


@kernel()
def _copy_head(out, a, b, h, scale, transpose):
    """out[i, e] = scale * a[b, i, h, e] (out[e, i] if transpose) for i < T, e < E: one head's
    rows (or, transposed, columns: k^T, v^T) into scratch; the padding of out (zeros from
    when it was allocated) stays untouched."""
    for i in range(a.shape[1]):
        for e in range(a.shape[3]):
            if transpose:
                out[e, i] = scale * a[b, i, h, e]
            else:
                out[i, e] = scale * a[b, i, h, e]


@register_jitable
def _padded(n, multiple):
    """n rounded up to a multiple of `multiple`."""
    return (n + multiple - 1) // multiple * multiple


@register_jitable
def _tile_sizes(T, E):
    """The scratch's padded sizes: Tq query rows (whole tiles of ROWS), Tk keys (whole
    blocks of 16), Ep dimensions (whole vectors of 16)."""
    return _padded(T, ROWS), _padded(T, LANES), _padded(E, LANES)


@kernel()
def _attention_forward(q, k, v, scale, ninf, z, lse, bh0, bh1):
    B, T, H, E = q.shape
    Tq, Tk, Ep = _tile_sizes(T, E)
    # 0 and 1 in the arrays' dtype (a literal 0.0 would be a float64 to Numba)
    zero, one = scale - scale, scale / scale
    qs = np.zeros((Tq, Ep), dtype=q.dtype)                       # q / sqrt(E)
    kT = np.zeros((Ep, Tk), dtype=q.dtype)                       # k^T
    vs = np.zeros((Tk, Ep), dtype=q.dtype)                       # v
    zs = np.empty((Tq, Ep), dtype=q.dtype)                       # z
    s = np.empty((ROWS, Tk), dtype=q.dtype)                      # the tile's scores, then exp
    m, total = np.empty(ROWS, dtype=q.dtype), np.empty(ROWS, dtype=q.dtype)
    inv_total = np.empty(ROWS, dtype=q.dtype)
    for bh in range(bh0, bh1):                                   # (b, h) owns z[b,:,h], lse[b,h]
        b = bh // H
        h = bh - b * H
        _copy_head(qs, q, b, h, scale, False)
        _copy_head(kT, k, b, h, one, True)
        _copy_head(vs, v, b, h, one, False)
        for i0 in range(0, Tq, ROWS):                            # query rows i0 <= i < i0 + 8 ..
            n = _padded(i0 + ROWS, LANES)                        # .. see keys j < n
            _tile_scores(s, qs, i0, kT, n, ninf, zero, m)        # s = scores, m = their row max
            _exp_rows(s, n, m, total, zero)                      # s = exp(scores - m), 0 if j > i
            for r in range(ROWS):
                inv_total[r] = one / total[r]                    # the softmax's 1 / sum
            _tile_sums(zs, i0, s, vs, n, inv_total, zero)        # z = pattern @ v
            for r in range(min(ROWS, T - i0)):
                lse[b, h, i0 + r] = m[r] + np.log(total[r])
        for i in range(T):
            for e in range(E):
                z[b, i, h, e] = zs[i, e]


@kernel()
def _attention_scores(q, k, scale, ninf, scores, bh0, bh1):
    B, T, H, E = q.shape
    Tq, Tk, Ep = _tile_sizes(T, E)
    zero, one = scale - scale, scale / scale
    qs = np.zeros((Tq, Ep), dtype=q.dtype)                       # q / sqrt(E)
    kT = np.zeros((Ep, Tk), dtype=q.dtype)                       # k^T
    s = np.empty((ROWS, Tk), dtype=q.dtype)                      # the tile's scores
    m = np.empty(ROWS, dtype=q.dtype)                            # (each row's max: not needed)
    for bh in range(bh0, bh1):                                   # (b, h) owns scores[b,h]
        b = bh // H
        h = bh - b * H
        _copy_head(qs, q, b, h, scale, False)
        _copy_head(kT, k, b, h, one, True)
        for i0 in range(0, Tq, ROWS):
            n = _padded(i0 + ROWS, LANES)
            _tile_scores(s, qs, i0, kT, n, ninf, zero, m)        # s = scores, -inf for j > i
            for r in range(min(ROWS, T - i0)):
                for j in range(T):
                    scores[b, h, i0 + r, j] = s[r, j] if j < n else ninf


@kernel()
def _softmax_rows(scores, pattern, fast_exp, r0, r1):
    R, T = scores.shape
    zero = np.zeros(1, dtype=scores.dtype)[0]                    # 0 in the scores' dtype
    for r in range(r0, r1):                                      # each row its own softmax
        row = scores[r]
        softmax_row(row, pattern[r], T, fast_exp, zero)


@kernel()
def _attention_backward(d_z, q, k, v, z, lse, scale, ninf, d_q, d_k, d_v, bh0, bh1):
    B, T, H, E = q.shape
    Tq, Tk, Ep = _tile_sizes(T, E)
    zero, one = scale - scale, scale / scale
    qs = np.zeros((Tq, Ep), dtype=q.dtype)                       # q / sqrt(E)
    ks = np.zeros((Tk, Ep), dtype=q.dtype)                       # k
    kT = np.zeros((Ep, Tk), dtype=q.dtype)                       # k^T
    vT = np.zeros((Ep, Tk), dtype=q.dtype)                       # v^T
    d_zs = np.zeros((Tq, Ep), dtype=q.dtype)                     # d_z
    lse_b = np.zeros(Tq, dtype=q.dtype)                          # lse[b, h], padded
    dot = np.zeros(Tq, dtype=q.dtype)                            # sum_j d_p p = d_z . z, per row
    d_qs = np.empty((Tq, Ep), dtype=q.dtype)                     # d_q
    d_ks = np.empty((Tk, Ep), dtype=q.dtype)                     # d_k, summed over the tiles
    d_vs = np.empty((Tk, Ep), dtype=q.dtype)                     # d_v, likewise
    p = np.empty((ROWS, Tk), dtype=q.dtype)                      # the tile's pattern
    d_s = np.empty((ROWS, Tk), dtype=q.dtype)                    # the tile's d_s
    scales = np.full(ROWS, scale, dtype=q.dtype)
    for bh in range(bh0, bh1):                                   # (b, h) owns d_q/d_k/d_v[b,:,h]
        b = bh // H
        h = bh - b * H
        _copy_head(qs, q, b, h, scale, False)
        _copy_head(ks, k, b, h, one, False)
        _copy_head(kT, k, b, h, one, True)
        _copy_head(vT, v, b, h, one, True)
        _copy_head(d_zs, d_z, b, h, one, False)
        for i in range(T):                                       # (a loop: an array assignment
            lse_b[i] = lse[b, h, i]                              # compiles its shape checks' messages)
        for i in range(T):
            acc = zero
            for e in range(E):
                acc += d_z[b, i, h, e] * z[b, i, h, e]
            dot[i] = acc
        d_ks[:] = zero
        d_vs[:] = zero
        for i0 in range(0, Tq, ROWS):                            # query rows i0 <= i < i0 + 8 ..
            n = _padded(i0 + ROWS, LANES)                        # .. see keys j < n
            # the forward's pattern, recomputed: p = exp(s - lse)
            _tile_pattern(p, qs, i0, kT, n, lse_b, ninf, zero)
            # forward: z = p @ v            ->  d_p = d_z @ v^T,  d_v += p^T @ d_z
            # forward: p = softmax(s)       ->  d_s = p * (d_p - d_z . z)
            _tile_d_scores(d_s, d_zs, i0, vT, n, p, dot, zero)
            _tile_add_outer(d_vs, p, d_zs, i0, n)
            # forward: s = q @ k^T / sqrt(E) ->  d_q = d_s @ k / sqrt(E),  d_k += d_s^T @ q / sqrt(E)
            _tile_sums(d_qs, i0, d_s, ks, n, scales, zero)
            _tile_add_outer(d_ks, d_s, qs, i0, n)
        for i in range(T):
            for e in range(E):
                d_q[b, i, h, e] = d_qs[i, e]
                d_k[b, i, h, e] = d_ks[i, e]
                d_v[b, i, h, e] = d_vs[i, e]


def _check_qkv(names, q, *others):
    """q [B, T, H, E] and the other arrays named in `names` (after "q"), all of q's shape
    and dtype; returned C-contiguous, each converted once."""
    q, *others = as_floats(names, q, *others)
    if q.ndim != 4:
        raise ValueError(f"q must be [B, T, H, E], got shape {q.shape}")
    for name, a in zip(names.split()[1:], others):
        expect_shape(name, a, q.shape)
    return [q] + others


def _check_lse(lse, q):
    (lse,) = as_floats("lse", lse)
    B, T, H, E = q.shape
    expect_shape("lse", lse, (B, H, T))
    if lse.dtype != q.dtype:
        raise ValueError(f"lse and q must share one dtype, got {lse.dtype}, {q.dtype}")
    return lse


def _constants(q):
    """1/sqrt(E) and -inf in q's dtype (Numba would make -inf a float64)."""
    return q.dtype.type(1 / np.sqrt(q.shape[3])), q.dtype.type(-np.inf)


def attention_scores(q, k):
    """Numba twin of minih.ops.attention.attention_scores (passes 1-2).

    q, k [B,T,H,E] -> scores [B,H,T,T]: q k^T / sqrt(E), -inf for key j > query i. Per
    (b, h), in the fused forward's tiles (_tile_scores), which skip the masked half.
    """
    q, k = _check_qkv("q k", q, k)
    B, T, H, E = q.shape
    # np.empty, not np.zeros: the kernel writes every entry, on the threads; np.zeros of a
    # recycled heap block would be a serial memset first
    scores = np.empty((B, H, T, T), dtype=q.dtype)
    scale, ninf = _constants(q)
    run_chunks(B * H, lambda bh0, bh1: _attention_scores(q, k, scale, ninf, scores, bh0, bh1))
    return scores


def attention_pattern(scores):
    """Numba twin of minih.ops.attention.attention_pattern (pass 3): softmax over the keys.

    scores [B,H,T,T] -> pattern [B,H,T,T], one row at a time, over the whole row (the
    scores may be edited, so no causal structure is assumed: -inf gives exactly 0).
    float32 rows use the vectorised max and exp of kernels/_jit.py, as the loss does.
    """
    (scores,) = as_floats("scores", scores)
    if scores.ndim != 4 or scores.shape[-1] != scores.shape[-2]:
        raise ValueError(f"scores must be [B, H, T, T], got shape {scores.shape}")
    T = scores.shape[-1]
    rows = scores.reshape(-1, T)                                 # [B*H*T, T]
    pattern = np.empty_like(rows)
    fast_exp = scores.dtype == np.float32
    run_chunks(rows.shape[0], lambda r0, r1: _softmax_rows(rows, pattern, fast_exp, r0, r1))
    return pattern.reshape(scores.shape)


def fused_attention_forward(q, k, v):
    """Numba-only fused twin of minih.ops.attention's passes 1-4 (attention_scores,
    attention_pattern, attention_z): the pattern is never stored.

    q, k, v [B,T,H,E] -> z [B,T,H,E], lse [B,H,T]
    scores[b,h,i,j] = q[b,i,h] . k[b,j,h] / sqrt(E) for j <= i, -inf for j > i;
    pattern = softmax(scores) over j; z[b,i,h] = sum_j pattern[b,h,i,j] v[b,j,h];
    lse[b,h,i] = log sum_j exp(scores[b,h,i,j]). Per tile of 8 query rows: scores
    and their row max (_tile_scores), exp(scores - max) and its sum (_exp_rows), then
    z = (exp @ v) / sum (_tile_sums). The pattern never leaves the tile.
    """
    q, k, v = _check_qkv("q k v", q, k, v)
    B, T, H, E = q.shape
    z = np.empty_like(q)
    lse = np.empty((B, H, T), dtype=q.dtype)
    scale, ninf = _constants(q)
    run_chunks(B * H, lambda bh0, bh1: _attention_forward(q, k, v, scale, ninf, z, lse, bh0, bh1))
    return z, lse


def fused_attention_backward(d_z, q, k, v, z, lse):
    """Numba-only fused twin of minih.ops.attention.attention_backward, for the fused forward.

    d_z, q, k, v, z [B,T,H,E], lse [B,H,T] (fused_attention_forward's) -> d_q, d_k, d_v [B,T,H,E].
    Where the reference reads the forward's pattern, this recomputes it from q, k and lse,
    and the softmax's row sums sum_j d_p[i,j] p[i,j] are d_z[i] . z[i] (no [T, T] product).
    Per (b, h) and tile of 8 query rows, with p = exp(s - lse) recomputed from q and k:
        d_p = d_z @ v^T,  d_v += p^T @ d_z,  d_s = p * (d_p - d_z . z),
        d_q = d_s @ k / sqrt(E),  d_k += d_s^T @ q / sqrt(E).
    Five products of the tile's 8 rows with the keys before them, all in registers
    (_tile_pattern, _tile_d_scores, _tile_add_outer, _tile_sums); d_k and d_v sum over
    the tiles in scratch.
    """
    q, k, v, d_z, z = _check_qkv("q k v d_z z", q, k, v, d_z, z)
    lse = _check_lse(lse, q)
    B, T, H, E = q.shape
    d_q, d_k, d_v = np.empty_like(q), np.empty_like(q), np.empty_like(q)
    scale, ninf = _constants(q)
    run_chunks(B * H, lambda bh0, bh1: _attention_backward(d_z, q, k, v, z, lse, scale, ninf,
                                                           d_q, d_k, d_v, bh0, bh1))
    return d_q, d_k, d_v


# --- 4. output projection: BLAS ---------------------------------------------------------

def output_forward(z, W_O):
    """Numba twin of minih.ops.attention.output_forward (BLAS: a plain matmul).

    attn_out[b,t] = sum_h z[b,t,h] @ W_O[h]:  z as [B*T, H*E] @ W_O as [H*E, D] -> [B,T,D]
    """
    z, W_O = as_floats("z W_O", z, W_O)
    B, T, H, E = z.shape
    expect_shape("W_O", W_O, (H, E, W_O.shape[-1]))
    return matmul(z.reshape(B * T, H * E), W_O.reshape(H * E, -1)).reshape(B, T, -1)


def head_results(z, W_O):
    """Numba twin of minih.ops.attention.head_results (BLAS, batched over heads).

    Each head's write to the residual stream: z [B,T,H,E], W_O [H,E,D] -> [B,T,H,D]
    (a transposed view of an [H, B*T, D] product).
    """
    z, W_O = as_floats("z W_O", z, W_O)
    B, T, H, E = z.shape
    expect_shape("W_O", W_O, (H, E, W_O.shape[-1]))
    zh = z.reshape(B * T, H, E).transpose(1, 0, 2)               # [H, B*T, E]
    return (zh @ W_O).reshape(H, B, T, -1).transpose(1, 2, 0, 3)  # [B,T,H,D]


def output_backward(d_out, z, W_O):
    """Numba twin of minih.ops.attention.output_backward (BLAS): -> d_z [B,T,H,E], d_W_O [H,E,D]"""
    d_out, z, W_O = as_floats("d_out z W_O", d_out, z, W_O)
    B, T, H, E = z.shape
    D = W_O.shape[-1]
    expect_shape("W_O", W_O, (H, E, D))
    expect_shape("d_out", d_out, (B, T, D))
    d_out2 = d_out.reshape(B * T, D)                             # [B*T, D]
    d_z = matmul(d_out2, W_O.reshape(H * E, D).T).reshape(B, T, H, E)
    d_W_O = matmul_tn(z.reshape(B * T, H * E), d_out2).reshape(H, E, D)
    return d_z, d_W_O
