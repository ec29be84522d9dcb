"""Numba twins of minih.ops.attention: projections, smeared keys, causal attention, output.

Where the time goes (REF, one training step; docs/04_numba.md): the projections,
the output projection and the unembedding are plain big matrix products, and for
those BLAS (numpy's `@`, OpenBLAS) *is* the right kernel: a hand-written loop
would only be slower. So project_*, output_* and head_results reshape and call
BLAS (through minih/kernels/blas.py, which splits a big product over the threads).
The causal attention itself is not a plain matmul (a triangle per (b, h),
a softmax in the middle), so it gets its own kernels, each over a range of (batch,
head) pairs [bh0, bh1) that threads.run_chunks hands out to the threads: each (b, h)
pair owns its slice of every output, so no two threads write the same element. The
forward works on blocks of ROW_BLOCK query rows (the reference's blocks): it computes
scores and softmax in its own loops, row by row, then the block's `pattern @ v` in
BLAS, on the blocks where they lie in the big arrays (kernels/gemm.py: no copies); on
CPUs without AVX-512 (FORWARD below), when d_head is a multiple of 16, it works on tiles
of 4 query rows instead, both products as register tiles (kernels/attention_tiles.py).
The backward has two kernels and the CPU chooses (BACKWARD below): on AVX-512, the
same blocks with its four products as BLAS calls and the softmax backward fused between
them; elsewhere, loops over keys (kernels/attention_loops.py).

Shape legend: B = batch, T = positions (query i, key j), D = d_model, H = n_heads, E = d_head
"""
import numpy as np

from ..ops.attention import ROW_BLOCK
from ._jit import as_floats, exp_shifted_f32, expect_shape, kernel, row_max_f32
from .attention_loops import attention_backward_loops
from .attention_tiles import TILE, _tile_dot_keys, _tile_sum_keys
from .blas import matmul, matmul_tn
from ..threads import run_chunks
from .gemm import gemm


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
# Forward: per (b, h) the kernel copies k into transposed scratch kT [E, T], so that the
# score loops run over key positions j with unit stride: LLVM turns them into SIMD
# code (16 float32 per AVX-512 register; on Intel's AVX-512 cores LLVM's tuning uses
# 256-bit registers, 8 float32, unless told otherwise: docs/04_numba.md, the Intel
# figures). They stop at the end of the 16-wide block that holds j = i (n_pad below):
# the masked half of each [T, T] square is never computed, and the few extra columns
# j > i in the last block cost less than the scalar tail loop LLVM would otherwise run.
# The softmax itself only visits j <= i; pattern is 0 and scores are -inf beyond, so the
# block's `pattern @ v` (BLAS, over keys j < i1) adds exact zeros there.

SIMD = 16   # float32 lanes of one AVX-512 register: rows are padded to a multiple of this


