"""The one place where minih's Numba kernels get their compile flags and input checks.

FASTMATH lets LLVM reassociate sums (so reductions vectorise), contract a*b+c into
one fused multiply-add, use reciprocals and ignore the sign of zero. It leaves out
`nnan` and `ninf` on purpose: with them LLVM may assume no value is ever NaN or
infinite, which silently breaks `-inf` masks, max() of a row and every NaN check.

`cache=True` writes the compiled machine code next to each module (in
minih/kernels/__pycache__, or under NUMBA_CACHE_DIR when that is set), so only the
first run pays the compile time. To clear it, delete the *.nbi and *.nbc files
there (or the NUMBA_CACHE_DIR directory); Numba also recompiles by itself when a
kernel's source file changes. It does NOT notice a change in a helper defined in
another file (Numba's "Notes on Caching": changes in symbols defined in another file
are not recognised): the helpers below and simd.py's are compiled into the kernels of
attention.py and loss.py. We hit it: a fixed helper kept failing inside the cached
attention kernels. So drop_stale_cache (at the end of this file) clears the package's
cache by itself when those files change; with NUMBA_CACHE_DIR set, clear it yourself
after editing them.

Threads: no kernel is `parallel=True`. A kernel that is worth running on several
threads takes a range of independent items (rows, (b, h) pairs) and minih/kernels/threads.py runs
chunks of them side by side (nogil=True, below, lets it): NUMBA_NUM_THREADS (default:
every core) or numba.set_num_threads() sets how many. minih/kernels/threads.py says why.
"""
import hashlib
import os
from pathlib import Path

import numba
import numpy as np

FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}   # a set: what numba accepts
FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def kernel(parallel: bool = False):
    """Decorator for a private jitted kernel: nopython, fastmath as above, cached.

    A kernel may call small jitted helpers (attention.py's _tile_scores, the float32
    helpers below): LLVM inlines them into the caller's machine code by itself.
    (Numba's own inline="always", which pastes them in before typing, ran no faster
    and added 1.5 s to the attention forward's compile time.)

    error_model="numpy": a float division by zero gives inf or NaN, as in the NumPy
    reference. Numba's default ("python") raises ZeroDivisionError instead, and the
    check it puts before every division kept LLVM from vectorising any loop that
    divides: the AdamW update ran one element at a time, 118 -> 21 us for REF's largest
    parameter (32 768 entries) and 0.99 -> 0.30 ms for optim.adamw_step's 17 calls
    (on a 2-core Intel Xeon VM). Numba's cache does not key on these flags: with
    NUMBA_CACHE_DIR set, clear it after changing them (see drop_stale_cache).

    no_cfunc_wrapper: Numba gives every compiled function a C entry as well as its
    Python one, for passing it to other code as a first-class function, which minih
    never does; it is code to generate and compile for each of the ~70 functions of a
    training step. Without it the first REF step in a new process, with an empty cache,
    took 0.0, 1.8 and 2.2 s less (of 29.5-33.7 s) in three alternating pairs on the
    project's 2-core AMD EPYC VM. (Dropping the Python entry of the helpers that only
    kernels call would save as much again, but a kernel's .py_func calls its helpers
    compiled, and Numba crashes the process, with no error, when Python calls a
    function that has no Python entry.)
    """
    return numba.njit(fastmath=FASTMATH, parallel=parallel, cache=True, nogil=True,
                      error_model="numpy", no_cfunc_wrapper=True)


def as_floats(names: str, *arrays):
    """Check that `arrays` are float32/float64 arrays of one dtype; return C-contiguous ones.

    Every kernel sees C-contiguous arrays only: one compiled version per dtype instead
    of one per memory layout, and unit-stride inner loops that vectorise. A
    non-contiguous input (a transposed view, a slice) is copied once here.
    """
    out = []
    for name, a in zip(names.split(), arrays):
        if not isinstance(a, np.ndarray) or a.dtype not in FLOAT_DTYPES:
            raise ValueError(f"{name} must be a float32 or float64 numpy array, got "
                             f"{getattr(a, 'dtype', type(a).__name__)}")
        out.append(np.ascontiguousarray(a))
    if len({a.dtype for a in out}) > 1:
        raise ValueError(f"{names.replace(' ', ', ')} must share one dtype, got "
                         f"{[str(a.dtype) for a in out]}")
    return out


