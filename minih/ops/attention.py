"""Attention, op by op: projections, smeared keys, causal softmax attention, output.

Forward of one layer (CONVENTIONS.md), heads kept separate as in TransformerLens:
    q = qk_in @ W_Q[h],  k = qk_in @ W_K[h],  v = h_in @ W_V[h]        project_forward
    k'[j] = s*k[j] + (1-s)*k[j-1]  (smeared keys only)                   smear_forward
    scores = q @ k'^T / sqrt(E), causal mask, pattern = softmax(scores)  attention_forward
    z = pattern @ v
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

def attention_forward(q, k, v, with_scores=True):
    """Causal softmax attention for every (batch, head).

    q, k, v [B,T,H,E] -> z [B,T,H,E], pattern [B,H,T,T], scores [B,H,T,T]
    scores[b,h,i,j] = q[b,i,h] . k[b,j,h] / sqrt(E) for j <= i, -inf for j > i.
    with_scores=False returns scores=None: training does not keep them, and the
    Numba twin then skips writing them.
    """
    E = q.shape[-1]
    T = q.shape[1]
    qh, kh, vh = (a.transpose(0, 2, 1, 3) for a in (q, k, v))   # [B,H,T,E]
    # 1/sqrt(E) applied to q [B,H,T,E], not to the 16x larger scores
    scores = (qh / np.sqrt(E).astype(q.dtype)) @ kh.transpose(0, 1, 3, 2)  # [B,H,T,T]
    future = np.triu(np.full((T, T), -np.inf, dtype=q.dtype), k=1)  # [T,T] -inf where key j > query i
    scores += future
    # softmax over keys, in place (on a copy when the scores are returned too);
    # subtracting the row max (always finite: j = i is allowed)
    pattern = scores.copy() if with_scores else scores           # [B,H,T,T]
    pattern -= pattern.max(axis=-1, keepdims=True)
    np.exp(pattern, out=pattern)                                 # 0 where masked
    pattern /= pattern.sum(axis=-1, keepdims=True)
    z = (pattern @ vh).transpose(0, 2, 1, 3)                     # [B,T,H,E]
    return z, pattern, (scores if with_scores else None)


def attention_backward(d_z, q, k, v, pattern):
    """Gradients for `attention_forward`: d_z [B,T,H,E] -> d_q, d_k, d_v [B,T,H,E].

    Softmax backward, row by row: d_scores = pattern * (d_pattern - sum_j d_pattern*pattern).
    Masked entries have pattern 0, so they get no gradient without any mask here.
    """
    E = q.shape[-1]
    qh, kh, vh = (a.transpose(0, 2, 1, 3) for a in (q, k, v))   # [B,H,T,E]
    d_zh = d_z.transpose(0, 2, 1, 3)                             # [B,H,T,E]
    # forward: z = pattern @ v
    d_pattern = d_zh @ vh.transpose(0, 1, 3, 2)                  # [B,H,T,T]
    d_vh = pattern.transpose(0, 1, 3, 2) @ d_zh                  # [B,H,T,E]
    # forward: pattern = softmax(scores) over keys (in place on d_pattern)
    d_scores = d_pattern                                         # [B,H,T,T]
    d_scores -= np.einsum("bhij,bhij->bhi", d_pattern, pattern)[..., None]  # row dots, no temporary
    d_scores *= pattern
    # forward: scores = q @ k^T / sqrt(E)  (1/sqrt(E) applied to the smaller [B,H,T,E] results)
    d_qh = d_scores @ kh / np.sqrt(E).astype(q.dtype)            # [B,H,T,E]
    d_kh = d_scores.transpose(0, 1, 3, 2) @ qh / np.sqrt(E).astype(q.dtype)  # [B,H,T,E]
    return tuple(a.transpose(0, 2, 1, 3) for a in (d_qh, d_kh, d_vh))


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
