"""Numba twins of minih.ops.mlp's tanh GELU, forward and backward, each in one pass.

The MLP's linear maps have no twin: the reference's `x @ W + b` is already one BLAS
call. A twin through minih/kernels/blas.py (fixed row chunks over the threads, the bias
added in place) was written and measured, and was no faster: 0.88-1.05x the reference
op alone on one thread (the row chunks cost a little), and the same training step time
within 3%, on 1 and 2 threads (docs/04_numba.md, "The MLP"). So linear_forward and
linear_backward are the reference's own functions in this backend.

The GELU is where the reference spends its time: `u ** 3` calls pow for every number
(numpy has no fast path for the exponent 3), and each of the formula's ~8 steps makes a
temporary [B, T, M] array. The twins make one pass: read u (and d_post), write the output,
nothing in between. The backward recomputes its tanh (here: s, below) from u, as the
reference does.

No tanh: with tanh(a) = (1 - e^(-2a)) / (1 + e^(-2a)),

    0.5 (1 + tanh(a)) = 1 / (1 + e^(-2a)) = sigmoid(2a) = s,     1 - tanh(a)^2 = 4 s (1 - s)

so post = u s, and the backward's slope is s + 2 u s (1 - s) c (1 + 3 k u^2). Why:
  - speed: Numba turns np.tanh into a call of libm's tanhf per number, which LLVM cannot
    vectorise (minih needs no Intel SVML); with it a jitted GELU took 0.6-1.5x the
    reference's time (whose np.tanh is numpy's own SIMD loop). An exp can be written as a
    polynomial that vectorises (kernels/simd.py's Cephes expf, here one number at a
    time); in float64, where both are libm's, the forward kernel ran 3.9x faster with
    exp than with tanh ([1024, 512], one core);
  - accuracy: with e = e^(-2|a|) in (0, 1] (it never overflows), s and s (1 - s) = e s_abs^2
    (s_abs = sigmoid(2|a|)) are products of positive numbers. The reference's 1 + tanh(a)
    and 1 - tanh(a)^2 subtract nearly equal numbers where tanh(a) is near -1 or 1
    (float32: |a| > ~4), so there the twin is the closer of the two to the exact values.

Threads: every number of the GELU is computed alone, so the flat arrays split over the
threads in any chunks without changing a bit (threads.run_chunks).

Shape legend: n = the number of values (B*T*M for the MLP's [B, T, M], any shape flattened)
"""
import numpy as np

from ..ops.mlp import GELU_C, GELU_K
from ._jit import as_floats, expect_shape, kernel
from .simd import EXP_MIN, EXP_POLY, LN2_HI, LN2_LO, LOG2_E   # compiled in: see _jit.HELPER_FILES
from .threads import run_chunks


# --- the tanh GELU: one pass ----------------------------------------------------------------

@kernel()
def _exp_neg_f32(x):
    """exp(x) of a float32 x <= 0, vectorisable: the Cephes expf of kernels/simd.py's exp16,
    one number at a time (x = k ln2 + r, exp(r) by a polynomial, 2^k from its bits). Below
    EXP_MIN it is exactly 0. A NaN stays NaN (max keeps its first argument, NaN * 0 = NaN)."""
    xc = max(x, np.float32(EXP_MIN))
    k = np.floor(xc * np.float32(LOG2_E) + np.float32(0.5))     # round(x / ln2)
    r = xc - k * np.float32(LN2_HI) - k * np.float32(LN2_LO)     # x - k ln2, in two parts
    p = np.float32(EXP_POLY[0])
    p = p * r + np.float32(EXP_POLY[1])
    p = p * r + np.float32(EXP_POLY[2])
    p = p * r + np.float32(EXP_POLY[3])
    p = p * r + np.float32(EXP_POLY[4])
    p = p * r + np.float32(EXP_POLY[5])
    exp_r = p * r * r + r + np.float32(1.0)
    bits = np.int32((np.int32(k) + np.int32(127)) << np.int32(23))  # 2^k's float32 bits
    two_k = bits.view(np.float32) if x >= np.float32(EXP_MIN) else np.float32(0.0)
    return exp_r * two_k


