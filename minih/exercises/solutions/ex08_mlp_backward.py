"""Solution to exercise 8: the MLP backward pass (see docs/02_backward.md, "The MLP").

minih.model._mlp_backward does the same with minih.ops.linear_backward and
minih.ops.gelu_backward, reading pre, post and h2 from the forward's cache.
"""
import math

import numpy as np

C = math.sqrt(2.0 / math.pi)
K = 0.044715


def gelu_slope(u):
    """gelu'(u) for the tanh GELU (exercise 7)."""
    t = np.tanh(C * (u + K * u ** 3))
    return 0.5 * (1.0 + t) + 0.5 * u * (1.0 - t * t) * C * (1.0 + 3.0 * K * u * u)


def mlp_backward(d_mlp_out, pre, post, h2, W_in, W_out):
    """d_mlp_out [..., D]; pre, post [..., M]; h2 [..., D]; W_in [D, M]; W_out [M, D]
    -> (d_h2 [..., D], d_W_in [D, M], d_b_in [M], d_W_out [M, D], d_b_out [D])"""
    D, M = W_in.shape
    # forward: mlp_out = post @ W_out + b_out
    d_W_out = post.reshape(-1, M).T @ d_mlp_out.reshape(-1, D)    # summed over positions
    d_b_out = d_mlp_out.reshape(-1, D).sum(axis=0)
    d_post = d_mlp_out @ W_out.T                                  # [..., M]
    # forward: post = gelu(pre)
    d_pre = d_post * gelu_slope(pre)                              # [..., M]
    # forward: pre = h2 @ W_in + b_in
    d_W_in = h2.reshape(-1, D).T @ d_pre.reshape(-1, M)
    d_b_in = d_pre.reshape(-1, M).sum(axis=0)
    d_h2 = d_pre @ W_in.T                                         # [..., D]
    return d_h2, d_W_in, d_b_in, d_W_out, d_b_out
