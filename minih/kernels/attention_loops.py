"""The causal attention backward as loops over keys: the Numba twin's backward on CPUs
without AVX-512 (minih/kernels/attention.py chooses; docs/04_numba.md has the numbers).

Mirrors minih.ops.attention.attention_backward. Per (b, h), with p = pattern:
    z = p @ v                 ->  d_v = p^T @ d_z,   d_p = d_z @ v^T
    p = softmax(s) by rows    ->  d_s = p * (d_p - sum_j d_p p)
    s = q @ k^T / sqrt(E)     ->  d_q = d_s @ k / sqrt(E),   d_k = d_s^T @ q / sqrt(E)

Why loops here and BLAS on AVX-512: every product of the backward has d_head = 16 on
one side, too thin for BLAS's big-matrix kernels. OpenBLAS has special small-matrix
kernels for AVX-512 only; there, BLAS on 64-row blocks beats these loops (the
project's Zen 4 machine, REF layer: 26 against 35 ms on one core, 14 against 17 ms on
two threads). On an
AVX2 CPU (the project's Zen 3 machine) these loops take about a fifth less time than
the BLAS version (REF layer: 46 -> 37-39 ms on one core, 24-28 -> 19-22 ms on two
threads).

How it is laid out, and why:
- Keys along the vector lanes. k and v are copied into transposed scratch kT, vT [E, T]
  per (b, h), and d_k, d_v are summed into d_kT, d_vT [E, T]: every inner loop runs over
  keys j with unit stride, which LLVM turns into SIMD code (8 float32 per AVX2 register).
  The exception is the d_q tile (_tile_sum_keys), with dimensions e along the lanes: it
  reads k untransposed, and kT serves the rows left over and E % 16 != 0.
- ROWS = 8 query rows per block. The two updates of d_k and d_v read and write a row of
  d_kT or d_vT per eight multiply-adds (one per query row), not per one.
- Loops stop where the block's last row does, padded to a multiple of SIMD = 16 keys:
  LLVM's vector loops here do 16 per iteration (AVX2, float32: 8 lanes x 2, read off the
  assembly of _add_outer), and a row of another length ends in a scalar tail. The
  pattern is 0 above the diagonal, so the padding adds exact zeros. (n never exceeds
  the reference's block end i1: the padding relies on no zero the reference does not.)
- One serial kernel for a range of (b, h) pairs, run on minih's thread pool
  (threads.run_chunks), like every kernel of this package: Numba's parallel (prange)
  version of this kernel compiled in 17 s, the serial one in 5 s, and ran about as
  fast. Each (b, h) is computed whole by one thread, so how the pairs are chunked only
  decides which thread works, never a bit of the result.

Shape legend: B = batch, T = positions (query i, key j), H = n_heads, E = d_head
"""
import numpy as np

from ._jit import kernel
from .attention_tiles import TILE, _tile_dot_keys, _tile_sum_keys
from ..threads import run_chunks

ROWS = 8            # query rows per block (the _add_outer helper takes exactly eight)
SIMD = 16           # keys per iteration of LLVM's vector loops: rows are padded to a multiple of this


@kernel()
def _add_outer(accT, w0, w1, w2, w3, w4, w5, w6, w7, a, n):
    """accT[e, j] += sum_r w_r[j] a[r, e] over the block's eight rows r, for j < n.

    forward z = p @ v:     d_v[j] += sum_i p[i, j] d_z[i]   (w_r = pattern rows, a = d_z rows)
    forward s = q @ k^T:   d_k[j] += sum_i d_s[i, j] q[i]   (w_r = d_s rows, a = q rows)
    """
    for e in range(accT.shape[0]):
        a0, a1, a2, a3 = a[0, e], a[1, e], a[2, e], a[3, e]
        a4, a5, a6, a7 = a[4, e], a[5, e], a[6, e], a[7, e]
        acc = accT[e]                                            # [T]
        for j in range(n):
            acc[j] += ((w0[j] * a0 + w1[j] * a1) + (w2[j] * a2 + w3[j] * a3)
                       + ((w4[j] * a4 + w5[j] * a5) + (w6[j] * a6 + w7[j] * a7)))