@kernel()
def _row_scores(row, q, b, i, h, kT, scale, n_pad):
    """Pass 1: row[j] = q[b,i,h] . k[b,j,h] * scale for j < n_pad (scale = 1/sqrt(E)),
    with kT = k[b,:,h].T [E, T].

    Each loop over j does several dimensions e at once: sixteen for the first block, which
    writes the row (no zero-fill, no re-read), then eight, four, one, which add to it. The
    sixteen products of a block cost as many loads of kT, so the one read and write of the
    row per block is what the blocking saves. All loops run over j with unit stride: SIMD.
    """
    E = kT.shape[0]
    e0 = 0
    if E >= 16:
        q0, q1 = q[b, i, h, 0] * scale, q[b, i, h, 1] * scale
        q2, q3 = q[b, i, h, 2] * scale, q[b, i, h, 3] * scale
        q4, q5 = q[b, i, h, 4] * scale, q[b, i, h, 5] * scale
        q6, q7 = q[b, i, h, 6] * scale, q[b, i, h, 7] * scale
        q8, q9 = q[b, i, h, 8] * scale, q[b, i, h, 9] * scale
        q10, q11 = q[b, i, h, 10] * scale, q[b, i, h, 11] * scale
        q12, q13 = q[b, i, h, 12] * scale, q[b, i, h, 13] * scale
        q14, q15 = q[b, i, h, 14] * scale, q[b, i, h, 15] * scale
        k0, k1, k2, k3, k4, k5, k6, k7 = kT[0], kT[1], kT[2], kT[3], kT[4], kT[5], kT[6], kT[7]
        k8, k9, k10, k11 = kT[8], kT[9], kT[10], kT[11]
        k12, k13, k14, k15 = kT[12], kT[13], kT[14], kT[15]
        for j in range(n_pad):
            row[j] = ((q0 * k0[j] + q1 * k1[j] + q2 * k2[j] + q3 * k3[j]
                       + q4 * k4[j] + q5 * k5[j] + q6 * k6[j] + q7 * k7[j])
                      + (q8 * k8[j] + q9 * k9[j] + q10 * k10[j] + q11 * k11[j]
                         + q12 * k12[j] + q13 * k13[j] + q14 * k14[j] + q15 * k15[j]))
        e0 = 16
    else:
        for j in range(n_pad):
            row[j] = scale - scale                               # 0 in the row's dtype
    while e0 + 8 <= E:
        q0, q1 = q[b, i, h, e0] * scale, q[b, i, h, e0 + 1] * scale
        q2, q3 = q[b, i, h, e0 + 2] * scale, q[b, i, h, e0 + 3] * scale
        q4, q5 = q[b, i, h, e0 + 4] * scale, q[b, i, h, e0 + 5] * scale
        q6, q7 = q[b, i, h, e0 + 6] * scale, q[b, i, h, e0 + 7] * scale
        k0, k1, k2, k3 = kT[e0], kT[e0 + 1], kT[e0 + 2], kT[e0 + 3]
        k4, k5, k6, k7 = kT[e0 + 4], kT[e0 + 5], kT[e0 + 6], kT[e0 + 7]
        for j in range(n_pad):
            row[j] += (q0 * k0[j] + q1 * k1[j] + q2 * k2[j] + q3 * k3[j]
                       + q4 * k4[j] + q5 * k5[j] + q6 * k6[j] + q7 * k7[j])
        e0 += 8
    while e0 + 4 <= E:
        q0, q1 = q[b, i, h, e0] * scale, q[b, i, h, e0 + 1] * scale
        q2, q3 = q[b, i, h, e0 + 2] * scale, q[b, i, h, e0 + 3] * scale
        k0, k1, k2, k3 = kT[e0], kT[e0 + 1], kT[e0 + 2], kT[e0 + 3]
        for j in range(n_pad):
            row[j] += q0 * k0[j] + q1 * k1[j] + q2 * k2[j] + q3 * k3[j]
        e0 += 4
    for e in range(e0, E):                                       # the dimensions left
        q_ie = q[b, i, h, e] * scale
        k_e = kT[e]
        for j in range(n_pad):
            row[j] += q_ie * k_e[j]


@kernel()
def _row_softmax(row, n, fast_exp, zero):
    """Pass 2: row[:n] = softmax(row[:n]) (row max subtracted), row[n:] = 0 (`zero`, 0 in
    the row's dtype).

    In float32 both the max and the exp are vectorised helpers of _jit.py: LLVM would
    compile `max(m, row[j])` and np.exp(...) one element at a time (see their docstrings).
    """
    if fast_exp:                                                 # float32
        m = row_max_f32(row, n)
        total = exp_shifted_f32(row, n, m)
    else:
        m = row[0]
        for j in range(1, n):
            m = max(m, row[j])
        total = zero
        for j in range(n):
            row[j] = np.exp(row[j] - m)
            total += row[j]
    inv = 1 / total
    for j in range(row.shape[0]):                                # normalise; 0 for j >= n
        row[j] = row[j] * inv if j < n else zero


@kernel()
def _keep_scores(out, row, n):
    """out[:n] = row[:n], -inf beyond: one query row's scores (keys j < n = i + 1), copied
    before the softmax overwrites the row (both forwards, when scores are asked for)."""
    for j in range(n):
        out[j] = row[j]
    for j in range(n, out.shape[0]):
        out[j] = -np.inf