def as_tokens(tokens, d_vocab=None):
    """Check integer tokens [B, T] (values in [0, d_vocab) when given); return int64 C array."""
    t = np.asarray(tokens)
    if t.ndim != 2 or not np.issubdtype(t.dtype, np.integer):
        raise ValueError(f"tokens must be an integer array [B, T], got dtype {t.dtype} shape {t.shape}")
    if d_vocab is not None and t.size and (t.min() < 0 or t.max() >= d_vocab):
        raise ValueError(f"tokens must lie in [0, d_vocab) = [0, {d_vocab}), "
                         f"got values in [{t.min()}, {t.max()}]")
    return np.ascontiguousarray(t, dtype=np.int64)


def expect_shape(name: str, a, shape):
    if a.shape != tuple(shape):
        raise ValueError(f"{name} has shape {a.shape}, expected {tuple(shape)}")


@kernel()                # the kernels' flags, error model included
def exp_shifted_f32(row, n, m):
    """row[j] = exp(row[j] - m) for j < n, in float32, vectorised; returns their sum.

    Why: without Intel's SVML (not a dependency of minih), LLVM cannot vectorise
    np.exp, and the scalar expf call was a third of the attention forward of the time
    (today softmax_row uses it, for the cross-entropy and the pattern twin; the fused
    attention has simd.exp16). This is
    the Cephes expf: with x = row[j] - m <= 0, split x = k ln2 + r (|r| <= ln2/2),
    exp(r) by a degree-6 polynomial, and 2^k made from its bits: the int32
    (k + 127) << 23 reinterpreted (not converted) as a float32. Relative error ~1e-7
    (float32 rounding); x < -87 (near float32's smallest normal number, 1.2e-38) is
    flushed to exactly 0. A NaN stays NaN: max(NaN, -87) is NaN (Numba's max, like
    Python's, keeps its first argument unless the second is larger), the NaN
    fails `x >= -87`, and NaN * 0 is NaN. Only for float32 rows; float64 uses np.exp.
    """
    total = np.float32(0.0)
    for j in range(n):
        x = row[j] - m
        xc = max(x, np.float32(-87.0))
        k = np.floor(xc * np.float32(1.4426950408889634) + np.float32(0.5))  # round(x / ln2)
        r = xc - k * np.float32(0.693359375) + k * np.float32(2.12194440e-4)  # x - k ln2, in 2 parts
        p = ((((np.float32(1.9875691500e-4) * r + np.float32(1.3981999507e-3)) * r
               + np.float32(8.3334519073e-3)) * r + np.float32(4.1665795894e-2)) * r
             + np.float32(1.6666665459e-1)) * r + np.float32(5.0000001201e-1)
        exp_r = p * r * r + r + np.float32(1.0)
        bits = np.int32((np.int32(k) + np.int32(127)) << np.int32(23))       # 2^k's float32 bits
        two_k = bits.view(np.float32) if x >= np.float32(-87.0) else np.float32(0.0)
        row[j] = exp_r * two_k
        total += row[j]
    return total


