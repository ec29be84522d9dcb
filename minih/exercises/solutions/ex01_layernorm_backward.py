"""Solution to exercise 1: the LayerNorm backward pass (see docs/02_backward.md)."""
import numpy as np


def layernorm_backward(d_y, x, scale, w):
    """d_y, x [..., D]; scale [..., 1] (from the forward); w [D] -> (d_x [..., D], d_w [D], d_b [D])"""
    D = x.shape[-1]
    xhat = (x - x.mean(axis=-1, keepdims=True)) / scale
    d_b = d_y.reshape(-1, D).sum(axis=0)
    d_w = (d_y * xhat).reshape(-1, D).sum(axis=0)
    g = d_y * w                                                  # dL/dxhat
    d_x = (g - g.mean(axis=-1, keepdims=True) - xhat * (g * xhat).mean(axis=-1, keepdims=True)) / scale
    return d_x, d_w, d_b
