"""minih/kernels/simd.py: the compiled vector functions against their plain Python versions.

Oracle: the Python versions (NumPy arrays of 16), which say what each function means, and
NumPy itself (np.exp, np.max, np.sum). Tolerances: fma16 rounds once when compiled (fused)
and twice in Python, and hsum16 adds in another order, so rtol 1e-6 (float32) or 1e-14
(float64) per lane, and an atol of the same relative size for cancellation in x * s + y.
exp16 in float32 is a polynomial: within 2e-7 of np.exp, relative (float32 rounds at 6e-8;
the polynomial and 2^k add a few roundings), exactly 0 below EXP_MIN. The rest is exact.
"""
import numba
import numpy as np
import pytest
from numba.core.errors import TypingError

from minih.kernels._jit import FASTMATH
from minih.kernels.simd import (EXP_MAX, EXP_MIN, LANES, add16, causal16, exp16, fma16, hmax16,
                                hsum16, load16, max16, mul16, splat16, store16, sub16)

DTYPES = [np.float64, np.float32]


def combine(a, b, out, j, s):
    """out[j:j+16] = max((a[1:17] * s + b[j:j+16]) * b - b, a[1:17]) + a[1:17], and the sum and
    max of the lanes before that last max: through the arithmetic functions of simd.py."""
    x = load16(a, 1)
    y = load16(b, j)
    w = sub16(mul16(fma16(x, splat16(s), y), y), y)
    store16(out, j, add16(max16(w, x), x))
    return hsum16(w), hmax16(w)


combine_jit = numba.njit(combine)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("j", [0, 3])                            # an unaligned start too
def test_compiled_matches_python(dtype, j):
    rng = np.random.default_rng(j)
    a, b = rng.standard_normal(20).astype(dtype), rng.standard_normal(19).astype(dtype)
    s = dtype(rng.standard_normal())
    want, got = np.full(19, np.nan, dtype), np.full(19, np.nan, dtype)
    sum_want, max_want = combine(a, b, want, j, s)
    sum_got, max_got = combine_jit(a, b, got, j, s)
    assert got.dtype == want.dtype == dtype
    x, y = a[1:17], b[j:j + 16]
    w = (x * s + y) * y - y
    # rtol for the rounding of each lane, atol for cancellation (scaled by the terms' size)
    rtol = 1e-6 if dtype == np.float32 else 1e-14
    atol = rtol * 4 * (np.abs(x * s).max() + np.abs(y).max()) * (np.abs(y).max() + 1)
    np.testing.assert_allclose(want[j:j + 16], np.maximum(w, x) + x, rtol=rtol, atol=atol)
    np.testing.assert_allclose(got[j:j + 16], want[j:j + 16], rtol=rtol, atol=atol)
    np.testing.assert_allclose([sum_got, sum_want], [w.sum()] * 2, rtol=rtol, atol=LANES * atol)
    np.testing.assert_allclose([max_got, max_want], [w.max()] * 2, rtol=rtol, atol=atol)
    outside = np.ones(19, bool)
    outside[j:j + 16] = False
    assert np.isnan(got[outside]).all() and np.isnan(want[outside]).all(), "wrote outside j:j+16"


@numba.njit(fastmath=FASTMATH)          # the kernels' flags: they must not cost accuracy
def _exp_row(x, out):
    for j in range(0, len(x), LANES):
        store16(out, j, exp16(load16(x, j)))


