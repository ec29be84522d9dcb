"""The checks of each exercise: finite differences, properties and known answers.

Each check_* function takes the student's function, runs a sequence of named checks
and returns their names; the first failure raises CheckFailed with a message that
says what was checked, shows the numbers, and gives a hint.
"""
from __future__ import annotations

import numpy as np

from ..ops import attention_forward, cross_entropy_forward, layernorm_forward
from ..testing import compare, numerical_grad

# Finite differences in float64 (h = 1e-5) are accurate to ~1e-10 on these ops; a
# correct answer agrees to 1e-7 relative, a wrong one is off by O(1).
RTOL, ATOL = 1e-6, 1e-8


class CheckFailed(Exception):
    pass


def expect(condition_message, hint):
    """Raise CheckFailed if `condition_message` (a compare() result) is not None."""
    if condition_message:
        raise CheckFailed(f"{condition_message}\n  hint: {hint}")


def expect_tuple(result, n, shapes, name):
    if not isinstance(result, tuple) or len(result) != n:
        raise CheckFailed(f"{name} must return a tuple of {n} arrays, got {type(result).__name__}"
                          + (f" of length {len(result)}" if isinstance(result, tuple) else ""))
    for i, (r, shape) in enumerate(zip(result, shapes)):
        if np.shape(r) != shape:
            raise CheckFailed(f"{name}: output {i} has shape {np.shape(r)}, expected {shape}")


def unchanged(fn, *args):
    """Call fn on copies-checked inputs; fail if it modified any of them."""
    before = [np.array(a, copy=True) for a in args]
    out = fn(*args)
    for i, (a, b) in enumerate(zip(args, before)):
        if not np.array_equal(a, b):
            raise CheckFailed(f"your function modified its input number {i + 1}; "
                              f"a backward must not change the arrays it is given")
    return out


# --- exercise 1 ---------------------------------------------------------------------

def check_layernorm_backward(fn):
    passed = []
    rng = np.random.default_rng(1)
    for shape in [(2, 3, 5), (4, 1), (1, 1, 2)]:
        D = shape[-1]
        x, w, b = rng.normal(size=shape), rng.normal(size=D), rng.normal(size=D)
        R = rng.normal(size=shape)
        _, scale = layernorm_forward(x, w, b)
        out = unchanged(fn, R, x, scale, w)
        expect_tuple(out, 3, [shape, (D,), (D,)], "layernorm_backward")
        d_x, d_w, d_b = out
        L = lambda: float((layernorm_forward(x, w, b)[0] * R).sum())
        expect(compare(f"d_b for shape {shape}", d_b, numerical_grad(L, b), RTOL, ATOL),
               "y = xhat * w + b, so dL/db sums d_y over every axis but the last")
        expect(compare(f"d_w for shape {shape}", d_w, numerical_grad(L, w), RTOL, ATOL),
               "dL/dw = sum of d_y * xhat over every axis but the last")
        expect(compare(f"sum of d_x over D, shape {shape}", d_x.sum(-1), np.zeros(shape[:-1]), 0, 1e-9),
               "adding a constant to x leaves y unchanged, so d_x must sum to zero over D: "
               "did you forget that the mean depends on x?")
        expect(compare(f"d_x for shape {shape}", d_x, numerical_grad(L, x), RTOL, ATOL),
               "with g = d_y * w: d_x = (g - mean(g) - xhat * mean(g * xhat)) / scale "
               "(docs/02_backward.md)")
    passed += ["shapes", "inputs untouched", "d_b", "d_w", "d_x sums to zero", "d_x by finite differences"]
    return passed


# --- exercise 2 ---------------------------------------------------------------------

def check_attention_backward(fn):
    rng = np.random.default_rng(2)
    for B, T, H, E in [(2, 4, 2, 3), (1, 1, 1, 1), (1, 5, 1, 2)]:
        q, k, v = (rng.normal(size=(B, T, H, E)) for _ in range(3))
        R = rng.normal(size=(B, T, H, E))
        z, pattern, _ = attention_forward(q, k, v)
        out = unchanged(fn, R, q, k, v, pattern)
        expect_tuple(out, 3, [(B, T, H, E)] * 3, "attention_backward")
        d_q, d_k, d_v = out
        L = lambda: float((attention_forward(q, k, v)[0] * R).sum())
        where = f"shape B,T,H,E = {(B, T, H, E)}"
        expect(compare(f"d_v ({where})", d_v, numerical_grad(L, v), RTOL, ATOL),
               "z = pattern @ v, so d_v = pattern^T @ d_z for each (batch, head)")
        expect(compare(f"d_q[:, 0] ({where})", d_q[:, 0], np.zeros_like(d_q[:, 0]), 0, 1e-12),
               "query 0 sees only key 0, so its pattern row is [1, 0, ...] whatever q is: d_q[:, 0] = 0")
        expect(compare(f"d_q ({where})", d_q, numerical_grad(L, q), RTOL, ATOL),
               "softmax backward per row: d_scores = pattern * (d_pattern - sum(d_pattern * pattern)); "
               "then d_q = d_scores @ k / sqrt(E)")
        expect(compare(f"d_k ({where})", d_k, numerical_grad(L, k), RTOL, ATOL),
               "d_k = d_scores^T @ q / sqrt(E): keys collect gradient from every later query")
    return ["shapes", "inputs untouched", "d_v", "first query gets no gradient", "d_q", "d_k"]


# --- exercise 3 ---------------------------------------------------------------------

def check_cross_entropy_backward(fn):
    rng = np.random.default_rng(3)
    for B, T, V in [(2, 5, 4), (1, 2, 1), (3, 2, 7)]:
        logits = rng.normal(size=(B, T, V)) * 2
        tokens = rng.integers(0, V, size=(B, T))
        d = unchanged(fn, logits, tokens)
        if np.shape(d) != (B, T, V):
            raise CheckFailed(f"cross_entropy_backward must return shape {(B, T, V)}, got {np.shape(d)}")
        where = f"B,T,V = {(B, T, V)}"
        expect(compare(f"last position ({where})", d[:, -1], np.zeros((B, V)), 0, 0),
               "the last position predicts no token: its gradient is exactly 0")
        expect(compare(f"row sums ({where})", d.sum(-1), np.zeros((B, T)), 0, 1e-12),
               "adding a constant to a row of logits changes no probability, so each row of "
               "the gradient sums to zero (softmax minus one-hot)")
        L = lambda: cross_entropy_forward(logits, tokens)[0]
        expect(compare(f"d_logits ({where})", d, numerical_grad(L, logits), RTOL, ATOL),
               "(softmax - onehot(next token)) / (B * (T - 1)) at positions 0..T-2")
    return ["shape", "inputs untouched", "last position zero", "rows sum to zero", "finite differences"]
