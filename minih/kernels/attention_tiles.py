"""The causal attention forward in register tiles: the Numba twin's forward on CPUs without
AVX-512 (minih/kernels/attention.py chooses; docs/04_numba.md has the numbers).

Mirrors minih.ops.attention.attention_forward. Per (b, h), four query rows at a time:
    scores[i, j] = q[i] . k[j] / sqrt(E)   for j <= i          (_tile_dot_keys)
    pattern[i]   = softmax(scores[i])       over j <= i, 0 beyond (attention.py's _row_softmax)
    z[i]         = sum_j pattern[i, j] v[j]                      (_tile_sum_keys)
The loop backward (attention_loops.py) computes its d_p and d_q with the same helpers.

Why tiles: the two products have d_head = E = 16 on one side, too thin for BLAS's
kernels on AVX2 (OpenBLAS's `pattern @ v` per 64-row block ran at ~20 GFLOP/s on one
core of the project's Zen 3 machine), and a loop over one row reads every k (or v)
value for one multiply-add. A tile of 4 rows x 16 columns of the result, held in eight
vector registers (minih/kernels/simd.py) while the summed dimension streams past,
uses each loaded vector four times and each loaded number of the other operand
sixteen times: the register blocking of a BLAS micro-kernel. Four rows fit: in float32,
eight accumulators, two loaded vectors, one broadcast and the scale are 12 of AVX2's 16
registers (a float64 vector of 8 takes two registers, so float64 spills: right, not tuned).
The tile's four rows are still in L1 cache when the softmax and `pattern @ v` read
them again.

Lengths: a tile's scores run over keys j < n_pad, the end of the 16-key block holding
the tile's last row (as the row-by-row forward of attention.py); past the diagonal
the softmax writes exact zeros, so _tile_sum_keys adds zeros there. _tile_sum_keys needs
E to be a multiple of 16 (attention.py sends other E to the row-by-row kernel, the loop
backward computes d_q row by row then). The rows left after the last tile take plain
loops (the forward, attention.py) or _rows_times_T / _rows_dot_T (the backward); keys
past a multiple of 16 (only where n_pad = T, as SIMD = KEYS = 16) a scalar loop.

Shape legend: B = batch, T = positions (query i, key j), H = n_heads, E = d_head
"""
from numba.extending import register_jitable

from ._jit import kernel
from .simd import fma8, load8, mul8, splat8, store8

TILE = 4            # query rows per tile
KEYS = 16           # keys per step of _tile_dot_keys: two vectors of 8


@register_jitable       # compiled into the compiled callers, plain Python in their .py_func
def _add_outer_4x16(tile, c0, c1, c2, c3, x_s, x_t):
    """tile += [c0, c1, c2, c3]^T [x_s, x_t], a 4 x 16 outer product: one broadcast per row
    and eight fused multiply-adds. tile = (s0, t0, s1, t1, s2, t2, s3, t3), row r's
    columns 0-7 in s_r and 8-15 in t_r (eight vectors; LLVM keeps them in registers)."""
    s0, t0, s1, t1, s2, t2, s3, t3 = tile
    w = splat8(c0)
    s0, t0 = fma8(w, x_s, s0), fma8(w, x_t, t0)
    w = splat8(c1)
    s1, t1 = fma8(w, x_s, s1), fma8(w, x_t, t1)
    w = splat8(c2)
    s2, t2 = fma8(w, x_s, s2), fma8(w, x_t, t2)
    w = splat8(c3)
    s3, t3 = fma8(w, x_s, s3), fma8(w, x_t, t3)
    return s0, t0, s1, t1, s2, t2, s3, t3


@kernel()
def _tile_dot_keys(o0, o1, o2, o3, a0, a1, a2, a3, xT, n, scale, zero):
    """o_r[j] = scale * sum_e a_r[e] xT[e, j] for the tile's rows r < 4 and keys j < n.

    forward:  scores[i, j] = q[i] . k[j] / sqrt(E)   (o = pattern rows, a = q rows, xT = k^T)
    backward: d_p[i, j] = d_z[i] . v[j]              (o = d_s rows, a = d_z rows, xT = v^T)
    """
    E = xT.shape[0]
    n_vec = n - n % KEYS
    sc = splat8(scale)
    for j in range(0, n_vec, KEYS):       # the 4 x 16 tile (rows r, keys j..j+15) in 8 registers
        c = splat8(zero)                                         # s_r: keys j..j+7, t_r: j+8..j+15
        tile = (c, c, c, c, c, c, c, c)
        for e in range(E):
            x_s, x_t = load8(xT[e], j), load8(xT[e], j + 8)      # x[j..j+15, e]
            tile = _add_outer_4x16(tile, a0[e], a1[e], a2[e], a3[e], x_s, x_t)
        s0, t0, s1, t1, s2, t2, s3, t3 = tile
        store8(o0, j, mul8(s0, sc))
        store8(o0, j + 8, mul8(t0, sc))
        store8(o1, j, mul8(s1, sc))
        store8(o1, j + 8, mul8(t1, sc))
        store8(o2, j, mul8(s2, sc))
        store8(o2, j + 8, mul8(t2, sc))
        store8(o3, j, mul8(s3, sc))
        store8(o3, j + 8, mul8(t3, sc))
    for j in range(n_vec, n):             # keys n_vec <= j < n (n not a multiple of 16)
        c0, c1, c2, c3 = zero, zero, zero, zero
        for e in range(E):
            c0 += a0[e] * xT[e, j]
            c1 += a1[e] * xT[e, j]
            c2 += a2[e] * xT[e, j]
            c3 += a3[e] * xT[e, j]
        o0[j], o1[j], o2[j], o3[j] = c0 * scale, c1 * scale, c2 * scale, c3 * scale


@kernel()
def _tile_sum_keys(out, b, i0, h, w0, w1, w2, w3, x, n, zero):
    """out[b, i0 + r, h, :] = sum_{j < n} w_r[j] x[b, j, h, :] for the tile's rows r < 4
    (E = out.shape[3], a multiple of 16).

    forward:  z[i] = sum_j pattern[i, j] v[j]    (out = z, w = pattern rows, x = v)
    backward: d_q[i] = sum_j d_s[i, j] k[j]      (out = d_q, w = d_s rows, x = k)
    """
    E = out.shape[3]
    if E % 16 != 0:                       # the callers check; a wrong call must not write past rows
        raise ValueError("_tile_sum_keys needs d_head to be a multiple of 16")
    for e in range(0, E, 16):             # the 4 x 16 tile (rows r, dims e..e+15) in 8 registers
        c = splat8(zero)                                         # s_r: dims e..e+7, t_r: e+8..e+15
        tile = (c, c, c, c, c, c, c, c)
        for j in range(n):
            x_j = x[b, j, h]                                     # [E]
            x_s, x_t = load8(x_j, e), load8(x_j, e + 8)          # x[j, e..e+15]
            tile = _add_outer_4x16(tile, w0[j], w1[j], w2[j], w3[j], x_s, x_t)
        s0, t0, s1, t1, s2, t2, s3, t3 = tile
        store8(out[b, i0, h], e, s0)
        store8(out[b, i0, h], e + 8, t0)
        store8(out[b, i0 + 1, h], e, s1)
        store8(out[b, i0 + 1, h], e + 8, t1)
        store8(out[b, i0 + 2, h], e, s2)
        store8(out[b, i0 + 2, h], e + 8, t2)
        store8(out[b, i0 + 3, h], e, s3)
        store8(out[b, i0 + 3, h], e + 8, t3)
