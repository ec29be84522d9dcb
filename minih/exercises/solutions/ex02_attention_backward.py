"""Solution to exercise 2: causal softmax attention backward (docs/02_backward.md)."""
import numpy as np


def attention_backward(d_z, q, k, v, pattern):
    """d_z, q, k, v [B,T,H,E]; pattern [B,H,T,T] -> (d_q, d_k, d_v), each [B,T,H,E]"""
    E = q.shape[-1]
    qh, kh, vh, d_zh = (a.transpose(0, 2, 1, 3) for a in (q, k, v, d_z))   # [B,H,T,E]
    d_pattern = d_zh @ vh.transpose(0, 1, 3, 2)                  # z = pattern @ v
    d_vh = pattern.transpose(0, 1, 3, 2) @ d_zh
    d_scores = pattern * (d_pattern - (d_pattern * pattern).sum(-1, keepdims=True))  # softmax
    d_scores = d_scores / np.sqrt(E)                             # scores = q k^T / sqrt(E)
    d_qh = d_scores @ kh
    d_kh = d_scores.transpose(0, 1, 3, 2) @ qh
    return tuple(a.transpose(0, 2, 1, 3) for a in (d_qh, d_kh, d_vh))
