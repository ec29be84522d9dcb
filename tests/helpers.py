"""Shared oracles for the tests: central finite differences and readable comparisons."""
import numpy as np


def numerical_grad(f, x, h=1e-5):
    """d f / d x by second-order central differences, entry by entry (x edited in place,
    then restored). f() -> float reads x. Float64 only: with h = 1e-5 the error is
    ~h^2 * f''' + 1e-16 * |f| / h, about 1e-10 for the small ops tested here."""
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


def assert_close(name, actual, expected, rtol, atol):
    """np.testing-like check whose failure message names the tensor and the worst entry."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{name}: shape {actual.shape} != expected {expected.shape}"
    err = np.abs(actual - expected)
    bound = atol + rtol * np.abs(expected)
    if not np.all(err <= bound):
        i = np.unravel_index(np.argmax(err - bound), err.shape)
        raise AssertionError(f"{name}: max |diff| {err.max():.3e}; worst at {tuple(int(k) for k in i)}: "
                             f"got {actual[i]!r}, expected {expected[i]!r} (rtol={rtol}, atol={atol})")
