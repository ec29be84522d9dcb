"""LayerNorm over d_model, forward and backward (derivation: docs/02_backward.md).

Forward, per position (x a row of D numbers):
    mean  = sum(x) / D
    var   = sum((x - mean)^2) / D              (biased, as PyTorch and TransformerLens)
    scale = sqrt(var + eps)                    layernorm_scale
    xhat  = (x - mean) / scale                 layernorm_normalize
    y     = xhat * w + b

The forward is two steps so that the model can hook `scale` between them
(TransformerLens' `ln.hook_scale`): a pattern-preserving ablation replaces it by the
clean run's scale, which makes LayerNorm linear in x. layernorm_forward is the two
steps in one call; the Numba backend fuses it into one pass over each row.
"""
import numpy as np

LN_EPS = 1e-5


def layernorm_scale(x):
    """scale = sqrt(var(x) + eps) over the last axis.   x [..., D] -> scale [..., 1]"""
    mean = x.mean(axis=-1, keepdims=True)                        # [..., 1]
    xc = x - mean                                                # [..., D]
    var = (xc * xc).mean(axis=-1, keepdims=True)                 # [..., 1]
    return np.sqrt(var + LN_EPS)                                 # [..., 1]


def layernorm_normalize(x, scale, w, b):
    """y = (x - mean(x)) / scale * w + b, with `scale` given.   x [..., D], scale [..., 1] -> y [..., D]

    With the scale held fixed this is linear in x (plus the constant b).
    """
    xhat = (x - x.mean(axis=-1, keepdims=True)) / scale          # [..., D]
    return xhat * w + b                                          # [..., D]


def layernorm_forward(x, w, b):
    """x [..., D], w [D], b [D] -> y [..., D], scale [..., 1]

    `scale` is what TransformerLens caches as `ln.hook_scale`; the backward
    recomputes xhat from x and scale rather than caching a third tensor.
    """
    scale = layernorm_scale(x)                                   # [..., 1]
    return layernorm_normalize(x, scale, w, b), scale


def layernorm_backward(d_y, x, scale, w):
    """Gradients for `layernorm_forward`: d_y [..., D] -> d_x [..., D], d_w [D], d_b [D].

    With g = d_y * w (the gradient reaching xhat), the chain rule through
    xhat = (x - mean) / scale gives (docs/02_backward.md, "LayerNorm"):
        d_x = (g - mean(g) - xhat * mean(g * xhat)) / scale
    """
    xhat = (x - x.mean(axis=-1, keepdims=True)) / scale          # [..., D]
    # forward: y = xhat * w + b
    d_b = d_y.reshape(-1, d_y.shape[-1]).sum(axis=0)             # [D]
    d_w = (d_y * xhat).reshape(-1, d_y.shape[-1]).sum(axis=0)    # [D]
    g = d_y * w                                                  # [..., D]  d_xhat
    # forward: xhat = (x - mean) / scale, with mean and scale functions of x
    d_x = (g - g.mean(axis=-1, keepdims=True)
           - xhat * (g * xhat).mean(axis=-1, keepdims=True)) / scale
    return d_x, d_w, d_b