@kernel()
def _rows_times_T(out, a, xT, rows, n, zero):
    """out[r, j] = sum_e a[r, e] xT[e, j] for r < rows, j < n   (d_p = d_z @ v^T with xT = v^T).

    Eight dimensions e per loop over j: the first block writes the row (no zero-fill),
    the next ones add to it, then the E % 8 dimensions left one at a time. (The first
    block is a loop of its own: one loop with an `if e0 == 0` inside took 45.2 against
    40.4 ms per REF layer on one core of the Zen 3 machine.)
    """
    E = xT.shape[0]
    for r in range(rows):
        o = out[r]                                               # [T]
        e0 = 0
        if E >= 8:
            a0, a1, a2, a3 = a[r, 0], a[r, 1], a[r, 2], a[r, 3]
            a4, a5, a6, a7 = a[r, 4], a[r, 5], a[r, 6], a[r, 7]
            x0, x1, x2, x3, x4, x5, x6, x7 = xT[0], xT[1], xT[2], xT[3], xT[4], xT[5], xT[6], xT[7]
            for j in range(n):
                o[j] = ((a0 * x0[j] + a1 * x1[j]) + (a2 * x2[j] + a3 * x3[j])
                        + ((a4 * x4[j] + a5 * x5[j]) + (a6 * x6[j] + a7 * x7[j])))
            e0 = 8
        else:
            for j in range(n):
                o[j] = zero
        while e0 + 8 <= E:
            a0, a1, a2, a3 = a[r, e0], a[r, e0 + 1], a[r, e0 + 2], a[r, e0 + 3]
            a4, a5, a6, a7 = a[r, e0 + 4], a[r, e0 + 5], a[r, e0 + 6], a[r, e0 + 7]
            x0, x1, x2, x3 = xT[e0], xT[e0 + 1], xT[e0 + 2], xT[e0 + 3]
            x4, x5, x6, x7 = xT[e0 + 4], xT[e0 + 5], xT[e0 + 6], xT[e0 + 7]
            for j in range(n):
                o[j] += ((a0 * x0[j] + a1 * x1[j]) + (a2 * x2[j] + a3 * x3[j])
                         + ((a4 * x4[j] + a5 * x5[j]) + (a6 * x6[j] + a7 * x7[j])))
            e0 += 8
        for e in range(e0, E):                                   # the E % 8 dimensions left
            a_e, x_e = a[r, e], xT[e]
            for j in range(n):
                o[j] += a_e * x_e[j]


@kernel()
def _rows_dot_T(out, b, i0, h, w, xT, rows, n, zero):
    """out[b, i0 + r, h, e] = sum_j w[r, j] xT[e, j] for r < rows, j < n   (d_q = d_s @ k, xT = k^T).

    Eight dimensions e per loop over j: eight sums, each a SIMD reduction, share one
    read of the row w[r].
    """
    E = xT.shape[0]
    for r in range(rows):
        w_r = w[r]                                               # [T]
        i = i0 + r
        e0 = 0
        while e0 + 8 <= E:
            x0, x1, x2, x3 = xT[e0], xT[e0 + 1], xT[e0 + 2], xT[e0 + 3]
            x4, x5, x6, x7 = xT[e0 + 4], xT[e0 + 5], xT[e0 + 6], xT[e0 + 7]
            c0, c1, c2, c3, c4, c5, c6, c7 = zero, zero, zero, zero, zero, zero, zero, zero
            for j in range(n):
                s = w_r[j]
                c0 += s * x0[j]
                c1 += s * x1[j]
                c2 += s * x2[j]
                c3 += s * x3[j]
                c4 += s * x4[j]
                c5 += s * x5[j]
                c6 += s * x6[j]
                c7 += s * x7[j]
            out[b, i, h, e0], out[b, i, h, e0 + 1], out[b, i, h, e0 + 2], out[b, i, h, e0 + 3] = c0, c1, c2, c3
            out[b, i, h, e0 + 4], out[b, i, h, e0 + 5], out[b, i, h, e0 + 6], out[b, i, h, e0 + 7] = c4, c5, c6, c7
            e0 += 8
        for e in range(e0, E):                                   # the E % 8 dimensions left
            c0 = zero
            x_e = xT[e]
            for j in range(n):
                c0 += w_r[j] * x_e[j]
            out[b, i, h, e] = c0


