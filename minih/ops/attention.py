"""Attention, op by op: projections, smeared keys, causal softmax attention, output.

Forward of one layer (CONVENTIONS.md), heads kept separate as in TransformerLens:
    q = qk_in @ W_Q[h],  k = qk_in @ W_K[h],  v = h_in @ W_V[h]        project_forward
    k'[j] = s*k[j] + (1-s)*k[j-1]  (smeared keys only)                   smear_forward
    scores = q @ k'^T / sqrt(E), causal mask, pattern = softmax(scores)  attention_forward
    z = pattern @ v   (and lse, each row's log-sum-exp: pattern = exp(scores - lse))
    the scores and pattern themselves, for the cache                     attention_pattern
    attn_out = sum_h z_h @ W_O[h]                                        output_forward
Derivations of every backward: docs/02_backward.md.
"""
import numpy as np


# --- 1. projections ----------------------------------------------------------------

def project_forward(x, W):
    """out[b,t,h,e] = sum_d x[b,t,d] W[h,d,e]    x [B,T,D], W [H,D,E] -> [B,T,H,E]"""
    return np.tensordot(x, W, axes=([2], [1]))                   # einsum("btd,hde->bthe")


def project_backward(d_out, x, W):
    """Gradients for `out = einsum("btd,hde->bthe", x, W)`: -> d_x [B,T,D], d_W [H,D,E]"""
    d_x = np.tensordot(d_out, W, axes=([2, 3], [0, 2]))          # einsum("bthe,hde->btd")
    d_W = np.tensordot(x, d_out, axes=([0, 1], [0, 1]))          # [D,H,E] = einsum("btd,bthe->dhe")
    return d_x, d_W.transpose(1, 0, 2)                           # [H,D,E]


# --- 2. smeared keys (induction-heads paper, Argument 2) ----------------------------

def sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def smear_forward(k, smear):
    """k'[j] = s*k[j] + (1-s)*k[j-1] for j >= 1, k'[0] = k[0], s = sigmoid(smear[h]).

    k [B,T,H,E], smear [H] (one logit per head) -> k' [B,T,H,E]
    """
    s = sigmoid(smear)[:, None]                                  # [H, 1]
    k_s = k.copy()
    k_s[:, 1:] = s * k[:, 1:] + (1 - s) * k[:, :-1]              # [B,T-1,H,E]
    return k_s


def smear_backward(d_ks, k, smear):
    """Gradients for `smear_forward`: d_ks [B,T,H,E] -> d_k [B,T,H,E], d_smear [H].

    k[j] reaches k'[j] with weight s (weight 1 for j = 0) and k'[j+1] with weight 1-s.
    """
    s = sigmoid(smear)                                           # [H]
    sE = s[:, None]                                              # [H, 1]
    # forward: k'[j] = s*k[j] + (1-s)*k[j-1]   (j >= 1);   k'[0] = k[0]
    d_k = d_ks.copy()
    d_k[:, 1:] *= sE
    d_k[:, :-1] += (1 - sE) * d_ks[:, 1:]
    # d k'[j] / d s = k[j] - k[j-1];  d s / d smear = s (1 - s)
    d_s = np.einsum("bthe,bthe->h", d_ks[:, 1:], k[:, 1:] - k[:, :-1])
    return d_k, d_s * s * (1 - s)


# --- 3. causal softmax attention ----------------------------------------------------
#
# The forward keeps, for each query row, one number instead of the row of the pattern:
#     lse[b,h,i] = log sum_{j <= i} exp(scores[b,h,i,j])      (the log of the softmax's sum)
# so that pattern[b,h,i,j] = exp(scores[b,h,i,j] - lse[b,h,i]). The backward recomputes
# the pattern from q, k and lse rather than reading a stored [B,H,T,T] array: that array
# is 67 MB per layer for a REF batch, and in the Numba twin writing it to memory and
# reading it back cost more than computing it again (FlashAttention's choice, Dao et al.
# 2022; docs/04_numba.md has the measurements). This reference does the same so that it
# shows what the twin computes; in NumPy the recompute is slightly slower than storing.
# The pattern that interpretability reads (hook_pattern) comes from attention_pattern,
# the same formula.

ROW_BLOCK = 64            # query rows per block
BLOCK_ELEMENTS = 2 ** 17  # entries in one block's [b,H,rows,keys] arrays (512 KB in float32)


