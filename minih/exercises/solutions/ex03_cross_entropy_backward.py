"""Solution to exercise 3: next-token cross-entropy gradient (docs/02_backward.md)."""
import numpy as np


def cross_entropy_backward(logits, tokens):
    """logits [B,T,V] (float64), tokens [B,T] ints -> d_logits [B,T,V]"""
    B, T, V = logits.shape
    shifted = logits[:, :-1] - logits[:, :-1].max(-1, keepdims=True)
    probs = np.exp(shifted) / np.exp(shifted).sum(-1, keepdims=True)   # [B,T-1,V]
    d_logits = np.zeros_like(logits)
    d_logits[:, :-1] = probs
    b, i = np.meshgrid(np.arange(B), np.arange(T - 1), indexing="ij")
    d_logits[b, i, tokens[:, 1:]] -= 1                           # minus the one-hot target
    return d_logits / (B * (T - 1))
