"""Solution to exercise 7: the GELU backward pass (see docs/02_backward.md, "The MLP")."""
import math

import numpy as np

C = math.sqrt(2.0 / math.pi)     # Python floats: a float32 u stays float32
K = 0.044715


def gelu_backward(d_post, u):
    """d_post, u [...] -> d_u [...] (same shape and dtype as u)"""
    t = np.tanh(C * (u + K * u ** 3))                           # t = tanh(a)
    dt_du = (1.0 - t * t) * C * (1.0 + 3.0 * K * u * u)         # chain rule: tanh', then da/du
    slope = 0.5 * (1.0 + t) + 0.5 * u * dt_du                    # product rule on 0.5 u (1 + t)
    return d_post * slope
