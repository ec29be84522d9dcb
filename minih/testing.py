"""Oracles shared by the test suite and the classroom exercises.

`numerical_grad` is the finite-difference oracle for a single op; `compare` is a
readable comparison whose message names the tensor, the worst entry and both values
(a failing check should teach, not just say "False").
"""
from __future__ import annotations

import numpy as np


def numerical_grad(f, x, h=1e-5):
    """d f / d x by second-order central differences, entry by entry (x is edited in
    place, then restored; f() reads x). Float64 only: with h = 1e-5 the error is
    ~h^2 * |f'''| + 1e-16 * |f| / h, about 1e-10 for the small ops checked with it."""
    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        orig = flat[i]
        flat[i] = orig + h
        fp = f()
        flat[i] = orig - h
        fm = f()
        flat[i] = orig
        gflat[i] = (fp - fm) / (2 * h)
    return grad


def compare(name, actual, expected, rtol, atol) -> str | None:
    """None if |actual - expected| <= atol + rtol*|expected| everywhere, else a message
    naming the tensor, the largest difference and the worst entry."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    if actual.shape != expected.shape:
        return f"{name}: shape {actual.shape}, expected {expected.shape}"
    err = np.abs(actual - expected)
    bound = atol + rtol * np.abs(expected)
    if np.all(err <= bound):
        return None
    i = np.unravel_index(np.argmax(np.where(np.isnan(err), np.inf, err - bound)), err.shape)
    return (f"{name}: max |difference| {np.nanmax(err) if not np.all(np.isnan(err)) else np.nan:.3e}; "
            f"worst entry {tuple(int(k) for k in i)}: got {float(actual[i]):.6g}, expected {float(expected[i]):.6g} "
            f"(rtol={rtol}, atol={atol})")


def assert_close(name, actual, expected, rtol, atol):
    """Raise AssertionError with `compare`'s message if the arrays differ."""
    message = compare(name, actual, expected, rtol, atol)
    if message:
        raise AssertionError(message)
