"""minih/kernels/simd.py: the compiled vector functions against their plain Python versions.

Oracle: the Python versions (NumPy arrays of 8), which say what each function means;
compiled, each is one LLVM vector instruction. Tolerance: fma8 rounds once when compiled
(fused) and twice in Python, so rtol 1e-6 (float32) or 1e-14 (float64) per lane, and an
atol of the same relative size for cancellation in x * s + y; the rest is exact.
"""
import numba
import numpy as np
import pytest
from numba.core.errors import TypingError

from minih.kernels.simd import fma8, load8, mul8, splat8, store8

DTYPES = [np.float64, np.float32]


def combine(a, b, out, j, s):
    """out[j:j+8] = (a[1:9] * s + b[j:j+8]) * b[j:j+8], through every function of simd.py."""
    x = load8(a, 1)
    y = load8(b, j)
    store8(out, j, mul8(fma8(x, splat8(s), y), y))


combine_jit = numba.njit(combine)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("j", [0, 3])                            # an unaligned start too
def test_compiled_matches_python(dtype, j):
    rng = np.random.default_rng(j)
    a, b = rng.standard_normal(12).astype(dtype), rng.standard_normal(11).astype(dtype)
    s = dtype(rng.standard_normal())
    want, got = np.full(11, np.nan, dtype), np.full(11, np.nan, dtype)
    combine(a, b, want, j, s)
    combine_jit(a, b, got, j, s)
    assert got.dtype == want.dtype == dtype
    # rtol for the rounding of each lane, atol for cancellation in x * s + y (scaled by it)
    rtol = 1e-6 if dtype == np.float32 else 1e-14
    atol = rtol * np.abs(a[1:9] * s).max() * np.abs(b[j:j + 8]).max()
    np.testing.assert_allclose(got[j:j + 8], want[j:j + 8], rtol=rtol, atol=atol)
    np.testing.assert_allclose(want[j:j + 8], (a[1:9] * s + b[j:j + 8]) * b[j:j + 8],
                               rtol=rtol, atol=atol)
    outside = np.ones(11, bool)
    outside[j:j + 8] = False
    assert np.isnan(got[outside]).all() and np.isnan(want[outside]).all(), "wrote outside j:j+8"


def test_python_versions_check_the_row_bounds():
    row = np.zeros(9, np.float32)
    load8(row, 1)                                                # row[1:9]: the last one that fits
    for j in (2, -1):
        with pytest.raises(IndexError, match=r"not inside a row of length 9"):
            load8(row, j)
        with pytest.raises(IndexError, match=r"not inside a row of length 9"):
            store8(row, j, splat8(np.float32(1)))


def test_compiled_versions_reject_wrong_types():
    @numba.njit
    def load_2d(a):
        return load8(a, 0)

    @numba.njit
    def mixed(a, b):
        return mul8(load8(a, 0), load8(b, 0))

    @numba.njit
    def splat_int(n):
        return splat8(n)

    with pytest.raises(TypingError, match="1-D C-contiguous float32 or float64"):
        load_2d(np.zeros((2, 8)))
    with pytest.raises(TypingError, match="1-D C-contiguous float32 or float64"):
        numba.njit(lambda a: load8(a, 0))(np.zeros(8, np.int64))          # integers
    with pytest.raises(TypingError, match="1-D C-contiguous float32 or float64"):
        numba.njit(lambda a: load8(a[::2], 0))(np.zeros(16))              # a strided view
    with pytest.raises(TypingError, match="vectors of one dtype"):
        mixed(np.zeros(8, np.float32), np.zeros(8))
    with pytest.raises(TypingError, match="float32 or float64 scalar"):
        splat_int(3)
