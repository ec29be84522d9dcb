"""The Numba backend (minih.kernels) against the NumPy reference (minih.ops).

Oracle: every kernel's output is compared with the reference op it mirrors, on the
same inputs; the reference itself is checked against finite differences in
tests/test_ops.py and by minih.gradcheck. Then the whole model: both backends give
the same loss and the same gradient for every parameter.

Tolerances, with their reason:
  float64  rtol 1e-10, atol 1e-12: the kernels sum in another order than BLAS and
           NumPy (and skip the masked zeros); float64 rounding (1e-16 per operation,
           a few hundred terms per sum) stays far below this. A wrong index or
           formula gives differences of order 1.
  float32  rtol 1e-4, atol 1e-5: float32 rounding (6e-8 per operation) over sums of
           up to ~50 terms in a different order, plus the float32 polynomial exp of
           the attention forward (relative error ~1e-7), gives ~1e-6 relative.
Shape legend: B batch, T positions, H heads, E d_head, D d_model, V d_vocab.
"""
import os
import subprocess
import sys
import threading

import numba
import numpy as np
import pytest

import minih
from minih import kernels, ops, threads
from minih.kernels import (_jit, attention, attention_loops, attention_tiles, blas, embedding, gemm,
                           layernorm, loss)
from minih.kernels import adamw as k_adamw
from helpers import assert_close

TOL = {np.float64: (1e-10, 1e-12), np.float32: (1e-4, 1e-5)}

# (B, T, H, E, D, V): odd sizes, 1-sized ones, and T > 16 (the SIMD padding of the
# attention rows: T = 37 ends in a partial block, T = 32 in a full one); T = 70 > ROW_BLOCK
# = 64 gives the blocked kernels a full block of query rows and a partial one, T = 128 two
# full ones; E = 29 = 16 + 8 + 4 + 1 runs every block of dimensions in the forward's score loops
SHAPES = [(2, 5, 3, 4, 6, 7), (1, 1, 1, 1, 1, 2), (1, 37, 1, 1, 3, 5), (3, 32, 2, 5, 4, 3),
          (2, 19, 4, 16, 8, 11), (1, 70, 2, 3, 4, 5), (1, 21, 2, 29, 5, 6), (1, 128, 1, 2, 3, 4)]
DTYPES = [np.float64, np.float32]


def rand(rng, shape, dtype, contiguous=True):
    """Standard normal array; contiguous=False gives a non-contiguous view with the same values
    (every other element of a twice-as-long last axis), to check the wrappers' layout handling."""
    if contiguous:
        return rng.standard_normal(shape).astype(dtype)
    big = rng.standard_normal(shape[:-1] + (2 * shape[-1],)).astype(dtype)
    view = big[..., ::2]
    assert not view.flags.c_contiguous or view.size <= 1
    return view


def close(name, got, want, dtype):
    rtol, atol = TOL[dtype]
    assert got.dtype == want.dtype, f"{name}: dtype {got.dtype}, expected {want.dtype}"
    assert_close(name, got, want, rtol, atol)


def test_same_names_as_reference():
    # oracle: minih/ops/__init__.py's public names; a backend is swapped by module
    public = {n for n in dir(ops) if not n.startswith("_") and callable(getattr(ops, n))}
    missing = {n for n in public if not hasattr(kernels, n)}
    assert not missing, f"minih.kernels lacks {sorted(missing)}"
    assert kernels.NAME == "numba" and kernels.LN_EPS == ops.LN_EPS


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("contiguous", [True, False])
def test_attention_ops(shape, dtype, contiguous):
    B, T, H, E, D, V = shape
    rng = np.random.default_rng(hash((shape, contiguous)) % 2**32)
    q, k, v, d_z = (rand(rng, (B, T, H, E), dtype, contiguous) for _ in range(4))
    got, want = kernels.attention_forward(q, k, v), ops.attention_forward(q, k, v)
    for name, g, w in zip(("z", "pattern"), got[:2], want[:2]):
        close(name, g, w, dtype)
    finite = np.isfinite(want[2])
    assert np.array_equal(np.isfinite(got[2]), finite), "scores: -inf exactly above the diagonal"
    assert np.all(got[2][~finite] == -np.inf)
    close("scores", got[2][finite], want[2][finite], dtype)
    assert kernels.attention_forward(q, k, v, with_scores=False)[2] is None
    pattern = want[1]
    for name, g, w in zip(("d_q", "d_k", "d_v"), kernels.attention_backward(d_z, q, k, v, pattern),
                          ops.attention_backward(d_z, q, k, v, pattern)):
        close(name, g, w, dtype)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["blas", "loops"])
def test_both_attention_backwards(shape, dtype, kind, monkeypatch):
    # oracle: the reference backward. attention.BACKWARD follows the CPU (AVX-512 or not), so
    # each kernel is also run here on purpose: both must be right on any machine. T = 37, 70
    # end in a partial block of attention_loops.ROWS = 8 query rows; E = 5, 29 leave E % 8 dims
    B, T, H, E, D, V = shape
    rng = np.random.default_rng((SHAPES.index(shape), DTYPES.index(dtype), kind == "loops"))
    q, k, v, d_z = (rand(rng, (B, T, H, E), dtype, contiguous=False) for _ in range(4))
    pattern = ops.attention_forward(q, k, v)[1]
    monkeypatch.setattr(attention, "BACKWARD", kind)
    for name, g, w in zip(("d_q", "d_k", "d_v"), kernels.attention_backward(d_z, q, k, v, pattern),
                          ops.attention_backward(d_z, q, k, v, pattern)):
        close(f"{kind} {name}", g, w, dtype)


# The tile kernels (attention_tiles.py) run when E % 16 == 0: T = 1 and 3 (fewer rows than
# one tile of 4), 4 (one tile), 8 (keys only in the scalar tail: n < 16), 37 (a row left
# after the tiles, keys past a multiple of 16), 70 (full and partial 16-key blocks and
# 8-row blocks of the backward), 16 and 32 (the last 16-key step ends at the row's end);
# E = 32: two 16-wide passes of _tile_sum_keys
TILE_SHAPES = [(1, 1, 1, 16), (2, 3, 2, 16), (1, 4, 1, 16), (1, 8, 3, 16), (2, 16, 1, 16),
               (1, 32, 1, 16), (2, 37, 3, 32), (1, 70, 2, 16)]


@pytest.mark.parametrize("shape", SHAPES[:4] + TILE_SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["blas", "tiles"])
def test_both_attention_forwards(shape, dtype, kind, monkeypatch):
    # oracle: the reference forward. attention.FORWARD follows the CPU, as BACKWARD does, so
    # each kernel runs here on purpose; "tiles" with E % 16 != 0 (SHAPES[:4]) takes the
    # row-by-row kernel, which must be right too
    B, T, H, E = shape[:4]
    rng = np.random.default_rng((len(shape), T, E, kind == "tiles"))
    q, k, v = (rand(rng, (B, T, H, E), dtype, contiguous=False) for _ in range(3))
    monkeypatch.setattr(attention, "FORWARD", kind)
    want = ops.attention_forward(q, k, v)
    for with_scores in (False, True):
        z, pattern, scores = kernels.attention_forward(q, k, v, with_scores=with_scores)
        close(f"{kind} z", z, want[0], dtype)
        close(f"{kind} pattern", pattern, want[1], dtype)
    finite = np.isfinite(want[2])                               # scores: from with_scores=True
    assert np.array_equal(np.isfinite(scores), finite) and np.all(scores[~finite] == -np.inf)
    close(f"{kind} scores", scores[finite], want[2][finite], dtype)


