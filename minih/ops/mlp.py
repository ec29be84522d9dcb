"""The MLP's two ops, forward and backward: a linear map with a bias, and the tanh GELU.

One layer's MLP (models with d_mlp > 0; minih.model.mlp_block), per position:

    pre  = h2 @ W_in + b_in          linear_forward     h2 [..., D] -> pre [..., M]
    post = gelu(pre)                 gelu_forward       [..., M] -> [..., M]
    out  = post @ W_out + b_out      linear_forward     [..., M] -> out [..., D]

with the tanh form of GELU (Hendrycks and Gimpel 2016; GPT-2's and TransformerLens'
"gelu_new"):

    gelu(u) = 0.5 * u * (1 + tanh(a)),    a = c * (u + 0.044715 * u^3),  c = sqrt(2 / pi)

Derivations of both backwards: docs/02_backward.md ("The MLP").
"""
import math

import numpy as np

GELU_C = math.sqrt(2.0 / math.pi)  # c = sqrt(2/pi) ~ 0.7979
GELU_K = 0.044715                 # the cubic's coefficient in a = c (u + k u^3)


def linear_forward(x, W, b):
    """y = x @ W + b.   x [..., Din], W [Din, Dout], b [Dout] -> y [..., Dout]"""
    return x @ W + b


def linear_backward(d_y, x, W):
    """Gradients for `linear_forward`: d_y [..., Dout] -> d_x [..., Din], d_W [Din, Dout], d_b [Dout].

    forward: y[n, o] = sum_i x[n, i] W[i, o] + b[o]   (n runs over every position), so
        d_x = d_y @ W^T,   d_W = x^T @ d_y (summed over positions),   d_b = sum_n d_y[n]
    """
    x2 = x.reshape(-1, x.shape[-1])                          # [N, Din]
    d_y2 = d_y.reshape(-1, d_y.shape[-1])                    # [N, Dout]
    d_x = d_y @ W.T                                          # [..., Din]
    d_W = x2.T @ d_y2                                        # [Din, Dout]
    d_b = d_y2.sum(axis=0)                                   # [Dout]
    return d_x, d_W, d_b


def gelu_forward(u):
    """post = 0.5 u (1 + tanh(c (u + k u^3))), elementwise.   u [...] -> post [...]"""
    a = GELU_C * (u + GELU_K * u ** 3)
    return 0.5 * u * (1.0 + np.tanh(a))


def gelu_backward(d_post, u):
    """Gradient for `gelu_forward`: d_post [...] (d loss / d post), u [...] -> d_u [...].

    With t = tanh(a) and a = c (u + k u^3), the product rule on 0.5 u (1 + t) gives
        gelu'(u) = 0.5 (1 + t) + 0.5 u (1 - t^2) c (1 + 3 k u^2)
    (d tanh(a) / da = 1 - tanh(a)^2). The backward recomputes t from u, the value the
    forward cached (mlp.hook_pre), rather than caching a second [..., M] array.
    """
    t = np.tanh(GELU_C * (u + GELU_K * u ** 3))
    slope = 0.5 * (1.0 + t) + 0.5 * u * (1.0 - t * t) * GELU_C * (1.0 + 3.0 * GELU_K * u * u)
    return d_post * slope
