"""Attention, op by op: projections, smeared keys, causal softmax attention, output.

Forward of one layer, heads kept separate as in TransformerLens:
    q = qk_in @ W_Q[h],  k = qk_in @ W_K[h],  v = h_in @ W_V[h]        project_forward
    k'[j] = s*k[j] + (1-s)*k[j-1]  (smeared keys only)                   smear_forward
    scores = q @ k'^T / sqrt(E), causal mask                             attention_scores
    pattern = softmax(scores) over keys                                  attention_pattern
    z = pattern @ v                                                      attention_z
    each head's write z_h @ W_O[h] (hook_result)                         head_results
    attn_out = sum_h z_h @ W_O[h]                                        output_forward
Derivations of every backward: docs/02_backward.md.

Shape legend: B = batch, T = positions, D = d_model, H = n_heads, E = d_head
"""
import math

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


# --- 3. causal softmax attention, in four passes --------------------------------------
#
# Per (batch b, head h), with i the query position and j the key position:
#     pass 1  scores[i,j]  = q[i] . k[j] / sqrt(E)                     attention_scores
#     pass 2  scores[i,j]  = -inf for j > i   (the causal mask)         attention_scores
#     pass 3  pattern[i,:] = softmax(scores[i,:])                       attention_pattern
#     pass 4  z[i]         = sum_j pattern[i,j] v[j]                     attention_z
# The model hooks the scores (hook_attn_scores) and the pattern (hook_pattern) between
# the passes, so an ablation can replace either. The whole [B,H,T,T] arrays are made:
# this is the reference, written to be read. The Numba backend (minih/kernels/attention.py)
# has twins of passes 1-3 and, for training, a fused forward that never stores the
# pattern with a backward that recomputes it; all are checked against these passes.

def _causal_mask(T):
    """[T,T] bool: True where key j > query i (the future, which a query may not see)."""
    return np.triu(np.ones((T, T), dtype=bool), k=1)


def attention_scores(q, k):
    """Passes 1-2: scores = q k^T / sqrt(E), then -inf above the diagonal.

    q, k [B,T,H,E] -> scores [B,H,T,T] (query i, key j)
    """
    B, T, H, E = q.shape
    qh = q.transpose(0, 2, 1, 3)                                 # [B,H,T,E]
    kh = k.transpose(0, 2, 1, 3)                                 # [B,H,T,E]
    # pass 1: scores = q k^T / sqrt(E)
    scores = qh @ kh.transpose(0, 1, 3, 2) / math.sqrt(E)        # [B,H,T,T]
    # pass 2: causal mask, query i sees keys j <= i only
    return np.where(_causal_mask(T), -np.inf, scores)            # [B,H,T,T]


def attention_pattern(scores):
    """Pass 3: pattern = softmax(scores) over the keys.   scores [B,H,T,T] -> pattern [B,H,T,T]

    The row max is subtracted first so exp never overflows; it is finite, because every
    query sees at least itself (j = i). Masked entries give exp(-inf) = 0.
    """
    m = scores.max(axis=-1, keepdims=True)                       # [B,H,T,1]
    e = np.exp(scores - m)                                       # [B,H,T,T]
    return e / e.sum(axis=-1, keepdims=True)                     # [B,H,T,T]


def attention_z(pattern, v):
    """Pass 4: z = pattern @ v.   pattern [B,H,T,T], v [B,T,H,E] -> z [B,T,H,E]"""
    vh = v.transpose(0, 2, 1, 3)                                 # [B,H,T,E]
    return (pattern @ vh).transpose(0, 2, 1, 3)                  # [B,T,H,E]


def attention_backward(d_z, q, k, v, pattern):
    """Gradients for passes 1-4: d_z [B,T,H,E] -> d_q, d_k, d_v [B,T,H,E].

    Takes the forward's inputs q, k, v [B,T,H,E] and the pattern [B,H,T,T] it computed.
    The passes in reverse, each under the forward line it inverts.
    """
    B, T, H, E = q.shape
    qh, kh, vh, d_zh = (a.transpose(0, 2, 1, 3) for a in (q, k, v, d_z))   # [B,H,T,E]
    # pass 4, forward: z = pattern @ v
    d_pattern = d_zh @ vh.transpose(0, 1, 3, 2)                  # [B,H,T,T]
    d_vh = pattern.transpose(0, 1, 3, 2) @ d_zh                  # [B,H,T,E]
    # pass 3, forward: pattern[i,:] = softmax(scores[i,:])
    #   d_scores[i,j] = pattern[i,j] * (d_pattern[i,j] - sum_j' d_pattern[i,j'] pattern[i,j'])
    row_dot = (d_pattern * pattern).sum(axis=-1, keepdims=True)  # [B,H,T,1]
    d_scores = pattern * (d_pattern - row_dot)                   # [B,H,T,T]
    # pass 2, forward: scores = -inf for j > i. Nothing flows back there: the pattern is
    # 0 at masked entries, so d_scores is 0 there already.
    # pass 1, forward: scores = q k^T / sqrt(E)
    d_qh = d_scores @ kh / math.sqrt(E)                          # [B,H,T,E]
    d_kh = d_scores.transpose(0, 1, 3, 2) @ qh / math.sqrt(E)    # [B,H,T,E]
    return tuple(a.transpose(0, 2, 1, 3) for a in (d_qh, d_kh, d_vh))  # [B,T,H,E] each


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
