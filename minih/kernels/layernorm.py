"""Numba twins of minih.ops.layernorm: LayerNorm over d_model, one row at a time.

Rows are the B*T positions, R of them. The reference makes five passes over
[R, D] arrays with a temporary for each; the kernels make one pass per row (the row
stays in L1 cache) and write only the outputs.

Shape legend: R = rows (B*T), D = d_model, C = row chunks of the backward
"""
import numpy as np

from ..ops.layernorm import LN_EPS
from ._jit import as_floats, expect_shape, kernel
from .threads import run_chunks

N_CHUNKS = 16   # row chunks of the backward (fixed, so results do not depend on the thread count)


@kernel()
def _layernorm_forward(x, w, b, eps, y, scale, r0, r1):
    R, D = x.shape
    for r in range(r0, r1):                          # rows are independent
        mean = 0.0
        for d in range(D):
            mean += x[r, d]
        mean /= D
        var = 0.0
        for d in range(D):
            var += (x[r, d] - mean) ** 2
        s = np.sqrt(var / D + eps)                   # scale = sqrt(var + eps)
        scale[r] = s
        inv = 1.0 / s
        for d in range(D):
            y[r, d] = (x[r, d] - mean) * inv * w[d] + b[d]   # y = xhat * w + b


def layernorm_forward(x, w, b):
    """Numba twin of minih.ops.layernorm.layernorm_forward.

    x [..., D], w [D], b [D] -> y [..., D], scale [..., 1] with
    y = (x - mean) / scale * w + b, scale = sqrt(var + eps) (biased var, eps = 1e-5).
    """
    x, w, b = as_floats("x w b", x, w, b)
    D = x.shape[-1]
    expect_shape("w", w, (D,))
    expect_shape("b", b, (D,))
    x2 = x.reshape(-1, D)                                        # [R, D]
    y = np.empty_like(x2)
    scale = np.empty(x2.shape[0], dtype=x.dtype)
    run_chunks(x2.shape[0], lambda r0, r1: _layernorm_forward(x2, w, b, LN_EPS, y, scale, r0, r1))
    return y.reshape(x.shape), scale.reshape(x.shape[:-1] + (1,))


@kernel()
def _layernorm_backward(d_y, x, scale, w, d_x, d_w_part, d_b_part, c0, c1):
    R, D = x.shape
    C = d_w_part.shape[0]
    for c in range(c0, c1):              # chunk c owns rows [lo, hi) and partial sums row c
        lo = c * R // C
        hi = (c + 1) * R // C
        for r in range(lo, hi):
            mean = 0.0
            for d in range(D):
                mean += x[r, d]
            mean /= D
            inv = 1.0 / scale[r]
            g_mean = 0.0                                     # mean(g),         g = d_y * w
            gx_mean = 0.0                                    # mean(g * xhat)
            for d in range(D):
                xhat = (x[r, d] - mean) * inv
                # forward: y = xhat * w + b
                d_b_part[c, d] += d_y[r, d]
                d_w_part[c, d] += d_y[r, d] * xhat
                g = d_y[r, d] * w[d]
                g_mean += g
                gx_mean += g * xhat
            g_mean /= D
            gx_mean /= D
            # forward: xhat = (x - mean) / scale
            for d in range(D):
                xhat = (x[r, d] - mean) * inv
                d_x[r, d] = (d_y[r, d] * w[d] - g_mean - xhat * gx_mean) * inv


def layernorm_backward(d_y, x, scale, w):
    """Numba twin of minih.ops.layernorm.layernorm_backward.

    d_y [..., D] -> d_x [..., D], d_w [D], d_b [D], with g = d_y * w:
        d_x = (g - mean(g) - xhat * mean(g * xhat)) / scale
    d_w and d_b sum over every row; each of N_CHUNKS row chunks sums into its own
    partial row (parallel without a race), and the partials are added at the end.
    """
    d_y, x, scale, w = as_floats("d_y x scale w", d_y, x, scale, w)
    D = x.shape[-1]
    expect_shape("d_y", d_y, x.shape)
    expect_shape("scale", scale, x.shape[:-1] + (1,))
    expect_shape("w", w, (D,))
    x2 = x.reshape(-1, D)                                        # [R, D]
    d_x = np.empty_like(x2)
    C = max(1, min(N_CHUNKS, x2.shape[0]))
    d_w_part = np.zeros((C, D), dtype=x.dtype)                   # [C, D]
    d_b_part = np.zeros((C, D), dtype=x.dtype)                   # [C, D]
    d_y2, scale2 = d_y.reshape(-1, D), scale.reshape(-1)                # [R, D], [R]
    run_chunks(C, lambda c0, c1: _layernorm_backward(d_y2, x2, scale2, w, d_x, d_w_part, d_b_part,
                                                     c0, c1))
    return d_x.reshape(x.shape), d_w_part.sum(axis=0), d_b_part.sum(axis=0)