@kernel()
def _gelu_forward(u, post, consts, fast_exp):
    # u, post flat [n], a chunk each; consts in u's dtype, so that float32 stays float32 (a
    # Python literal such as 0.5 is a float64 to Numba, and would widen every product).
    # range(u.size), not range(i0, i1): an index that might be negative (Numba wraps it
    # around) kept LLVM from vectorising the loop, 2.8x slower; so the wrapper slices.
    c, k, one, two, _ = consts                                   # (3 is for the backward)
    for n in range(u.size):                                      # every number alone
        x = u[n]
        a = c * (x + k * x * x * x)                              # a = c (u + k u^3)
        e = _exp_neg_f32(-two * abs(a)) if fast_exp else np.exp(-two * abs(a))  # e^(-2|a|)
        s_abs = one / (one + e)                                  # sigmoid(2|a|)
        s = s_abs if a >= 0 else e * s_abs                       # s = sigmoid(2a)
        post[n] = x * s                                          # post = 0.5 u (1 + tanh(a)) = u s


@kernel()
def _gelu_backward(d_post, u, d_u, consts, fast_exp):
    c, k, one, two, three = consts
    for n in range(u.size):
        x = u[n]
        a = c * (x + k * x * x * x)                              # the forward's a, e and s
        e = _exp_neg_f32(-two * abs(a)) if fast_exp else np.exp(-two * abs(a))
        s_abs = one / (one + e)
        s = s_abs if a >= 0 else e * s_abs
        # forward: post = u s, s = sigmoid(2a), so with s (1 - s) = e s_abs^2 (either sign of a)
        # gelu'(u) = s + 2 u s (1 - s) c (1 + 3 k u^2)
        slope = s + two * x * (e * s_abs * s_abs) * c * (one + three * k * x * x)
        d_u[n] = d_post[n] * slope


@kernel()
def _gelu_forward_keeping_slope(u, post, consts, fast_exp):
    # _gelu_forward, and u overwritten with gelu'(u), the slope _gelu_backward multiplies
    # d_post by: the same lines (the same slope; post up to rounding, as LLVM fuses the
    # multiply-adds of one loop otherwise than of two). For the whole-step kernel
    # (kernels/step.py), which needs u only for that slope: its backward becomes
    # d_u = d_post * slope, one product a number instead of the exp and the division
    # again (GELU forward and backward 0.66 -> 0.45 ms on [1024, 256], one thread).
    c, k, one, two, three = consts
    for n in range(u.size):
        x = u[n]
        a = c * (x + k * x * x * x)
        e = _exp_neg_f32(-two * abs(a)) if fast_exp else np.exp(-two * abs(a))
        s_abs = one / (one + e)
        s = s_abs if a >= 0 else e * s_abs
        post[n] = x * s
        u[n] = s + two * x * (e * s_abs * s_abs) * c * (one + three * k * x * x)


def _gelu_constants(dtype):
    """(c, k, 1, 2, 3) in the arrays' dtype, and whether to use the float32 exp above."""
    f = dtype.type
    return (f(GELU_C), f(GELU_K), f(1), f(2), f(3)), dtype == np.float32


def gelu_forward(u):
    """Numba twin of minih.ops.mlp.gelu_forward: post = 0.5 u (1 + tanh(a)), a = c (u + k u^3).

    u [...] -> post [...], in one pass, as post = u sigmoid(2a) (the module docstring says why)
    """
    (u,) = as_floats("u", u)
    post = np.empty_like(u)
    uf, pf = u.reshape(-1), post.reshape(-1)                     # [n] views
    consts, fast = _gelu_constants(u.dtype)
    run_chunks(uf.size, lambda i0, i1: _gelu_forward(uf[i0:i1], pf[i0:i1], consts, fast))
    return post


def gelu_backward(d_post, u):
    """Numba twin of minih.ops.mlp.gelu_backward: d_u = d_post * gelu'(u), in one pass.

    d_post [...], u [...] (the forward's input) -> d_u [...], with s = sigmoid(2a) =
    0.5 (1 + tanh(a)):   gelu'(u) = s + 2 u s (1 - s) c (1 + 3 k u^2)
    (the reference's 0.5 (1 + t) + 0.5 u (1 - t^2) c (1 + 3 k u^2), as 1 - t^2 = 4 s (1 - s)).
    """
    d_post, u = as_floats("d_post u", d_post, u)
    expect_shape("d_post", d_post, u.shape)
    d_u = np.empty_like(u)
    df, uf, of = d_post.reshape(-1), u.reshape(-1), d_u.reshape(-1)   # [n] views
    consts, fast = _gelu_constants(u.dtype)
    run_chunks(uf.size, lambda i0, i1: _gelu_backward(df[i0:i1], uf[i0:i1], of[i0:i1], consts,
                                                      fast))
    return d_u
