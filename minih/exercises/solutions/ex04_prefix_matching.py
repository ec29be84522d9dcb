"""Solution to exercise 4: the prefix-matching score (see minih/interp/metrics/patterns.py)."""
import numpy as np


def prefix_matching_score(pattern, tokens):
    """pattern [B,H,T,T], tokens [B,T] -> [H]"""
    B, H, T, _ = pattern.shape
    mask = np.zeros((B, T, T), dtype=bool)
    mask[:, :, 1:] = tokens[:, :, None] == tokens[:, None, :-1]     # t[j-1] == t[i]
    mask &= np.tri(T, dtype=bool)                                   # j <= i, so j-1 < i
    queries = mask.any(axis=-1)                                     # [B,T]
    on_keys = (pattern * mask[:, None]).sum(axis=-1)                # [B,H,T]
    return (on_keys * queries[:, None]).sum(axis=(0, 2)) / queries.sum()
