"""Exercise 1: the LayerNorm backward pass.

Forward (minih/ops/layernorm.py), per position, over the last axis of D numbers:
    mean  = sum(x) / D
    var   = sum((x - mean)^2) / D
    scale = sqrt(var + 1e-5)
    xhat  = (x - mean) / scale
    y     = xhat * w + b

Fill in `layernorm_backward`: given d_y = dL/dy, return dL/dx, dL/dw, dL/db.
Hints: dL/db and dL/dw sum over every axis but the last. For dL/dx, first get
g = dL/dxhat, then remember that mean and scale depend on x too.
Derivation: docs/02_backward.md, "LayerNorm". Check your answer with:
    python -m minih.exercises check 1
"""
import numpy as np


def layernorm_backward(d_y, x, scale, w):
    """d_y, x [..., D]; scale [..., 1] (from the forward); w [D] -> (d_x [..., D], d_w [D], d_b [D])"""
    raise NotImplementedError("fill in layernorm_backward")
