"""Solution to exercise 5: the eigenvalue copying score (see minih/interp/metrics/circuits.py)."""
import numpy as np


def eigenvalue_copying_score(W_E, W_V, W_O, W_U):
    """W_E [V,D], W_V [D,E], W_O [E,D], W_U [D,V] -> float in [-1, 1]"""
    lam = np.linalg.eigvals(W_O @ W_U @ W_E @ W_V)                  # [E]
    return float(lam.sum().real / np.abs(lam).sum())