@pytest.mark.parametrize("shape", TILE_SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_loop_backward_with_tiles(shape, dtype, monkeypatch):
    # oracle: the reference backward; the loop backward computes d_p and d_q in tiles here
    B, T, H, E = shape
    rng = np.random.default_rng((T, E, 7))
    q, k, v, d_z = (rand(rng, (B, T, H, E), dtype) for _ in range(4))
    pattern = ops.attention_forward(q, k, v)[1]
    monkeypatch.setattr(attention, "BACKWARD", "loops")
    for name, g, w in zip(("d_q", "d_k", "d_v"), kernels.attention_backward(d_z, q, k, v, pattern),
                          ops.attention_backward(d_z, q, k, v, pattern)):
        close(name, g, w, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 8, 1, 8), (1, 9, 1, 9), (3, 19, 4, 9), (2, 70, 5, 16),
                                   (1, 1, 1, 1), (5, 9, 3, 1)])
def test_loop_backward_writes_every_output(shape, dtype):
    # oracle: the reference backward, on outputs filled with NaN first (an element the kernel
    # forgot stays NaN and fails). T = 8: one full block of ROWS = 8 rows; T = 9: one more row;
    # B*H = 12 and 10 pairs: chunks of several pairs, which reuse the scratch. The pattern is
    # the Numba forward's, as in training.
    B, T, H, E = shape
    rng = np.random.default_rng(T * 100 + E)
    q, k, v, d_z = (rng.standard_normal(shape).astype(dtype) for _ in range(4))
    pattern = kernels.attention_forward(q, k, v)[1]
    d_q, d_k, d_v = (np.full(shape, np.nan, dtype) for _ in range(3))
    attention_loops.attention_backward_loops(d_z, q, k, v, pattern, dtype(1 / np.sqrt(E)),
                                             d_q, d_k, d_v)
    for name, g, w in zip(("d_q", "d_k", "d_v"), (d_q, d_k, d_v),
                          ops.attention_backward(d_z, q, k, v, pattern)):
        close(name, g, w, dtype)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("contiguous", [True, False])
