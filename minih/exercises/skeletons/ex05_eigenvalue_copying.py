"""Exercise 5: is a head copying? The eigenvalue score of its OV circuit.

A Mathematical Framework for Transformer Circuits: a head that attends to token u
adds W_E[u] @ W_V @ W_O @ W_U to the logits. The full OV circuit
M = W_E @ W_V @ W_O @ W_U [V, V] maps "attended token" to "logit change". If M has
mostly positive eigenvalues, the head raises the logit of the token it attends to:
it copies. The score is

    sum(eigenvalues) / sum(|eigenvalues|)     in [-1, 1]

Fill in `eigenvalue_copying_score`. Hint: M is V x V, but W_O @ W_U @ W_E @ W_V is
only d_head x d_head and has the same nonzero eigenvalues (AB and BA share them):
use np.linalg.eigvals on the small one.
Check with:
    python -m minih.exercises check 5
"""
import numpy as np


def eigenvalue_copying_score(W_E, W_V, W_O, W_U):
    """W_E [V,D], W_V [D,E], W_O [E,D], W_U [D,V] -> float in [-1, 1]"""
    raise NotImplementedError("fill in eigenvalue_copying_score")