@kernel()
def _attention_forward(q, k, v, scale, z, pattern, scores, with_scores, fast_exp, row_block,
                       bh0, bh1):
    B, T, H, E = q.shape
    zero = scale - scale                                         # 0 in the arrays' dtype
    for bh in range(bh0, bh1):                                   # (b, h) owns z[b,:,h], pattern[b,h]
        b = bh // H
        h = bh - b * H
        kT = np.empty((E, T), dtype=q.dtype)                     # [E, T]
        for j in range(T):
            for e in range(E):
                kT[e, j] = k[b, j, h, e]
        for i0 in range(0, T, row_block):                        # query rows i0 <= i < i1 ..
            i1 = min(T, i0 + row_block)                          # .. see keys j < i1 only
            for i in range(i0, i1):
                n = i + 1                                        # keys j = 0..i
                n_pad = min(T, (n + SIMD - 1) // SIMD * SIMD)    # .. to the end of i's SIMD block
                row = pattern[b, h, i]                           # [T]
                _row_scores(row, q, b, i, h, kT, scale, n_pad)   # row[:n_pad] = scores[i, :n_pad]
                if with_scores:
                    _keep_scores(scores[b, h, i], row, n)
                _row_softmax(row, n, fast_exp, zero)             # row = pattern[i], 0 for j > i
            # pass 3 for the block, in BLAS:
            # z[b, i0:i1, h] = pattern[b, h, i0:i1, :i1] @ v[b, :i1, h]
            gemm(1, pattern[b, h, i0:i1, :i1], v[b, :i1, h], 0, z[b, i0:i1, h],
                 trans_a=False, trans_b=False)


@kernel()
def _attention_forward_tiles(q, k, v, scale, z, pattern, scores, with_scores, fast_exp, bh0, bh1):
    """The forward in tiles of TILE = 4 query rows (kernels/attention_tiles.py; E % 16 == 0)."""
    B, T, H, E = q.shape
    zero = scale - scale                                         # 0 in the arrays' dtype
    kT = np.empty((E, T), dtype=q.dtype)                         # [E, T]
    for bh in range(bh0, bh1):                                   # (b, h) owns z[b,:,h], pattern[b,h]
        b = bh // H
        h = bh - b * H
        for j in range(T):
            for e in range(E):
                kT[e, j] = k[b, j, h, e]
        for i0 in range(0, T, TILE):                             # query rows i0 <= i < i0 + rows ..
            rows = min(TILE, T - i0)
            n_pad = min(T, (i0 + rows + SIMD - 1) // SIMD * SIMD)  # .. see keys j < n_pad
            p0 = pattern[b, h, i0]                               # [T] rows of the tile
            if rows == TILE:
                p1, p2, p3 = pattern[b, h, i0 + 1], pattern[b, h, i0 + 2], pattern[b, h, i0 + 3]
                _tile_dot_keys(p0, p1, p2, p3, q[b, i0, h], q[b, i0 + 1, h], q[b, i0 + 2, h],
                               q[b, i0 + 3, h], kT, n_pad, scale, zero)
            else:                                                # the last rows, when T % 4 != 0:
                for i in range(i0, T):                           # plain loops (fewer to compile)
                    for j in range(n_pad):
                        acc = zero
                        for e in range(E):
                            acc += q[b, i, h, e] * kT[e, j]
                        pattern[b, h, i, j] = acc * scale
            for i in range(i0, i0 + rows):
                row = pattern[b, h, i]                           # [T]: scores[i, :n_pad] so far
                if with_scores:
                    _keep_scores(scores[b, h, i], row, i + 1)
                _row_softmax(row, i + 1, fast_exp, zero)         # row = pattern[i], 0 for j > i
            if rows == TILE:
                _tile_sum_keys(z, b, i0, h, p0, p1, p2, p3, v, i0 + TILE, zero)  # keys j <= its last row
            else:
                for i in range(i0, T):
                    for e in range(E):
                        acc = zero
                        for j in range(i + 1):
                            acc += pattern[b, h, i, j] * v[b, j, h, e]
                        z[b, i, h, e] = acc


def _check_qkv(q, k, v):
    q, k, v = as_floats("q k v", q, k, v)
    if q.ndim != 4:
        raise ValueError(f"q must be [B, T, H, E], got shape {q.shape}")
    expect_shape("k", k, q.shape)
    expect_shape("v", v, q.shape)
    return q, k, v


def attention_forward(q, k, v, with_scores=True):
    """Numba twin of minih.ops.attention.attention_forward, fused over the causal softmax.

    q, k, v [B,T,H,E] -> z [B,T,H,E], pattern [B,H,T,T], scores [B,H,T,T]
    scores[b,h,i,j] = q[b,i,h] . k[b,j,h] / sqrt(E) for j <= i, -inf for j > i;
    pattern = softmax(scores) over j; z[b,i,h] = sum_j pattern[b,h,i,j] v[b,j,h].
    with_scores=False returns scores=None and skips writing them (training does not
    read them; the reference accepts the same flag). FORWARD (below) says which kernel
    computes it: "tiles" (when E % 16 == 0) or "blas", the row-by-row kernel.
    """
    q, k, v = _check_qkv(q, k, v)
    B, T, H, E = q.shape
    z = np.empty_like(q)
    # np.empty, not np.zeros: the kernel writes every entry (zeros above the diagonal), in
    # parallel; np.zeros of a recycled heap block would be a serial memset first
    pattern = np.empty((B, H, T, T), dtype=q.dtype)
    scores = np.empty((B, H, T, T) if with_scores else (1, 1, 1, 1), dtype=q.dtype)
    scale = q.dtype.type(1 / np.sqrt(E))
    fast_exp = q.dtype == np.float32
    if FORWARD == "tiles" and E % 16 == 0:
        run_chunks(B * H, lambda bh0, bh1: _attention_forward_tiles(
            q, k, v, scale, z, pattern, scores, with_scores, fast_exp, bh0, bh1))
    else:
        run_chunks(B * H, lambda bh0, bh1: _attention_forward(
            q, k, v, scale, z, pattern, scores, with_scores, fast_exp, ROW_BLOCK, bh0, bh1))
    return z, pattern, (scores if with_scores else None)


@kernel()
def _attention_backward(d_z, q, k, v, pattern, scale, d_q, d_k, d_v, row_block, bh0, bh1):
    B, T, H, E = q.shape
    n_blocks = (T + row_block - 1) // row_block
    for bh in range(bh0, bh1):                                   # (b, h) owns d_q/d_k/d_v[b,:,h]
        b = bh // H
        h = bh - b * H
        d_buf = np.empty(row_block * T, dtype=q.dtype)
        # the last block first: its rows see every key, so it writes all of d_k and d_v
        # (BLAS's beta = 0), and the blocks above it add to them (beta = 1)
        for blk in range(n_blocks - 1, -1, -1):
            i0 = blk * row_block                                 # query rows i0 <= i < i1 ..
            i1 = min(T, i0 + row_block)                          # .. see keys j < i1 only
            R = i1 - i0
            beta = 0 if blk == n_blocks - 1 else 1               # write, or add to, d_k and d_v
            p = pattern[b, h, i0:i1, :i1]                        # [R, i1] block, in place
            d_p = d_buf[:R * i1].reshape(R, i1)                  # [R, i1]
            # forward: z = p @ v          ->  d_p = d_z @ v^T,  d_v += p^T @ d_z
            gemm(1, d_z[b, i0:i1, h], v[b, :i1, h], 0, d_p, trans_a=False, trans_b=True)
            gemm(1, p, d_z[b, i0:i1, h], beta, d_v[b, :i1, h], trans_a=True, trans_b=False)
            # forward: p = softmax(s)     ->  d_s = p * (d_p - sum_j d_p p), in place on d_p
            for r in range(R):
                p_r, d_r = pattern[b, h, i0 + r], d_p[r]         # [T], [i1] rows (contiguous)
                dot = p_r[0] * d_r[0]
                for j in range(1, i1):
                    dot += p_r[j] * d_r[j]
                for j in range(i1):
                    d_r[j] = p_r[j] * (d_r[j] - dot)
            # forward: s = q @ k^T / sqrt(E)  ->  d_q = d_s @ k / sqrt(E),  d_k += d_s^T @ q / sqrt(E)
            gemm(scale, d_p, k[b, :i1, h], 0, d_q[b, i0:i1, h], trans_a=False, trans_b=False)
            gemm(scale, d_p, q[b, i0:i1, h], beta, d_k[b, :i1, h], trans_a=True, trans_b=False)


def _cpu_has_avx512() -> bool:
    """Whether this CPU has AVX-512 (its avx512f flag, read through llvmlite)."""
    from llvmlite import binding
    return bool(binding.get_host_cpu_features().get("avx512f", False))


# The backward's four products per (b, h) are thin (d_head = 16 on one side). OpenBLAS has
# small-matrix kernels for such products on AVX-512 only: there the BLAS kernel above beats
# the loops of attention_loops.py (the project's Zen 4 machine: 14.1 against 17.4 ms per
# REF layer on 2 threads); on AVX2 the loops are faster (the project's Zen 3 machine).
# docs/04_numba.md has both measurements. The flag stands in for what matters, which
# kernel scipy's OpenBLAS picks for this CPU. Not a setting: both kernels give the
# reference's numbers (tests/test_kernels.py runs both).
HAS_AVX512 = _cpu_has_avx512()                   # read once, at import
BACKWARD = "blas" if HAS_AVX512 else "loops"
# The forward likewise: "tiles" (attention_tiles.py, E % 16 == 0; 5-10% faster than the
# row-by-row kernel on the project's Zen 3 machine, docs/04_numba.md) where there is no
# AVX-512; "blas", the row-by-row kernel with `pattern @ v` in BLAS, where there is (the
# tiles use half of a 512-bit register there: on the project's Intel Xeon machine both
# forwards took the same time, 2.07-2.28 ms a REF shard, docs/04_numba.md).
FORWARD = "blas" if HAS_AVX512 else "tiles"


def attention_backward(d_z, q, k, v, pattern):
    """Numba twin of minih.ops.attention.attention_backward.

    d_z [B,T,H,E], q, k, v [B,T,H,E], pattern [B,H,T,T] -> d_q, d_k, d_v [B,T,H,E].
    Per (b, h), with p = pattern (0 above the diagonal, as the forward writes it):
        d_p = d_z @ v^T,  d_v = p^T @ d_z,  d_s = p * (d_p - sum_j d_p p),
        d_q = d_s @ k / sqrt(E),  d_k = d_s^T @ q / sqrt(E).
    BACKWARD says which kernel computes it (see above): "blas", per (b, h) and block of
    ROW_BLOCK query rows, the four products as BLAS calls on the blocks where they lie
    (kernels/gemm.py: scipy's OpenBLAS, which also reads OPENBLAS_NUM_THREADS; set it to
    1 for long sequences, as the command line does, so that its threads do not nest
    inside Numba's), the softmax backward a fused loop between them; or "loops", every
    product a loop over keys (minih/kernels/attention_loops.py).
    """
    q, k, v = _check_qkv(q, k, v)
    d_z, pattern = as_floats("d_z pattern", d_z, pattern)
    B, T, H, E = q.shape
    expect_shape("d_z", d_z, q.shape)
    expect_shape("pattern", pattern, (B, H, T, T))
    if d_z.dtype != q.dtype or pattern.dtype != q.dtype:
        raise ValueError(f"d_z, pattern and q must share one dtype, got {d_z.dtype}, "
                         f"{pattern.dtype}, {q.dtype}")
    d_q, d_k, d_v = np.empty_like(q), np.empty_like(q), np.empty_like(q)
    scale = q.dtype.type(1 / np.sqrt(E))
    if BACKWARD == "loops":
        attention_backward_loops(d_z, q, k, v, pattern, scale, d_q, d_k, d_v)
    else:
        run_chunks(B * H, lambda bh0, bh1: _attention_backward(
            d_z, q, k, v, pattern, scale, d_q, d_k, d_v, ROW_BLOCK, bh0, bh1))
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
