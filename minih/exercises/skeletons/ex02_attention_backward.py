"""Exercise 2: the backward pass of causal softmax attention.

Forward (minih/ops/attention.py), for every batch element b and head h:
    scores[i, j] = q[i] . k[j] / sqrt(E)     for key j <= query i, -inf for j > i
    pattern      = softmax(scores) over j
    z[i]         = sum_j pattern[i, j] v[j]
with q, k, v, z of shape [B, T, H, E] and pattern of shape [B, H, T, T].

Fill in `attention_backward`: given d_z = dL/dz, return dL/dq, dL/dk, dL/dv, each
[B, T, H, E]. Hint: go backwards through the three lines; the softmax backward of
one row is pattern * (d_pattern - sum_j(d_pattern * pattern)).
Derivation: docs/02_backward.md, "Softmax attention". Check with:
    python -m minih.exercises check 2
(minih's own ops.attention_backward has this signature too: compare once yours passes.
The Numba backend's fused twin takes the forward's z and lse instead of the pattern:
it recomputes the pattern, and uses z for the softmax's row sums, d_z . z; the same
docs section says why.)
"""
import numpy as np


def attention_backward(d_z, q, k, v, pattern):
    """d_z, q, k, v [B,T,H,E]; pattern [B,H,T,T] -> (d_q, d_k, d_v), each [B,T,H,E]"""
    raise NotImplementedError("fill in attention_backward")
