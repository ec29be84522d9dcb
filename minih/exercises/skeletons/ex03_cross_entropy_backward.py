"""Exercise 3: the gradient of the next-token cross-entropy.

Forward (minih/ops/loss.py): logits [B, T, V]; position i predicts token i+1, so
    loss = mean over b and i < T-1 of  -log softmax(logits[b, i])[tokens[b, i+1]]

Fill in `cross_entropy_backward`: return d loss / d logits, shape [B, T, V].
Hints: the mean is over B*(T-1) terms; the last position predicts nothing.
Derivation: docs/02_backward.md, "Softmax cross-entropy". Check with:
    python -m minih.exercises check 3
"""
import numpy as np


def cross_entropy_backward(logits, tokens):
    """logits [B,T,V] (float64), tokens [B,T] ints -> d_logits [B,T,V]"""
    raise NotImplementedError("fill in cross_entropy_backward")