def test_projections_smear_output(shape, dtype, contiguous):
    B, T, H, E, D, V = shape
    rng = np.random.default_rng(hash((shape, contiguous, 1)) % 2**32)
    x = rand(rng, (B, T, D), dtype, contiguous)
    W = rand(rng, (H, D, E), dtype, contiguous)
    W_O = rand(rng, (H, E, D), dtype, contiguous)
    d_out = rand(rng, (B, T, H, E), dtype, contiguous)
    z = rand(rng, (B, T, H, E), dtype, contiguous)
    d_res = rand(rng, (B, T, D), dtype, contiguous)
    smear = rand(rng, (H,), dtype)
    close("project_forward", kernels.project_forward(x, W), ops.project_forward(x, W), dtype)
    for name, g, w in zip(("d_x", "d_W"), kernels.project_backward(d_out, x, W),
                          ops.project_backward(d_out, x, W)):
        close(name, g, w, dtype)
    close("smear_forward", kernels.smear_forward(z, smear), ops.smear_forward(z, smear), dtype)
    for name, g, w in zip(("d_k", "d_smear"), kernels.smear_backward(d_out, z, smear),
                          ops.smear_backward(d_out, z, smear)):
        close(name, g, w, dtype)
    close("output_forward", kernels.output_forward(z, W_O), ops.output_forward(z, W_O), dtype)
    close("head_results", kernels.head_results(z, W_O), ops.head_results(z, W_O), dtype)
    for name, g, w in zip(("d_z", "d_W_O"), kernels.output_backward(d_res, z, W_O),
                          ops.output_backward(d_res, z, W_O)):
        close(name, g, w, dtype)
    W_U = rand(rng, (D, V), dtype, contiguous)
    d_logits = rand(rng, (B, T, V), dtype, contiguous)
    close("unembed_forward", kernels.unembed_forward(x, W_U), ops.unembed_forward(x, W_U), dtype)
    for name, g, w in zip(("d_x", "d_W_U"), kernels.unembed_backward(d_logits, x, W_U),
                          ops.unembed_backward(d_logits, x, W_U)):
        close(name, g, w, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("M", [blas.MIN_ROWS, 1501])
def test_blas_row_chunks(dtype, M):
    # oracle: one plain NumPy product. M >= MIN_ROWS takes the chunked path (1501: chunks of
    # unequal size); the chunks are fixed, so 1 thread and all threads give identical bits.
    rng = np.random.default_rng(M)
    a, b = rand(rng, (M, 7), dtype), rand(rng, (M, 5), dtype)
    w = rand(rng, (5, 3), dtype).T                               # a transposed (F-order) operand
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = blas.matmul(b, w.T), blas.matmul_tn(a, b)
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        every = blas.matmul(b, w.T), blas.matmul_tn(a, b)
    finally:
        numba.set_num_threads(before)
    close("matmul", one[0], b @ w.T, dtype)
    close("matmul_tn", one[1], a.T @ b, dtype)
    assert all(np.array_equal(x, y) for x, y in zip(one, every))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
def test_gemm_on_strided_blocks(dtype, trans_a, trans_b):
    # oracle: NumPy's product. a, b, c are column blocks of wider arrays (rows further apart
    # than their length), as the attention kernels pass them; size-1 and empty inner sizes
    rng = np.random.default_rng(7)

    for M, N, K in [(3, 4, 5), (1, 1, 1), (7, 1, 3), (1, 6, 2), (4, 3, 0)]:
        a_rows, a_cols = (K, M) if trans_a else (M, K)
        b_rows, b_cols = (N, K) if trans_b else (K, N)
        a = rng.standard_normal((a_rows, a_cols + 3)).astype(dtype)[:, 1:1 + a_cols]
        b = rng.standard_normal((b_rows, b_cols + 5)).astype(dtype)[:, 2:2 + b_cols]
        c_big = rng.standard_normal((M, N + 4)).astype(dtype)
        product = (a.T if trans_a else a) @ (b.T if trans_b else b)
        for f in (_gemm_jitted, gemm.gemm):
            c = c_big.copy()
            f(0.5, a, b, 2.0, c[:, :N], trans_a, trans_b)           # c = 0.5 op(a) op(b) + 2 c
            close("gemm", c[:, :N], 0.5 * product + 2.0 * c_big[:, :N], dtype)
            assert np.array_equal(c[:, N:], c_big[:, N:]), "gemm wrote outside c"
            c[:, :N] = np.nan                                        # beta = 0 ignores c
            f(1.0, a, b, 0.0, c[:, :N], trans_a, trans_b)
            close("gemm beta=0", c[:, :N], product, dtype)


@numba.njit
def _gemm_jitted(alpha, a, b, beta, c, trans_a, trans_b):
    gemm.gemm(alpha, a, b, beta, c, trans_a, trans_b)


def test_gemm_single_row_and_column_views():
    # oracle: NumPy. A single row's stride means nothing (NumPy stores 0, or anything)
    rng = np.random.default_rng(8)
    x = rng.standard_normal((5, 4)).astype(np.float32)
    w = rng.standard_normal((4, 3)).astype(np.float32)
    for a in (x[None, 0], x[:1][::-1], x[2:3]):                   # [1, 4] views
        for f in (_gemm_jitted, gemm.gemm):
            c = np.full((1, 3), np.nan, np.float32)
            f(1.0, a, w, 0.0, c, False, False)
            close("one row", c, a @ w, np.float32)
    col = np.ones((4, 1), np.float32).T                           # [1, 4], strides (4, 4)
    for f in (_gemm_jitted, gemm.gemm):
        c = np.empty((1, 3), np.float32)
        f(1.0, col, w, 0.0, c, False, False)
        close("column.T", c, col @ w, np.float32)


def test_gemm_rejects_bad_blocks():
    a, b = np.ones((3, 4), np.float32), np.ones((4, 2), np.float32)
    c = np.zeros((3, 2), np.float32)
    overlapping = np.lib.stride_tricks.as_strided(np.ones(8, np.float32), (3, 4), (4, 4))
    record = np.zeros(3, dtype=[("x", "<f4", (4,)), ("y", "u1")])  # rows 17 bytes apart
    square = np.ones((4, 4), np.float32)
    cases = [((a, b, np.zeros((3, 3), np.float32)), "c's shape"),
             ((np.ones((3, 8), np.float32)[:, ::2], b, c), "contiguous"),
             ((overlapping, b, c), "overlap"),
             ((a[::-1], b, c), "overlap"),                         # rows in reverse order
             ((record["x"], b, c), "whole number of elements"),
             ((square, square, square), "share memory")]          # c is a
    for f in (_gemm_jitted, gemm.gemm):
        for (x, y, z), message in cases:
            with pytest.raises(ValueError, match=message):
                f(1.0, x, y, 0.0, z, False, False)

    @numba.njit
    def untyped(a, b, c, flag):
        gemm.gemm(1.0, a, b, 0.0, c, flag, False)

    with pytest.raises(numba.core.errors.TypingError, match="one dtype"):
        _gemm_jitted(1.0, a, b.astype(np.float64), 0.0, c, False, False)
    with pytest.raises(numba.core.errors.TypingError, match="must be bools"):
        untyped(a, b, c, 1)
    read_only = c.copy()
    read_only.flags.writeable = False
    with pytest.raises(numba.core.errors.TypingError, match="read-only"):
        _gemm_jitted(1.0, a, b, 0.0, read_only, False, False)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("contiguous", [True, False])
def test_layernorm_embedding_loss(shape, dtype, contiguous):
    B, T, H, E, D, V = shape
    rng = np.random.default_rng(hash((shape, contiguous, 2)) % 2**32)
    x, d_y = rand(rng, (B, T, D), dtype, contiguous), rand(rng, (B, T, D), dtype, contiguous)
    w, b = rand(rng, (D,), dtype, contiguous), rand(rng, (D,), dtype, contiguous)
    y, scale = ops.layernorm_forward(x, w, b)
    for name, g, want in zip(("y", "scale"), kernels.layernorm_forward(x, w, b), (y, scale)):
        close(name, g, want, dtype)
    for name, g, want in zip(("d_x", "d_w", "d_b"), kernels.layernorm_backward(d_y, x, scale, w),
                             ops.layernorm_backward(d_y, x, scale, w)):
        close(name, g, want, dtype)
    W_E = rand(rng, (V, D), dtype, contiguous)
    tokens = rng.integers(0, V, (B, T))                          # repeats: the scatter must add
    close("embed_forward", kernels.embed_forward(W_E, tokens), ops.embed_forward(W_E, tokens), dtype)
    close("embed_backward", kernels.embed_backward(d_y, tokens, V),
          ops.embed_backward(d_y, tokens, V), dtype)
    close("pos_embed_backward", kernels.pos_embed_backward(d_y, T + 2),
          ops.pos_embed_backward(d_y, T + 2), dtype)
    if T >= 2:
        logits = 3 * rand(rng, (B, T, V), dtype, contiguous)
        (l_got, p_got), (l_want, p_want) = (kernels.cross_entropy_forward(logits, tokens),
                                            ops.cross_entropy_forward(logits, tokens))
        assert abs(l_got - l_want) <= TOL[dtype][0] * abs(l_want), (l_got, l_want)
        close("probs", p_got, p_want, dtype)
        close("d_logits", kernels.cross_entropy_backward(p_want, tokens),
              ops.cross_entropy_backward(p_want, tokens), dtype)
        close("per_token_loss", kernels.per_token_loss(logits, tokens),
              ops.per_token_loss(logits, tokens), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("step, weight_decay, grad_scale", [(1, 0.0, 1.0), (7, 0.1, 0.3)])
def test_adamw_update(dtype, step, weight_decay, grad_scale):
    rng = np.random.default_rng(step)
    p, m = rand(rng, (5, 3), dtype), rand(rng, (5, 3), dtype)
    v = np.abs(rand(rng, (5, 3), dtype))
    g = rand(rng, (3, 5), dtype).T                               # non-contiguous gradient
    ref = [a.copy() for a in (p, m, v)]
    args = (1e-2, 0.9, 0.99, 1e-8, weight_decay, step, grad_scale)
    ops.adamw_update(ref[0], g, ref[1], ref[2], *args)
    kernels.adamw_update(p, g, m, v, *args)
    for name, got, want in zip("pmv", (p, m, v), ref):
        close(name, got, want, dtype)


def test_fast_exp_f32():
    # oracle: np.exp in float64; the float32 polynomial is accurate to float32 rounding
    x = np.concatenate([-np.linspace(0, 87, 1001), [-87.5, -200.0, -np.inf]]).astype(np.float32)
    for f in (_jit.exp_shifted_f32, _jit.exp_shifted_f32.py_func):
        row = x.copy()
        total = f(row, x.size, np.float32(0))
        want = np.exp(x.astype(np.float64))
        assert_close("exp", row[:1001], want[:1001], 2e-7, 1e-44)  # 2e-7: ~2 float32 ulps
        assert np.all(row[1001:] == 0), "exp below float32's normal range must be exactly 0"
        assert abs(total - want.sum()) <= 1e-6 * want.sum()
        nan_row = np.array([np.nan, -1.0], np.float32)              # a NaN score stays NaN
        with np.errstate(invalid="ignore"):                         # (plain NumPy warns on int32(NaN))
            assert np.isnan(f(nan_row, 2, np.float32(0))) and np.isnan(nan_row[0])


def test_row_max_f32():
    # oracle: np.max; rows with negative numbers only, signed zeros, -inf, ties, and n < len
    rng = np.random.default_rng(3)
    below_minus_1 = float(np.nextafter(np.float32(-1), np.float32(-2)))   # the next float32 down
    rows = [rng.standard_normal(37), -np.abs(rng.standard_normal(16)) - 1, [-0.0, 0.0],
            [0.0, -0.0], [-np.inf, -1e30, -2.0], [5.0, 5.0, -5.0], [3.0], rng.standard_normal(300) * 1e3,
            [below_minus_1, -1.0], [-1.0, below_minus_1]]           # neighbours: every key bit counts
    for f in (_jit.row_max_f32, _jit.row_max_f32.py_func):
        for r in rows:
            r = np.asarray(r, dtype=np.float32)
            for n in sorted({1, max(1, r.size // 2), r.size}):
                before = r.copy()
                got = f(r, n)
                want = r[:n].max()
                assert got == want, (r[:n], got, want)   # (0.0 == -0.0: numpy's own max
                # of [0.0, -0.0] is -0.0; the sign of a zero max does not change a softmax)
                assert np.array_equal(r, before), "row_max_f32 must not change the row"


def test_drop_stale_cache_clears_only_when_a_helper_changes(tmp_path, monkeypatch):
    # oracle: which files are left. Numba's cache ignores edits to helpers in other files
    monkeypatch.setattr(numba.config, "CACHE_DIR", "")            # the default location
    for name in _jit.HELPER_FILES:
        (tmp_path / name).write_text("version 1")
    cache = tmp_path / "__pycache__"
    cache.mkdir()
    kernel_files = [cache / "k.nbi", cache / "k.nbc"]

    def write_cache():
        for f in kernel_files + [cache / "m.pyc"]:
            f.write_text("compiled")

    write_cache()
    _jit.drop_stale_cache(tmp_path)                              # no stamp yet: cleared
    assert not any(f.exists() for f in kernel_files) and (cache / "m.pyc").exists()
    write_cache()
    _jit.drop_stale_cache(tmp_path)                              # helpers unchanged: kept
    assert all(f.exists() for f in kernel_files)
    (tmp_path / "gemm.py").write_text("version 2")
    _jit.drop_stale_cache(tmp_path)                              # a helper changed: cleared
    assert not any(f.exists() for f in kernel_files)
    write_cache()
    (tmp_path / "gemm.py").write_text("version 3")
    monkeypatch.setattr(numba.config, "CACHE_DIR", str(tmp_path / "elsewhere"))
    _jit.drop_stale_cache(tmp_path)                              # the user's own cache: untouched
    assert all(f.exists() for f in kernel_files)


# --- the kernel bodies without the JIT: their Python logic, line by line ----------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("E", [5, 16, 21, 29])
def test_forward_row_helpers_without_jit(E, dtype):
    # oracle: the reference's scores and pattern for one (b, h), row by row. The forward's
    # .py_func (below) calls these helpers compiled; here their own Python runs: E = 5 < 16 (zero-fill), 16, 21 = 16 + 4 + 1, 29 = 16 + 8 + 4 + 1
    rng = np.random.default_rng(E)
    T, H = 19, 2
    q, k, v = (rng.standard_normal((1, T, H, E)).astype(dtype) for _ in range(3))
    _, pattern_ref, scores_ref = ops.attention_forward(q, k, v)
    scale, zero = dtype(1 / np.sqrt(E)), dtype(0)
    h = 1
    kT = np.ascontiguousarray(k[0, :, h].T)                      # [E, T]
    for i in range(T):
        n = i + 1
        n_pad = min(T, (n + attention.SIMD - 1) // attention.SIMD * attention.SIMD)
        row = np.full(T, np.nan, dtype)
        attention._row_scores.py_func(row, q, 0, i, h, kT, scale, n_pad)
        close("scores row", row[:n], scores_ref[0, h, i, :n], dtype)
        attention._row_softmax.py_func(row, n, dtype == np.float32, zero)
        close("pattern row", row, pattern_ref[0, h, i], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("E", [5, 8, 16, 21])
def test_backward_loop_helpers_without_jit(E, dtype):
    # oracle: the same products in NumPy. The loop backward's .py_func (test_kernel_bodies_
    # without_jit) calls these helpers compiled; here their own Python runs: E = 5 < 8 (the
    # zero-fill), 8, 16 (one and two blocks of eight dimensions), 21 = 16 + 5 left one by one
    rng = np.random.default_rng(E)
    T, rows, n = 40, 6, 32                                       # 6 of the block's 8 rows; keys j < 32
    a = rng.standard_normal((attention_loops.ROWS, E)).astype(dtype)   # all eight rows count
    w = rng.standard_normal((attention_loops.ROWS, T)).astype(dtype)
    xT = rng.standard_normal((E, T)).astype(dtype)
    acc = rng.standard_normal((E, T)).astype(dtype)
    want = acc.copy()
    want[:, :n] += a.T @ w[:, :n]
    attention_loops._add_outer.py_func(acc, *w, a, n)
    close("add_outer", acc, want, dtype)
    out = np.full((attention_loops.ROWS, T), np.nan, dtype)
    attention_loops._rows_times_T.py_func(out, a, xT, rows, n, dtype(0))
    close("rows_times_T", out[:rows, :n], a[:rows] @ xT[:, :n], dtype)
    assert np.isnan(out[rows:]).all() and np.isnan(out[:, n:]).all(), "wrote outside rows x n"
    d_q = np.full((1, T, 2, E), np.nan, dtype)
    attention_loops._rows_dot_T.py_func(d_q, 0, 3, 1, w, xT, rows, n, dtype(0))  # b 0, i0 3, h 1
    close("rows_dot_T", d_q[0, 3:3 + rows, 1], w[:rows, :n] @ xT[:, :n].T, dtype)
    written = np.zeros(d_q.shape, bool)
    written[0, 3:3 + rows, 1] = True
    assert np.isnan(d_q[~written]).all(), "wrote outside d_q[b, i0:i0 + rows, h]"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("E", [16, 32])
@pytest.mark.parametrize("T, n", [(40, 37), (32, 32)])
def test_tile_helpers_without_jit(T, n, E, dtype):
    # oracle: the same products in NumPy. The kernels' .py_func (test_kernel_bodies_without_jit)
    # call these helpers compiled; here their own Python runs, simd.py's functions on NumPy
    # arrays of 8 (which check every load and store against the row's length). n = 37: two
    # vector steps of 16 keys, then 5 keys in the scalar tail; n = T = 32: the last vector
    # step ends at the row's end; E = 32: two passes of 16 dims
    rng = np.random.default_rng(E)
    scale, zero = dtype(0.25), dtype(0)
    a = rng.standard_normal((4, E)).astype(dtype)
    xT = rng.standard_normal((E, T)).astype(dtype)
    o = np.full((4, T), np.nan, dtype)
    attention_tiles._tile_dot_keys.py_func(*o, *a, xT, n, scale, zero)
    close("tile_dot_keys", o[:, :n], scale * (a @ xT[:, :n]), dtype)
    assert np.isnan(o[:, n:]).all(), "wrote past key n"
    w = rng.standard_normal((4, T)).astype(dtype)
    x = rng.standard_normal((1, T, 2, E)).astype(dtype)
    out = np.full((1, T, 2, E), np.nan, dtype)
    attention_tiles._tile_sum_keys.py_func(out, 0, 3, 1, *w, x, n, zero)     # b 0, i0 3, h 1
    close("tile_sum_keys", out[0, 3:7, 1], w[:, :n] @ x[0, :n, 1], dtype)
    written = np.zeros(out.shape, bool)
    written[0, 3:7, 1] = True
    assert np.isnan(out[~written]).all(), "wrote outside out[b, i0:i0 + 4, h]"


def test_tile_kernels_without_jit_stay_inside_their_rows():
    # oracle: the reference forward and backward, with the whole Numba backend running as
    # Python (NUMBA_DISABLE_JIT=1, in a fresh process): simd.py's load8 and store8 then check
    # every vector access of the tile kernels against its row's length (IndexError), at the
    # lengths the kernels really use. T = 5, 32, 37: a row left after the tiles, a last
    # 16-key step that ends at the row's end, keys in the scalar tail; E = 32: two passes
    code = """
import numpy as np
from minih import kernels, ops
from minih.kernels import attention
attention.FORWARD, attention.BACKWARD = "tiles", "loops"
for shape in [(1, 5, 2, 16), (1, 32, 1, 16), (1, 37, 1, 32)]:
    rng = np.random.default_rng(shape[1])
    q, k, v, d_z = (rng.standard_normal(shape) for _ in range(4))
    z, pattern, _ = kernels.attention_forward(q, k, v)
    want = ops.attention_forward(q, k, v)
    assert np.allclose(z, want[0], atol=1e-12) and np.allclose(pattern, want[1], atol=1e-12)
    for g, w in zip(kernels.attention_backward(d_z, q, k, v, pattern),
                    ops.attention_backward(d_z, q, k, v, pattern)):
        assert np.allclose(g, w, atol=1e-12)
print("ok")
"""
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_run_tasks_waits_and_raises_the_calling_threads_error_first(monkeypatch):
    # oracle: which tasks ran. Of n threads, thread w runs the w-th of n consecutive shares
    # of the tasks (7 tasks, 3 threads: [0, 1], [2, 3], [4, 5, 6]); the calling thread is w = 0
    monkeypatch.setattr(numba, "get_num_threads", lambda: 3)
    done = []

    def task(i, fail=False):
        def t():
            if fail:
                raise RuntimeError(f"task {i}")
            done.append(i)
        return t

    threads.run_tasks([task(i) for i in range(7)])
    assert sorted(done) == list(range(7))
    done.clear()
    with pytest.raises(RuntimeError, match="task 0"):               # the calling thread's own task
        threads.run_tasks([task(0, fail=True)] + [task(i, fail=i == 3) for i in range(1, 7)])
    assert sorted(done) == [2, 4, 5, 6], "a share stops at its error; the others run to their end"
    done.clear()
    with pytest.raises(RuntimeError, match="task 4"):               # a worker's
        threads.run_tasks([task(i, fail=i == 4) for i in range(7)])
    assert sorted(done) == [0, 1, 2, 3]


def test_run_alone_keeps_all_work_on_the_calling_thread(monkeypatch):
    # oracle: the thread ids, recorded; run_chunks inside is one chunk, and run_alone
    # returns f's value and leaves the calling thread unmarked
    monkeypatch.setattr(numba, "get_num_threads", lambda: 2)
    seen = []

    def f():
        threads.run_tasks([lambda: seen.append(threading.get_ident()) for _ in range(4)])
        threads.run_chunks(10, lambda i0, i1: seen.append((threading.get_ident(), i0, i1)))
        return "value"

    assert threads.run_alone(f) == "value"
    me = threading.get_ident()
    assert seen == [me] * 4 + [(me, 0, 10)]
    assert not threads.in_task()
    with pytest.raises(ZeroDivisionError):                       # an error leaves it unmarked too
        threads.run_alone(lambda: 1 / 0)
    assert not threads.in_task()


def test_run_tasks_keep_the_callers_errstate(monkeypatch):
    # oracle: np.geterr() inside each task, and which threads ran them. np.errstate is a
    # thread's own setting, which pool threads do not inherit by themselves: a shard of a
    # diverging training step (train.py silences its overflow) warned
    monkeypatch.setattr(numba, "get_num_threads", lambda: 2)
    seen = []
    with np.errstate(over="ignore"):
        threads.run_tasks([lambda: seen.append((threading.get_ident(), np.geterr()["over"]))
                           for _ in range(4)])
    assert len({ident for ident, _ in seen}) == 2, "the tasks should run on two threads"
    assert [over for _, over in seen] == ["ignore"] * 4
    assert np.geterr()["over"] != "ignore"                       # and the caller's is restored


def test_run_tasks_nested_in_a_task_finishes(monkeypatch):
    # oracle: every inner task ran. A pool worker that waited for its own pool would hang,
    # so the call runs in a daemon thread and must end within the timeout
    monkeypatch.setattr(numba, "get_num_threads", lambda: 2)
    done = []
    inner = lambda i: lambda: threads.run_tasks([lambda j=j: done.append((i, j)) for j in range(3)])
    caller = threading.Thread(target=threads.run_tasks, args=([inner(i) for i in range(4)],),
                              daemon=True)
    caller.start()
    caller.join(timeout=30)
    assert not caller.is_alive(), "nested run_tasks did not finish (a worker waited for itself)"
    assert sorted(done) == [(i, j) for i in range(4) for j in range(3)]


def test_work_inside_a_task_stays_on_its_thread(monkeypatch):
    # oracle: the thread ids, recorded. A task's own run_tasks and run_chunks calls (a
    # shard of the batch running the model) must run on that task's thread, the calling
    # thread's tasks included, and run_chunks there is one chunk; outside a task, and
    # for a lone task, the work is split as usual
    monkeypatch.setattr(numba, "get_num_threads", lambda: 2)
    seen = []                                                     # (outer task, thread, inner)

    def outer(i):
        def t():
            me = threading.get_ident()
            threads.run_tasks([lambda j=j: seen.append((i, me, threading.get_ident(), j))
                               for j in range(3)])
            threads.run_chunks(10, lambda i0, i1: seen.append((i, me, threading.get_ident(),
                                                               (i0, i1))))
        return t

    threads.run_tasks([outer(i) for i in range(4)])
    assert len(seen) == 4 * 4
    assert all(me == ran_on for _, me, ran_on, _ in seen), "nested work left its task's thread"
    for i in range(4):
        assert [j for k, _, _, j in seen if k == i] == [0, 1, 2, (0, 10)]
    assert len({me for _, me, _, _ in seen}) == 2, "the outer tasks did not use both threads"
    assert not threads.in_task(), "the calling thread stayed marked after its tasks"
    lone = []                                                     # a lone task is not marked
    threads.run_tasks([lambda: threads.run_chunks(10, lambda i0, i1: lone.append((i0, i1)))])
    assert len(lone) == threads.CHUNKS_PER_THREAD * 2


@pytest.mark.parametrize("n_items, n_threads", [(1, 2), (3, 2), (8, 1), (37, 2), (256, 3)])
def test_run_chunks_covers_every_item_once_in_order(monkeypatch, n_items, n_threads):
    # oracle: the chunks, recorded; they must tile range(n_items) with no gap or overlap
    monkeypatch.setattr(numba, "get_num_threads", lambda: n_threads)
    seen = []
    threads.run_chunks(n_items, lambda i0, i1: seen.append((i0, i1)))
    seen.sort()
    assert seen[0][0] == 0 and seen[-1][1] == n_items
    assert all(a[1] == b[0] for a, b in zip(seen, seen[1:])), seen
    assert all(i1 > i0 for i0, i1 in seen)
    assert len(seen) == (1 if n_threads == 1 else min(n_items, threads.CHUNKS_PER_THREAD * n_threads))


def two_ranges(n):
    """[0, 1) and [1, n): a kernel over a range of items, called as two chunks would call it."""
    return ((0, 1), (1, n))


def test_kernel_bodies_without_jit():
    """Run each jitted kernel's .py_func (plain Python) on a tiny case and compare with the
    reference: the same logic the compiled code runs. Kernels over a range of items (rows,
    (b, h) pairs) run on two ranges, [0, 1) and [1, n), as run_chunks would call them. (The
    helpers a kernel calls run compiled here; the attention forward's row helpers also run
    as Python in test_forward_row_helpers_without_jit.)"""
    rng = np.random.default_rng(5)
    B, T, H, E, D, V = 2, 6, 2, 29, 4, 7                         # E = 29 = 16 + 8 + 4 + 1: every
    # e-block loop of the forward; T = 6 with row_block = 4: a full and a partial block of rows
    f32 = np.float32
    q, k, v, d_z = (rng.standard_normal((B, T, H, E)).astype(f32) for _ in range(4))
    z, pattern = np.empty_like(q), np.empty((B, H, T, T), f32)
    scores = np.empty_like(pattern)
    scale = f32(1 / np.sqrt(E))
    for i0, i1 in two_ranges(B * H):
        attention._attention_forward.py_func(q, k, v, scale, z, pattern, scores, True, True, 4,
                                             i0, i1)
    want = ops.attention_forward(q, k, v)
    close("z", z, want[0], np.float32)
    close("pattern", pattern, want[1], np.float32)
    E16 = 16                                                     # the tile forward needs E % 16 == 0
    q16, k16, v16 = q[..., :E16].copy(), k[..., :E16].copy(), v[..., :E16].copy()
    z16, pattern16 = np.full_like(q16, np.nan), np.full_like(pattern, np.nan)
    for i0, i1 in two_ranges(B * H):                             # T = 6: one tile, then 2 rows
        attention._attention_forward_tiles.py_func(q16, k16, v16, f32(0.25), z16, pattern16,
                                                   scores, True, True, i0, i1)
    want16 = ops.attention_forward(q16, k16, v16)
    close("tiles z", z16, want16[0], np.float32)
    close("tiles pattern", pattern16, want16[1], np.float32)
    close("tiles scores", scores[np.isfinite(want16[2])], want16[2][np.isfinite(want16[2])],
          np.float32)
    d_q, d_k, d_v = (np.full_like(q, np.nan) for _ in range(3))
    for i0, i1 in two_ranges(B * H):
        attention._attention_backward.py_func(d_z, q, k, v, pattern, scale, d_q, d_k, d_v, 4,
                                              i0, i1)
    for name, g, w in zip(("d_q", "d_k", "d_v"), (d_q, d_k, d_v),
                          ops.attention_backward(d_z, q, k, v, pattern)):
        close(name, g, w, np.float32)
    d_q, d_k, d_v = (np.full_like(q, np.nan) for _ in range(3))
    for bh0, bh1 in two_ranges(B * H):
        attention_loops._attention_backward_pairs.py_func(d_z, q, k, v, pattern, scale,
                                                          d_q, d_k, d_v, bh0, bh1)
    for name, g, w in zip(("d_q", "d_k", "d_v"), (d_q, d_k, d_v),
                          ops.attention_backward(d_z, q, k, v, pattern)):
        close("loops " + name, g, w, np.float32)
    d_q, d_k, d_v = (np.full_like(q16, np.nan) for _ in range(3))
    d_z16 = d_z[..., :E16].copy()
    for bh0, bh1 in two_ranges(B * H):                           # E = 16: d_p and d_q in tiles
        attention_loops._attention_backward_pairs.py_func(d_z16, q16, k16, v16, want16[1],
                                                          f32(0.25), d_q, d_k, d_v, bh0, bh1)
    for name, g, w in zip(("d_q", "d_k", "d_v"), (d_q, d_k, d_v),
                          ops.attention_backward(d_z16, q16, k16, v16, want16[1])):
        close("loops, tiles " + name, g, w, np.float32)

    x = rng.standard_normal((B * T, D))
    w, b, d_y = rng.standard_normal(D), rng.standard_normal(D), rng.standard_normal((B * T, D))
    y, sc = np.empty_like(x), np.empty(B * T)
    for i0, i1 in two_ranges(B * T):
        layernorm._layernorm_forward.py_func(x, w, b, ops.LN_EPS, y, sc, i0, i1)
    y_ref, sc_ref = ops.layernorm_forward(x, w, b)
    close("ln y", y, y_ref, np.float64)
    d_x, d_w, d_b = np.empty_like(x), np.zeros((2, D)), np.zeros((2, D))
    for i0, i1 in two_ranges(2):                                 # the two partial-sum chunks
        layernorm._layernorm_backward.py_func(d_y, x, sc, w, d_x, d_w, d_b, i0, i1)
    for name, g, want in zip(("d_x", "d_w", "d_b"), (d_x, d_w.sum(0), d_b.sum(0)),
                             ops.layernorm_backward(d_y, x, sc_ref, w)):
        close(name, g, want, np.float64)

    k4 = rng.standard_normal((B, T, H, E))
    s = rng.standard_normal(H)
    sig = 1 / (1 + np.exp(-s))
    k_s = np.empty_like(k4)
    for i0, i1 in two_ranges(B):
        attention._smear_forward.py_func(k4, sig, k_s, i0, i1)
    close("smear", k_s, ops.smear_forward(k4, s), np.float64)
    d_k, d_s = np.empty_like(k4), np.zeros((B, H))
    for i0, i1 in two_ranges(B):
        attention._smear_backward.py_func(k_s, k4, sig, d_k, d_s, i0, i1)
    ref_dk, ref_ds = ops.smear_backward(k_s, k4, s)
    close("d_k", d_k, ref_dk, np.float64)
    close("d_smear", d_s.sum(0) * sig * (1 - sig), ref_ds, np.float64)

    W_E, tokens = rng.standard_normal((V, D)), rng.integers(0, V, (B, T))
    x3 = np.empty((B, T, D))
    embedding._embed_forward.py_func(W_E, tokens, x3)
    close("embed", x3, ops.embed_forward(W_E, tokens), np.float64)
    d_W_E = np.zeros((V, D))
    embedding._embed_backward.py_func(x3, tokens, d_W_E)
    close("d_W_E", d_W_E, ops.embed_backward(x3, tokens, V), np.float64)
    d_W_pos = np.zeros((T + 1, D))
    embedding._pos_embed_backward.py_func(x3, d_W_pos)
    close("d_W_pos", d_W_pos, ops.pos_embed_backward(x3, T + 1), np.float64)

    logits = rng.standard_normal((B, T, V))
    nll, probs = np.empty((B, T - 1)), np.empty((B, T - 1, V))
    for i0, i1 in two_ranges(B * (T - 1)):
        loss._softmax_nll.py_func(logits, tokens, nll, probs, False, i0, i1)   # float64: np.exp
    l_ref, p_ref = ops.cross_entropy_forward(logits, tokens)
    close("probs", probs, p_ref, np.float64)
    assert abs(nll.mean() - l_ref) < 1e-12
    logits32, nll32, probs32 = logits.astype(f32), nll.astype(f32), probs.astype(f32)
    for i0, i1 in two_ranges(B * (T - 1)):                       # float32: the fast max, exp
        loss._softmax_nll.py_func(logits32, tokens, nll32, probs32, True, i0, i1)
    l_ref32, p_ref32 = ops.cross_entropy_forward(logits32, tokens)
    close("probs f32", probs32, p_ref32, np.float32)
    close("nll f32", nll32.mean().reshape(1), np.asarray([l_ref32], f32), np.float32)
    d_logits = np.empty((B, T, V))
    for i0, i1 in two_ranges(B * T):
        loss._cross_entropy_backward.py_func(p_ref, tokens, 1.0 / (B * (T - 1)), d_logits, i0, i1)
    close("d_logits", d_logits, ops.cross_entropy_backward(p_ref, tokens), np.float64)

    p, g, m, vv = (rng.standard_normal(7) for _ in range(4))
    vv = np.abs(vv)
    ref = [a.copy() for a in (p, m, vv)]
    ops.adamw_update(ref[0], g, ref[1], ref[2], 1e-2, 0.9, 0.99, 1e-8, 0.1, 3, 0.5)
    k_adamw._adamw_update.py_func(p, g, m, vv, 1e-2, 0.9, 0.99, 1e-8, 0.1, 1 - 0.9 ** 3,
                                  1 - 0.99 ** 3, 0.5)
    for name, got, want in zip("pmv", (p, m, vv), ref):
        close(name, got, want, np.float64)


# --- bad input ---------------------------------------------------------------------------

def test_bad_input_raises_clear_errors():
    q = np.zeros((1, 3, 2, 4), np.float32)
    with pytest.raises(ValueError, match="share one dtype"):
        kernels.attention_forward(q, q.astype(np.float64), q)
    with pytest.raises(ValueError, match=r"k has shape"):
        kernels.attention_forward(q, q[:, :2], q)
    with pytest.raises(ValueError, match="float32 or float64"):
        kernels.layernorm_forward(np.zeros((2, 3), int), np.ones(3), np.zeros(3))
    with pytest.raises(ValueError, match=r"d_vocab"):
        kernels.embed_forward(np.zeros((4, 2)), np.array([[0, 4]]))
    with pytest.raises(ValueError, match="C-contiguous"):
        p = np.zeros((3, 2)).T
        kernels.adamw_update(p, p, p, p, 1e-3, 0.9, 0.99, 1e-8, 0.0, 1)


# --- the whole model: both backends, same loss and gradients ------------------------------

MODEL_CONFIGS = [
    dict(n_layers=0),
    dict(n_layers=1, layernorm=False, positional="standard"),
    dict(n_layers=2),
    dict(n_layers=2, smeared_keys=True, smear_init=0.3),
    dict(n_layers=3, layernorm=False, smeared_keys=True, positional="standard"),
    dict(n_layers=1, n_heads=1, d_head=1),
]


def assert_same_float64(name, loss, grads, loss_ref, grads_ref):
    """loss and gradients equal the reference's to float64 rounding."""
    assert abs(loss - loss_ref) <= 1e-12 * abs(loss_ref), name
    assert list(grads) == list(grads_ref), name
    for key in grads_ref:
        close(f"{name} {key}", grads[key], grads_ref[key], np.float64)


def assert_backends_agree_float64(params, tokens, cfg):
    """The numba backend's loss and gradients equal the NumPy backend's to float64 rounding."""
    assert_same_float64("numba", *minih.loss_and_grads(params, tokens, cfg, backend="numba"),
                        *minih.loss_and_grads(params, tokens, cfg, backend="numpy"))


@pytest.mark.parametrize("overrides", MODEL_CONFIGS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_model_backends_agree(overrides):
    # oracle: the NumPy backend (itself checked against finite differences by gradcheck)
    cfg = minih.ModelConfig(d_model=12, n_ctx=21, d_vocab=9, dtype="float64",
                            **{"n_heads": 3, "d_head": 4, **overrides})
    params = minih.init_params(cfg, seed=1)
    tokens = np.random.default_rng(2).integers(0, cfg.d_vocab, (3, 21))
    assert_backends_agree_float64(params, tokens, cfg)


@pytest.mark.parametrize("B", [1, 2, 5, 9])
def test_batch_shards_give_the_whole_batch(B, monkeypatch):
    # oracle: the NumPy ops on the whole batch at once (model._loss_and_grads, no shards),
    # float64. Both backends compute shard_bounds(B) (N_SHARDS = 8: B = 5 gives five shards
    # of 1, B = 9 seven of 1 and one of 2) and weight each shard by its share B_s / B; a
    # wrong weight or a lost shard is an O(1) error. MIN_SHARD_POSITIONS = 1 makes these
    # small batches split; MIN_SPLIT_POSITIONS = 1 and MIN_ROWS = 8 make B = 1 (one shard)
    # split its ops and products over the threads instead
    from minih import shards
    from minih.model import _loss_and_grads
    monkeypatch.setattr(shards, "MIN_SHARD_POSITIONS", 1)
    monkeypatch.setattr(shards, "MIN_SPLIT_POSITIONS", 1)
    monkeypatch.setattr(blas, "MIN_ROWS", 8)
    bounds = shards.shard_bounds(B)
    assert bounds[0][0] == 0 and bounds[-1][1] == B and len(bounds) == min(B, shards.N_SHARDS)
    assert all(a[1] == b[0] and b[1] > b[0] for a, b in zip(bounds, bounds[1:])), bounds
    cfg = minih.ModelConfig(n_layers=2, d_model=12, n_heads=3, d_head=4, n_ctx=11, d_vocab=9,
                            dtype="float64", smeared_keys=True)
    params = minih.init_params(cfg, seed=5)
    tokens = np.random.default_rng(B).integers(0, cfg.d_vocab, (B, 11))
    loss_whole, grads_whole = _loss_and_grads(params, tokens, cfg, minih.ops)
    for backend in ("numpy", "numba"):
        assert_same_float64(backend, *minih.loss_and_grads(params, tokens, cfg, backend=backend),
                            loss_whole, grads_whole)


@pytest.mark.parametrize("B, T, n_calls", [(32, 32, 1), (16, 128, 1), (32, 128, 8), (9, 512, 8),
                                         (7, 600, 7), (1, 4096, 1)])
def test_batch_shards_only_when_each_holds_enough_positions(B, T, n_calls):
    # oracle: the calls of f, counted. A shard must hold MIN_SHARD_POSITIONS = 512 positions
    # (B * T / n_shards): 32 x 32 and 16 x 128 run whole (one call), 32 x 128 in 8 shards
    # of 512, 9 x 512 in 8 (the last of two sequences), 7 x 600 in 7 of one sequence; one
    # sequence is always one call. A whole batch under MIN_SPLIT_POSITIONS = 2048
    # positions runs alone (marked as a task: nothing inside splits), a bigger one not
    from minih import shards
    assert shards.MIN_SHARD_POSITIONS == 512 and shards.MIN_SPLIT_POSITIONS == 2048
    calls = []

    def f(tokens):
        calls.append(tokens.shape)
        alone.append(threads.in_task())
        return 1.0, {"w": np.ones(2)}

    alone = []
    loss, grads = shards.over_batch_shards(f, np.zeros((B, T), dtype=np.int64))
    assert len(calls) == n_calls, calls
    if n_calls == 1:
        assert alone == [B * T < 2048]
    else:
        assert all(alone), "a shard runs as a task"
    assert sum(b for b, _ in calls) == B and all(t == T for _, t in calls)
    assert loss == pytest.approx(1.0) and np.allclose(grads["w"], 1.0)


def test_batch_shards_raise_a_shards_error():
    # oracle: the error of the shard that failed reaches the caller (no partial result)
    from minih import shards

    def f(tokens):
        if tokens[0, 0] == 3:
            raise RuntimeError("shard with sequence 3")
        return 1.0, {"w": np.ones(2)}

    with pytest.raises(RuntimeError, match="sequence 3"):                # 8 sequences of 512
        shards.over_batch_shards(f, np.repeat(np.repeat(np.arange(4), 2)[:, None], 512, axis=1))


def test_model_float32_and_cache():
    # oracle: the NumPy backend; float32 tolerance as above. The cache keeps the
    # TransformerLens names and shapes with either backend.
    cfg = minih.ModelConfig.preset("small", n_ctx=40)
    params = minih.init_params(cfg, seed=3)
    tokens = np.random.default_rng(4).integers(0, cfg.d_vocab, (2, 40))
    loss_ref, grads_ref = minih.loss_and_grads(params, tokens, cfg, backend="numpy")
    loss_nb, grads_nb = minih.loss_and_grads(params, tokens, cfg, backend="numba")
    assert abs(loss_nb - loss_ref) <= 1e-5 * abs(loss_ref)
    for key in grads_ref:
        # relative to the gradient's own scale: float32 sums over 2*40 positions
        scale = np.abs(grads_ref[key]).max()
        assert_close(key, grads_nb[key] / scale, grads_ref[key] / scale, 0, 2e-4)
    logits_ref, cache_ref = minih.run_with_cache(params, tokens, cfg, backend="numpy")
    logits_nb, cache_nb = minih.run_with_cache(params, tokens, cfg, backend="numba")
    close("logits", logits_nb, logits_ref, np.float32)
    assert set(cache_nb) == set(cache_ref)
    for key in cache_ref:
        assert cache_nb[key].shape == cache_ref[key].shape, key


@pytest.mark.parametrize("B, backend", [(1, "numba"), (5, "numba"), (5, "numpy")])
def test_threads_do_not_change_results(B, backend, monkeypatch):
    # oracle: the same kernels on one thread. Every parallel loop owns its outputs, and
    # the row chunks and the batch's shards are fixed, so the thread count must not change
    # a single bit (B = 1: one shard, the ops split over the threads; B = 5: shards, whose
    # products are one BLAS call each). MIN_ROWS = 8 makes these small products big
    # enough to split outside a shard, MIN_SHARD_POSITIONS = 1 this small batch into
    # shards. The numpy backend runs the same shards (B = 1 would be one call of its ops,
    # which have no threads: nothing to test).
    from minih import shards
    monkeypatch.setattr(blas, "MIN_ROWS", 8)
    monkeypatch.setattr(shards, "MIN_SHARD_POSITIONS", 1)
    monkeypatch.setattr(shards, "MIN_SPLIT_POSITIONS", 1)               # and B = 1 split its ops
    cfg = minih.ModelConfig.preset("tiny", n_ctx=24, smeared_keys=True)
    params = minih.init_params(cfg, seed=0)
    tokens = np.random.default_rng(0).integers(0, cfg.d_vocab, (B, 24))
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        loss1, g1 = minih.loss_and_grads(params, tokens, cfg, backend=backend)
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        loss2, g2 = minih.loss_and_grads(params, tokens, cfg, backend=backend)
    finally:
        numba.set_num_threads(before)
    assert loss1 == loss2
    assert all(np.array_equal(g1[k], g2[k]) for k in g1)


def test_bench_step_flops_counts_useful_work():
    # oracle: the multiply-adds enumerated from the shapes, with the causal pairs
    # (i, j <= i) counted from an explicit lower-triangular mask
    from minih.bench import step_flops
    cfg = minih.ModelConfig(n_layers=3, n_heads=2, d_model=5, d_head=3, n_ctx=7, d_vocab=11)
    B, T, D, H, E, V = 4, 7, 5, 2, 3, 11
    pairs = int(np.tril(np.ones((T, T))).sum())                  # 28 causal (i, j) pairs
    macs_layer = 3 * B * T * D * H * E + 2 * B * H * pairs * E + B * T * H * E * D
    macs_forward = 3 * macs_layer + B * T * D * V
    assert step_flops(cfg, B) == 3 * 2 * macs_forward             # backward = 2 x forward


def test_bench_merge_rounds_pools_the_step_times():
    # oracle: the median and mean written out for two rounds of a 100-token step
    from minih.bench import merge_rounds
    r1 = {"impl": "x", "first_step_s": 9.0, "median_step_s": 2.0, "step_times_s": [1.0, 2.0, 3.0],
          "tokens_per_s": 50.0, "cpu_s_per_step": 4.0, "tokens_per_cpu_s": 25.0}
    r2 = {**r1, "first_step_s": 8.0, "median_step_s": 10.0, "step_times_s": [9.0, 10.0, 11.0],
          "tokens_per_s": 10.0, "cpu_s_per_step": 6.0, "tokens_per_cpu_s": 100 / 6}
    m = merge_rounds([r1, r2])
    assert m["step_times_s"] == [1.0, 2.0, 3.0, 9.0, 10.0, 11.0]
    assert m["median_step_s"] == 6.0 and m["tokens_per_s"] == 100 / 6.0
    assert m["cpu_s_per_step"] == 5.0 and m["tokens_per_cpu_s"] == 20.0
    assert [r["tokens_per_s"] for r in m["rounds"]] == [50.0, 10.0]
    assert m["first_step_s"] == 9.0 and r1["step_times_s"] == [1.0, 2.0, 3.0]  # inputs untouched


def test_bench_table_names_the_backward_kernel():
    # oracle: the machine dict given; the table's first line must say which attention
    # backward the numba runs used (it depends on the CPU: docs/04_numba.md)
    from minih.bench import format_table
    for avx512, kind, words in ((False, "loops", "no AVX-512: attention backward loops"),
                                (True, "blas", "(AVX-512: attention backward blas)")):
        result = {"machine": {"processor": "CPU X", "avx512": avx512, "attention_backward": kind,
                              "cpu_count": 2, "numba_threads": 2, "load_average_before": [0.5],
                              "load_average_after": [0.7]}, "matmul_gflops": 100.0, "configs": {}}
        first = format_table(result).splitlines()[0]
        assert first.startswith("machine: CPU X") and words in first, first


def test_bench_bad_values_are_one_line_errors(capsys):
    # rejected before any measurement starts: exit code 2 and one line saying what is allowed
    from minih.cli import main as cli_main
    for argv, words in ((["bench", "--rounds", "0"], "--rounds must be >= 1"),
                        (["bench", "--steps", "0"], "--steps and --rounds must be >= 1"),
                        (["bench", "--configs", "huge"], "choose from")):
        assert cli_main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and words in err, err


def test_bench_op_profile_times_every_op_and_restores_the_backend():
    # oracle: the backend module's own public functions; after profiling they must be
    # the very same objects again (the profiler wraps them only while it measures)
    from minih.bench import op_profile
    cfg = minih.ModelConfig.preset("tiny")
    before = {n: getattr(kernels, n) for n in dir(kernels) if not n.startswith("_")}
    prof = op_profile(cfg, 2, "numba", steps=1, warmup=1)
    assert all(getattr(kernels, n) is f for n, f in before.items())
    for op in ("attention_forward", "attention_backward", "layernorm_forward",
               "cross_entropy_forward", "unembed_backward", "adamw_update"):
        wall, cpu = prof["ops_ms"][op]
        assert wall > 0 and cpu >= 0, op
    assert prof["step_wall_ms"] > 0 and prof["tokens_per_s"] > 0


def test_shapes_cover_several_backward_row_blocks():
    # keeps SHAPES honest if ROW_BLOCK changes: some T must span more than one block
    assert any(shape[1] > attention.ROW_BLOCK for shape in SHAPES)