@kernel()
def _attention_backward_pairs(d_z, q, k, v, pattern, scale, d_q, d_k, d_v, bh0, bh1):
    """The backward of the (b, h) pairs bh0 <= b * H + h < bh1 (each owns d_q/d_k/d_v[b,:,h])."""
    B, T, H, E = q.shape
    zero = scale - scale                                         # 0 in the arrays' dtype
    one = scale / scale                                          # 1 in the arrays' dtype (scale > 0)
    d_q_in_tiles = E % 16 == 0                                   # _tile_sum_keys's 16 dims per pass
    kT = np.empty((E, T), dtype=q.dtype)                         # k[b, :, h]^T
    vT = np.empty((E, T), dtype=q.dtype)                         # v[b, :, h]^T
    d_kT = np.empty((E, T), dtype=q.dtype)                       # d_k[b, :, h]^T, summed over blocks
    d_vT = np.empty((E, T), dtype=q.dtype)                       # d_v[b, :, h]^T, summed over blocks
    d_s = np.zeros((ROWS, T), dtype=q.dtype)                     # the block's rows of d_p, then d_s
    dz = np.zeros((ROWS, E), dtype=q.dtype)                      # the block's d_z rows (0 past T)
    qr = np.zeros((ROWS, E), dtype=q.dtype)                      # the block's q rows (0 past T)
    no_row = np.zeros(T, dtype=q.dtype)                          # pattern row of a row past T
    for bh in range(bh0, bh1):
        b = bh // H
        h = bh - b * H
        for j in range(T):
            for e in range(E):
                kT[e, j] = k[b, j, h, e]
                vT[e, j] = v[b, j, h, e]
        for e in range(E):
            for j in range(T):
                d_kT[e, j] = zero
                d_vT[e, j] = zero
        for i0 in range(0, T, ROWS):                             # query rows i0 <= i < i0 + rows
            rows = min(ROWS, T - i0)                             # rows past T count as zero rows
            n = min(T, (i0 + rows + SIMD - 1) // SIMD * SIMD)    # keys j <= the last row, padded
            for r in range(ROWS):
                for e in range(E):
                    dz[r, e] = d_z[b, i0 + r, h, e] if r < rows else zero
                    qr[r, e] = q[b, i0 + r, h, e] if r < rows else zero
                if r >= rows:                                    # (qr[r] = 0 already gives these
                    for j in range(T):                           # rows no weight; zeroing them
                        d_s[r, j] = zero                         # also keeps an old NaN out: 0 NaN = NaN)
            p0 = pattern[b, h, i0]                               # [T] rows, in place
            p1 = pattern[b, h, i0 + 1] if rows > 1 else no_row
            p2 = pattern[b, h, i0 + 2] if rows > 2 else no_row
            p3 = pattern[b, h, i0 + 3] if rows > 3 else no_row
            p4 = pattern[b, h, i0 + 4] if rows > 4 else no_row
            p5 = pattern[b, h, i0 + 5] if rows > 5 else no_row
            p6 = pattern[b, h, i0 + 6] if rows > 6 else no_row
            p7 = pattern[b, h, i0 + 7] if rows > 7 else no_row
            # forward: z = p @ v          ->  d_v += p^T @ d_z,  d_p = d_z @ v^T
            _add_outer(d_vT, p0, p1, p2, p3, p4, p5, p6, p7, dz, n)
            r = 0                                                # d_s[r, :n] = d_p rows: in tiles of 4,
            while r + TILE <= rows:                              # the 0-3 rows left by _rows_times_T
                _tile_dot_keys(d_s[r], d_s[r + 1], d_s[r + 2], d_s[r + 3],
                               dz[r], dz[r + 1], dz[r + 2], dz[r + 3], vT, n, one, zero)
                r += TILE
            _rows_times_T(d_s[r:], dz[r:], vT, rows - r, n, zero)
            # forward: p = softmax(s)     ->  d_s = p * (d_p - sum_j d_p p), in place; times the
            # forward's scale 1/sqrt(E) here, so that neither product below needs it
            for r in range(rows):
                ds, p = d_s[r], pattern[b, h, i0 + r]            # [T], [T]
                dot = zero
                for j in range(n):
                    dot += ds[j] * p[j]
                for j in range(n):
                    ds[j] = p[j] * (ds[j] - dot) * scale
            # forward: s = q @ k^T / sqrt(E)  ->  d_q = d_s @ k,  d_k += d_s^T @ q
            r = 0                                                # d_q rows: in tiles when E % 16 == 0,
            while r + TILE <= rows and d_q_in_tiles:             # the rest by _rows_dot_T
                _tile_sum_keys(d_q, b, i0 + r, h, d_s[r], d_s[r + 1], d_s[r + 2], d_s[r + 3], k, n, zero)
                r += TILE
            _rows_dot_T(d_q, b, i0 + r, h, d_s[r:], kT, rows - r, n, zero)
            _add_outer(d_kT, d_s[0], d_s[1], d_s[2], d_s[3], d_s[4], d_s[5], d_s[6], d_s[7], qr, n)
        for j in range(T):
            for e in range(E):
                d_k[b, j, h, e] = d_kT[e, j]
                d_v[b, j, h, e] = d_vT[e, j]


def attention_backward_loops(d_z, q, k, v, pattern, scale, d_q, d_k, d_v):
    """Fill d_q, d_k, d_v [B,T,H,E] (C-contiguous, one dtype; checked by the caller): the
    (b, h) pairs in chunks on minih's thread pool (threads.run_chunks)."""
    B, T, H, E = q.shape
    run_chunks(B * H, lambda bh0, bh1: _attention_backward_pairs(
        d_z, q, k, v, pattern, scale, d_q, d_k, d_v, bh0, bh1))