@kernel()                # the kernels' flags, error model included
def row_max_f32(row, n):
    """max(row[:n]) of a float32 row (n >= 1), vectorised.

    Why: FASTMATH leaves out `nnan` (see above), and without it LLVM will not vectorise
    a float max reduction: `max(m, row[j])` ran one element at a time, ~15% of the
    attention forward of the time (REF, one core of the project's 2-core AMD EPYC VM;
    docs/04; today softmax_row uses it, the fused attention has simd.hmax16).
    Integers have no NaN, so their max vectorises. A float32's bits b, reinterpreted
    as an int32, give the key
        key = b ^ ((b >> 31) & 0x7FFFFFFF)
    which orders like the floats: b >= 0 (positive floats) stays as it is, and for
    negative floats the 31 magnitude bits are flipped, so a larger magnitude gives a
    smaller key. The map is its own inverse, which turns the largest key back into the
    largest float. Every value stays an int32 (np.int32(...) around the key: Numba
    would widen `b >> 31` to int64 and halve the SIMD width). A NaN with the sign bit
    set (x86's default NaN) sorts below -inf and is skipped here; the softmax still
    turns it into NaN through exp.
    """
    m = np.int32(-2147483648)                                    # the smallest int32
    for j in range(n):
        b = np.float32(row[j]).view(np.int32)                    # the same 32 bits, as an int32
        m = max(m, np.int32(b ^ ((b >> 31) & 0x7FFFFFFF)))
    return np.int32(m ^ ((m >> 31) & 0x7FFFFFFF)).view(np.float32)


# --- a cache that knows its helpers ---------------------------------------------------------

# files whose kernels or constants are compiled into the kernels of other files: the
# helpers here and simd.py's (in attention.py, loss.py, mlp.py), and every file whose
# kernels step.py's whole-step kernel calls
HELPER_FILES = ("_jit.py", "simd.py", "attention.py", "embedding.py", "layernorm.py", "loss.py",
                "mlp.py")


def drop_stale_cache(folder=Path(__file__).parent):
    """Delete the Numba cache in folder/__pycache__ if a helper file changed since it was written.

    Why: Numba checks a cached kernel against its own source file only (see the module
    docstring), so after an edit to a helper here or in HELPER_FILES the kernels that call
    it (the attention's, the loss's, step.py's whole step) would keep running the old
    one. A hash of the helper files, stored next to the cache, tells. Only for the
    default cache location: with a cache directory set
    (NUMBA_CACHE_DIR or Numba's config file), or when Numba falls back to a per-user
    cache because this folder is read-only, clearing it is yours. It runs at import:
    a Python session that was already running (a notebook) keeps the helpers it
    compiled, so restart it after editing them. Any OSError leaves the cache as it is.
    """
    if numba.config.CACHE_DIR:
        return
    cache = folder / "__pycache__"
    stamp = cache / "helpers.sha1"
    try:
        digest = hashlib.sha1(b"".join((folder / f).read_bytes() for f in HELPER_FILES)).hexdigest()
        if stamp.exists() and stamp.read_text() == digest:
            return
        for f in list(cache.glob("*.nbi")) + list(cache.glob("*.nbc")):
            f.unlink(missing_ok=True)
        cache.mkdir(exist_ok=True)
        tmp = cache / f"helpers.sha1.{os.getpid()}"
        tmp.write_text(digest)
        os.replace(tmp, stamp)                                   # atomic: readers see old or new
    except OSError:
        pass


drop_stale_cache()


@kernel()                # the kernels' flags, error model included
def softmax_row(row, out, n, fast_exp, zero):
    """out[:n] = softmax(row[:n]): exp(row - m) / total, with m = max(row[:n]) and total
    = sum exp(row - m), both returned (the cross-entropy needs log(total) + m); a -inf
    entry gets 0.

    The one row softmax of the kernels (the pattern twin's and the cross-entropy's):
    float32 rows (fast_exp) take the vectorised max and exp above, float64 rows np.exp.
    `zero` is 0 in the rows' dtype, so that the sum keeps it. out may be row itself.
    """
    if fast_exp:
        m = row_max_f32(row, n)
        for j in range(n):
            out[j] = row[j]
        total = exp_shifted_f32(out, n, m)                   # out = exp(row - m), 0 at -inf
    else:
        m = row[0]
        for j in range(1, n):
            m = max(m, row[j])
        total = zero
        for j in range(n):
            out[j] = np.exp(row[j] - m)
            total += out[j]
    inv = 1 / total
    for j in range(n):
        out[j] *= inv
    return m, total