@pytest.mark.parametrize("dtype", DTYPES)
def test_exp16_is_exp(dtype):
    # oracle: np.exp. x <= 0 (the softmax subtracts the row max): down to EXP_MIN, then a
    # few values below it (exactly 0), -inf (the causal mask: exactly 0) and NaN (stays NaN);
    # and, outside the softmax's range, x > 0 up to EXP_MAX (exp itself) and beyond it up
    # to +inf (exp(EXP_MAX), a finite float32, never garbage)
    inside = np.concatenate([-np.geomspace(1e-8, -EXP_MIN, 4000), [0.0, -0.5, -1e-30],
                             np.linspace(0.01, EXP_MAX, 50)])
    beyond = np.concatenate([np.linspace(EXP_MIN - 5, EXP_MIN - 1e-3, 13), [-np.inf]])
    x = np.concatenate([inside, beyond, [np.nan, EXP_MAX + 1, 1e10, 3e9, np.inf]])
    x = np.concatenate([x, np.zeros(-len(x) % LANES)]).astype(dtype)   # whole vectors
    got_jit, got_py = np.empty_like(x), np.empty_like(x)
    _exp_row(x, got_jit)
    _exp_row.py_func(x, got_py)
    n_in, n_beyond = len(inside), len(beyond)
    want = np.exp(x[:n_in].astype(np.float64))
    rtol = 1.5e-7 if dtype == np.float32 else 1e-15
    for got in (got_jit, got_py):
        assert got.dtype == dtype
        np.testing.assert_allclose(got[:n_in], want, rtol=rtol, atol=0)
        assert np.isnan(got[n_in + n_beyond]), "NaN stays NaN"
        if dtype == np.float32:
            assert np.all(got[n_in:n_in + n_beyond] == 0), "below EXP_MIN and -inf: exactly 0"
            top = got[n_in + n_beyond + 1:n_in + n_beyond + 5]
            np.testing.assert_allclose(top, np.exp(EXP_MAX), rtol=rtol)   # above EXP_MAX


@numba.njit
def _hmax(x):
    return hmax16(load16(x, 0))


@pytest.mark.parametrize("dtype", DTYPES)
def test_hmax16_twins_agree_on_nan_lanes(dtype):
    # oracle: the Python version, which halves as the compiled one does: with NaN lanes
    # the two must give the same lane (a NaN, or the max of what max16 keeps), and without
    # NaN the row's max
    rng = np.random.default_rng(4)
    for lanes in ([], [0], [3], [8], [15], [2, 9], list(range(16))):
        x = rng.standard_normal(LANES).astype(dtype)
        x[lanes] = np.nan
        got, want = _hmax(x), hmax16(x)
        assert (np.isnan(got) and np.isnan(want)) or got == want, (lanes, got, want)
        if not lanes:
            assert got == x.max()


@numba.njit
def _causal(x, j, i, out):
    store16(out, 0, causal16(load16(x, 0), j, i, -np.inf))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("j, i", [(0, 0), (16, 20), (16, 15), (32, 47), (32, 100), (48, 3)])
def test_causal16_keeps_keys_up_to_the_query(j, i, dtype):
    # oracle: the mask's definition, lane l is key j + l: kept when j + l <= query i. (16, 15):
    # the whole block in the future; (32, 100): the whole block in the past
    x = np.arange(1, LANES + 1, dtype=dtype)
    want = np.where(j + np.arange(LANES) <= i, x, -np.inf).astype(dtype)
    got = np.empty_like(x)
    _causal(x, j, i, got)
    assert np.array_equal(got, want)
    assert np.array_equal(causal16(x, j, i, -np.inf), want)


def test_python_versions_check_the_row_bounds():
    row = np.zeros(17, np.float32)
    load16(row, 1)                                               # row[1:17]: the last one that fits
    for j in (2, -1):
        with pytest.raises(IndexError, match=r"not inside a row of length 17"):
            load16(row, j)
        with pytest.raises(IndexError, match=r"not inside a row of length 17"):
            store16(row, j, splat16(np.float32(1)))


def test_compiled_versions_reject_wrong_types():
    @numba.njit
    def load_2d(a):
        return load16(a, 0)

    @numba.njit
    def mixed(a, b):
        return mul16(load16(a, 0), load16(b, 0))

    @numba.njit
    def splat_int(n):
        return splat16(n)

    @numba.njit
    def causal_float_index(a):
        return causal16(load16(a, 0), 0.5, 3, -np.inf)

    with pytest.raises(TypingError, match="1-D C-contiguous float32 or float64"):
        load_2d(np.zeros((2, 16)))
    with pytest.raises(TypingError, match="1-D C-contiguous float32 or float64"):
        numba.njit(lambda a: load16(a, 0))(np.zeros(16, np.int64))          # integers
    with pytest.raises(TypingError, match="1-D C-contiguous float32 or float64"):
        numba.njit(lambda a: load16(a[::2], 0))(np.zeros(32))               # a strided view
    with pytest.raises(TypingError, match="vectors of one dtype"):
        mixed(np.zeros(16, np.float32), np.zeros(16))
    with pytest.raises(TypingError, match="float32 or float64 scalar"):
        splat_int(3)
    with pytest.raises(TypingError, match="two integers and a float"):
        causal_float_index(np.zeros(16))
