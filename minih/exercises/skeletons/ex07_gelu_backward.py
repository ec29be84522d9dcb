"""Exercise 7: the backward pass of GELU (models with MLPs).

Forward (minih/ops/mlp.py), entry by entry, the tanh form of GELU (GPT-2's and
TransformerLens' "gelu_new"):
    a       = c * (u + k * u**3)        c = sqrt(2 / pi), k = 0.044715
    t       = tanh(a)
    gelu(u) = 0.5 * u * (1 + t)

Fill in `gelu_backward`: given d_post = dL/d gelu(u) and the input u (same shape),
return dL/du (same shape and dtype as u).
Hints: GELU acts on each entry alone, so dL/du = d_post * gelu'(u). For gelu'(u), use
the product rule on 0.5 * u * (1 + t), and the chain rule for t: d tanh(a)/da =
1 - tanh(a)**2, then da/du. Write the constants as Python floats (math.sqrt), so that
float32 inputs stay float32.
Derivation: docs/02_backward.md, "The MLP". Check your answer with:
    python -m minih.exercises check 7
"""
import math

import numpy as np


def gelu_backward(d_post, u):
    """d_post, u [...] -> d_u [...] (same shape and dtype as u)"""
    raise NotImplementedError("fill in gelu_backward")