def _row_blocks(T):
    """(i0, i1) for each block of ROW_BLOCK query rows i0 <= i < i1. Those rows see keys
    j < i1 only, so the all-masked rectangle right of column i1 is never computed
    (T = 256: 6 of the 16 tiles of the [T, T] square, all above the diagonal)."""
    return [(i0, min(T, i0 + ROW_BLOCK)) for i0 in range(0, T, ROW_BLOCK)]


def _batch_chunks(B, T, H):
    """(b0, b1): as many sequences at a time as keep a block's arrays within BLOCK_ELEMENTS,
    and at least one (REF: one sequence; a small model with T = 32: dozens, so the loop
    stays short; one sequence of a long context may exceed it)."""
    n = max(1, BLOCK_ELEMENTS // max(1, H * min(T, ROW_BLOCK) * T))
    return [(b0, min(B, b0 + n)) for b0 in range(0, B, n)]


def _block_scores(qh, kh, i0, i1, future):
    """scores[..., i0:i1, :i1] of a block: q k^T / sqrt(E), -inf where key j > query i.
    qh [b,H,T,E] (already divided by sqrt(E)), kh [b,H,T,E] -> [b,H,rows,keys]"""
    s = qh[:, :, i0:i1] @ kh[:, :, :i1].transpose(0, 1, 3, 2)
    s += future[i0:i1, :i1]
    return s


def _causal_mask(T, dtype):
    """[T,T]: 0 where key j <= query i, -inf where j > i (the future)."""
    return np.triu(np.full((T, T), -np.inf, dtype=dtype), k=1)


def attention_forward(q, k, v):
    """Causal softmax attention for every (batch, head).

    q, k, v [B,T,H,E] -> z [B,T,H,E], lse [B,H,T]
    scores[b,h,i,j] = q[b,i,h] . k[b,j,h] / sqrt(E) for j <= i, -inf for j > i;
    pattern = softmax(scores) over j (0 for j > i); z[b,i,h] = sum_j pattern[b,h,i,j] v[b,j,h];
    lse[b,h,i] = log sum_j exp(scores[b,h,i,j]), so pattern = exp(scores - lse).

    Computed in blocks: a few sequences b0 <= b < b1 and one block of query rows at a
    time, so that each block's [b,H,rows,keys] arrays stay in the CPU cache, where a
    whole-batch [B,H,T,T] array (67 MB in REF) would go to memory and back once per
    line below (docs/04_numba.md, "The numpy backend").
    """
    B, T, H, E = q.shape
    z = np.empty_like(q)
    lse = np.empty((B, H, T), dtype=q.dtype)
    future = _causal_mask(T, q.dtype)
    q = q / np.sqrt(E).astype(q.dtype)                           # 1/sqrt(E) on q, not on the T x T scores
    for b0, b1 in _batch_chunks(B, T, H):
        qh, kh, vh = (a[b0:b1].transpose(0, 2, 1, 3) for a in (q, k, v))   # [b,H,T,E]
        for i0, i1 in _row_blocks(T):
            s = _block_scores(qh, kh, i0, i1, future)            # [b,H,rows,keys]
            # softmax over keys, subtracting the row max (always finite: j = i is allowed)
            m = s.max(axis=-1, keepdims=True)                    # [b,H,rows,1]
            s -= m
            np.exp(s, out=s)                                     # 0 where masked
            total = s.sum(axis=-1, keepdims=True)                # [b,H,rows,1]
            s *= 1 / total                                       # s = pattern[..., i0:i1, :i1]
            lse[b0:b1, :, i0:i1] = (m + np.log(total))[..., 0]
            z[b0:b1, i0:i1] = (s @ vh[:, :, :i1]).transpose(0, 2, 1, 3)  # [b,rows,H,E]
    return z, lse


def attention_pattern(q, k, lse):
    """The forward's scores and pattern, for the cache (hook_attn_scores, hook_pattern).

    q, k [B,T,H,E], lse [B,H,T] from attention_forward -> scores, pattern [B,H,T,T]
    scores[b,h,i,j] = q[b,i,h] . k[b,j,h] / sqrt(E) (-inf for j > i);
    pattern = exp(scores - lse) (0 for j > i).
    """
    B, T, H, E = q.shape
    scores = np.empty((B, H, T, T), dtype=q.dtype)
    future = _causal_mask(T, q.dtype)
    q = q / np.sqrt(E).astype(q.dtype)
    for b0, b1 in _batch_chunks(B, T, H):
        qh, kh = (a[b0:b1].transpose(0, 2, 1, 3) for a in (q, k))   # [b,H,T,E]
        for i0, i1 in _row_blocks(T):
            scores[b0:b1, :, i0:i1, :i1] = _block_scores(qh, kh, i0, i1, future)
            scores[b0:b1, :, i0:i1, i1:] = -np.inf               # the skipped rectangle
    pattern = np.exp(scores - lse[..., None])                    # 0 where scores = -inf
    return scores, pattern


def attention_backward(d_z, q, k, v, z, lse):
    """Gradients for `attention_forward`: d_z [B,T,H,E] -> d_q, d_k, d_v [B,T,H,E].

    Takes the forward's inputs and outputs: q, k, v, z [B,T,H,E], lse [B,H,T].
    Per (b, h), with s = scores and p = pattern, recomputed as p = exp(s - lse):
        z = p @ v                 ->  d_p = d_z @ v^T,  d_v = p^T @ d_z
        p = softmax(s) by rows    ->  d_s = p * (d_p - sum_j d_p * p)
        s = q @ k^T / sqrt(E)     ->  d_q = d_s @ k / sqrt(E),  d_k = d_s^T @ q / sqrt(E)
    The row sums need no [T, T] product: sum_j d_p[i,j] p[i,j] = sum_j (d_z[i] . v[j]) p[i,j]
    = d_z[i] . z[i] (FlashAttention-2's D). Masked entries have p = 0 (the recomputed
    scores are -inf there), so they get no gradient. Blocked like the forward; d_k and d_v
    sum over the row blocks. q / sqrt(E) serves the recomputed scores and d_k alike.
    """
    B, T, H, E = q.shape
    d_q = np.empty_like(q)
    d_k, d_v = np.zeros_like(k), np.zeros_like(v)
    root_E = np.sqrt(E).astype(q.dtype)
    future = _causal_mask(T, q.dtype)
    dot = np.einsum("bthe,bthe->bht", d_z, z)                    # [B,H,T] sum_j d_p p, per row
    q = q / root_E                                               # as the forward's scores use it
    for b0, b1 in _batch_chunks(B, T, H):
        qh, kh, vh, d_zh = (a[b0:b1].transpose(0, 2, 1, 3) for a in (q, k, v, d_z))  # [b,H,T,E]
        for i0, i1 in _row_blocks(T):
            # the forward's pattern, recomputed: p = exp(s - lse)
            p = _block_scores(qh, kh, i0, i1, future)            # [b,H,rows,keys]
            p -= lse[b0:b1, :, i0:i1, None]
            np.exp(p, out=p)
            d_zi = d_zh[:, :, i0:i1]                             # [b,H,rows,E]
            # forward: z = p @ v
            d_p = d_zi @ vh[:, :, :i1].transpose(0, 1, 3, 2)     # [b,H,rows,keys]
            d_v[b0:b1, :i1] += (p.transpose(0, 1, 3, 2) @ d_zi).transpose(0, 2, 1, 3)
            # forward: p = softmax(s) over keys (in place on d_p)
            d_s = d_p
            d_s -= dot[b0:b1, :, i0:i1, None]
            d_s *= p
            # forward: s = q @ k^T / sqrt(E)   (qh already holds q / sqrt(E))
            d_q[b0:b1, i0:i1] = (d_s @ kh[:, :, :i1]).transpose(0, 2, 1, 3) / root_E
            d_k[b0:b1, :i1] += (d_s.transpose(0, 1, 3, 2) @ qh[:, :, i0:i1]).transpose(0, 2, 1, 3)
    return d_q, d_k, d_v


# --- 4. output projection -------------------------------------------------------------

def output_forward(z, W_O):
    """attn_out[b,t] = sum_h z[b,t,h] @ W_O[h]    z [B,T,H,E], W_O [H,E,D] -> [B,T,D]"""
    return np.tensordot(z, W_O, axes=([2, 3], [0, 1]))           # einsum("bthe,hed->btd")


def head_results(z, W_O):
    """Each head's write to the residual stream (hook_result): [B,T,H,E] -> [B,T,H,D]"""
    return np.einsum("bthe,hed->bthd", z, W_O)


def output_backward(d_out, z, W_O):
    """Gradients for `output_forward`: d_out [B,T,D] -> d_z [B,T,H,E], d_W_O [H,E,D]"""
    d_z = np.tensordot(d_out, W_O, axes=([2], [2]))              # einsum("btd,hed->bthe")
    d_W_O = np.tensordot(z, d_out, axes=([0, 1], [0, 1]))        # einsum("bthe,btd->hed")
    return d_z, d_W_O
