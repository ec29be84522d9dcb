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
           the attention kernels (relative error ~1e-7), gives ~1e-6 relative.
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
from minih import kernels, ops
from minih.kernels import threads
from minih.kernels import _jit, attention, blas, embedding, layernorm, loss, simd
from minih.kernels import mlp as k_mlp
from minih.kernels import adamw as k_adamw
from helpers import assert_close

TOL = {np.float64: (1e-10, 1e-12), np.float32: (1e-4, 1e-5)}

# (B, T, H, E, D, V): odd sizes and 1-sized ones. For the attention's tiles of ROWS = 8
# query rows x 16 keys x 16 dimensions: T = 5, 19, 21, 37, 70 end in a partial tile of rows
# (the padded rows), T = 32 and 128 in whole ones, T = 1 and 5 have fewer keys than one
# block of 16; E = 1, 4, 5 pad most of a 16-wide vector, E = 16 none, E = 29 one and a half;
# T = 2: one prediction per sequence for the loss
SHAPES = [(2, 5, 3, 4, 6, 7), (1, 1, 1, 1, 1, 2), (3, 2, 2, 3, 5, 4), (1, 37, 1, 1, 3, 5),
          (3, 32, 2, 5, 4, 3), (2, 19, 4, 16, 8, 11), (1, 70, 2, 3, 4, 5), (1, 21, 2, 29, 5, 6), (1, 128, 1, 2, 3, 4)]
DTYPES = [np.float64, np.float32]
# Wider rows, for the loops LLVM vectorises by itself (LayerNorm over D, the loss over V,
# the smear over E): its main vector loop starts at 16 (float64) or 32 (float32) numbers,
# with a leftover loop after it, so D = 33, 65, 128, V = 17, 70, 1000 and E = 33, 48 run
# both; SHAPES' rows are all shorter than that
WIDE_SHAPES = [(2, 7, 2, 33, 33, 70), (1, 3, 1, 48, 128, 1000), (2, 5, 3, 20, 65, 17)]


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
    assert public <= set(ops.__all__), "an op of minih.ops missing from its __all__"
    missing = {n for n in public if not hasattr(kernels, n)}
    assert not missing, f"minih.kernels lacks {sorted(missing)}"
    assert kernels.NAME == "numba" and kernels.LN_EPS == ops.LN_EPS


def test_which_ops_have_twins():
    # oracle: minih.kernels.TWINS. A twin is a function of its own, named for the reference
    # it mirrors; every other op is the reference's very function object (so an op added to
    # minih.ops works in the Numba backend at once), and the fused attention is extra
    for name in ops.__all__:
        if not callable(getattr(ops, name)):
            continue
        if name in kernels.TWINS:
            twin = getattr(kernels, name)
            assert twin is not getattr(ops, name), name
            assert twin.__module__.startswith("minih.kernels"), name
            assert f"minih.ops.{getattr(ops, name).__module__.split('.')[-1]}.{name}" in twin.__doc__, name
        else:
            assert getattr(kernels, name) is getattr(ops, name), name
    assert set(kernels.TWINS) <= set(ops.__all__)
    for name in kernels.FUSED:
        assert not hasattr(ops, name) and callable(getattr(kernels, name))
    assert not hasattr(ops, "over_batch_shards"), "the reference runs the batch plainly"


def reference_attention(q, k, v):
    """The reference's four passes, and what the fused twin keeps of them:
    q, k, v -> z, lse [B,H,T] (each row's log-sum-exp of the scores), pattern [B,H,T,T]."""
    scores = ops.attention_scores(q, k)                          # [B,H,T,T], -inf for j > i
    pattern = ops.attention_pattern(scores)
    m = scores.max(axis=-1, keepdims=True)                       # finite: j = i is allowed
    lse = (m + np.log(np.exp(scores - m).sum(axis=-1, keepdims=True)))[..., 0]
    return ops.attention_z(pattern, v), lse, pattern


def assert_scores(name, got, want, dtype):
    """Scores: -inf exactly where the reference has -inf (above the diagonal), close elsewhere."""
    finite = np.isfinite(want)
    assert np.array_equal(np.isfinite(got), finite), f"{name}: -inf exactly above the diagonal"
    assert np.all(got[~finite] == -np.inf), f"{name}: -inf above the diagonal"
    close(name, got[finite], want[finite], dtype)


@pytest.mark.parametrize("shape", SHAPES + [(2, 17, 3, 16, 1, 1), (1, 24, 2, 32, 1, 1)])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("contiguous", [True, False])
@pytest.mark.parametrize("n_threads", [1, 3])
def test_attention_ops(shape, dtype, contiguous, n_threads, monkeypatch):
    # oracle: the reference's four attention passes and its backward. T = 17: a tile of 8 rows whose 16-key
    # block holds only one real key after the 16 (the rest padding); T = 24: three whole tiles,
    # 32 keys (8 of them padding); E = 32: two 16-wide passes of dimensions. The thread
    # count is set, not the machine's: on 1 thread one kernel call computes every (b, h)
    # pair, each reusing the scratch of the one before; on 3, run_chunks cuts the pairs
    # into up to 12 chunks, one pair each for small B * H
    monkeypatch.setattr(threads, "n_threads", lambda: n_threads)
    B, T, H, E = shape[:4]
    rng = np.random.default_rng(hash((shape, contiguous)) % 2**32)
    q, k, v, d_z = (rand(rng, (B, T, H, E), dtype, contiguous) for _ in range(4))
    z, lse = kernels.fused_attention_forward(q, k, v)
    z_ref, lse_ref, pattern_ref = reference_attention(q, k, v)
    close("z", z, z_ref, dtype)
    close("lse", lse, lse_ref, dtype)
    for name, g, w in zip(("d_q", "d_k", "d_v"), kernels.fused_attention_backward(d_z, q, k, v, z, lse),
                          ops.attention_backward(d_z, q, k, v, pattern_ref)):
        close(name, g, w, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 8, 1, 16), (1, 9, 1, 9), (3, 19, 4, 5), (2, 70, 5, 16),
                                   (1, 1, 1, 1), (5, 9, 3, 1), (2, 21, 3, 29), (2, 24, 2, 32),
                                   (3, 37, 2, 33), (2, 9, 2, 48), (4, 1, 3, 32)])
def test_attention_kernels_write_every_output(shape, dtype):
    # oracle: the reference, on outputs filled with NaN first (an element a kernel forgot
    # stays NaN and fails). The kernels run on ranges of (b, h) pairs, [0, 1), [1, 5) and
    # [5, B*H), as run_chunks calls them: a range of several pairs reuses the scratch of the
    # pair before, so a pair that read what the one before left there would fail too. E = 29,
    # 32, 33, 48: two or three 16-wide vectors of dimensions, the last one partly padding
    # for 29 and 33 (padding a pair before must not have overwritten)
    B, T, H, E = shape
    rng = np.random.default_rng(T * 100 + E)
    q, k, v, d_z = (rng.standard_normal(shape).astype(dtype) for _ in range(4))
    scale, ninf = dtype(1 / np.sqrt(E)), dtype(-np.inf)
    z, lse = np.full(shape, np.nan, dtype), np.full((B, H, T), np.nan, dtype)
    scores = np.full((B, H, T, T), np.nan, dtype)
    d_q, d_k, d_v = (np.full(shape, np.nan, dtype) for _ in range(3))
    for bh0, bh1 in three_ranges(B * H):
        attention._attention_forward(q, k, v, scale, ninf, z, lse, bh0, bh1)
        attention._attention_scores(q, k, scale, ninf, scores, bh0, bh1)
    for bh0, bh1 in three_ranges(B * H):
        attention._attention_backward(d_z, q, k, v, z, lse, scale, ninf, d_q, d_k, d_v, bh0, bh1)
    assert_scores("scores", scores, ops.attention_scores(q, k), dtype)
    z_ref, lse_ref, pattern_ref = reference_attention(q, k, v)
    close("z", z, z_ref, dtype)
    close("lse", lse, lse_ref, dtype)
    for name, g, w in zip(("d_q", "d_k", "d_v"), (d_q, d_k, d_v),
                          ops.attention_backward(d_z, q, k, v, pattern_ref)):
        close(name, g, w, dtype)


@pytest.mark.parametrize("shape", SHAPES + [(2, 17, 3, 16, 1, 1), (1, 24, 2, 32, 1, 1)])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("contiguous", [True, False])
def test_attention_passes(shape, dtype, contiguous):
    # oracle: the reference's passes 1-2 (attention_scores) and 3 (attention_pattern). The
    # softmax twin must take any scores, not only causal ones: an edit at hook_attn_scores
    # may put finite values above the diagonal, so it also gets a full random square
    B, T, H, E = shape[:4]
    rng = np.random.default_rng(hash((shape, contiguous, "passes")) % 2**32)
    q, k = (rand(rng, (B, T, H, E), dtype, contiguous) for _ in range(2))
    scores_ref = ops.attention_scores(q, k)
    assert_scores("scores", kernels.attention_scores(q, k), scores_ref, dtype)
    close("pattern", kernels.attention_pattern(scores_ref), ops.attention_pattern(scores_ref), dtype)
    full = rand(rng, (B, H, T, T), dtype, contiguous)
    close("pattern of unmasked scores", kernels.attention_pattern(full), ops.attention_pattern(full), dtype)
    with pytest.raises(ValueError, match=r"scores must be \[B, H, T, T\]"):
        kernels.attention_pattern(full[0])                      # [H, T, T]: no batch axis


def test_attention_keeps_nan_and_extreme_scores():
    # oracle: the reference. A NaN in one query row reaches that row's z and lse only (no
    # other row, no other head); scores of +-200 (q scaled up) make pattern rows nearly
    # one-hot (exp of -400 is tiny, or 0 in float32): no NaN from -inf - -inf anywhere
    rng = np.random.default_rng(11)
    for dtype in DTYPES:
        q, k, v, d_z = (rng.standard_normal((1, 20, 2, 16)).astype(dtype) for _ in range(4))
        q *= dtype(50)
        z, lse = kernels.fused_attention_forward(q, k, v)
        z_ref, lse_ref, pattern_ref = reference_attention(q, k, v)
        grads = kernels.fused_attention_backward(d_z, q, k, v, z, lse)
        assert all(np.isfinite(a).all() for a in (z, lse) + grads)
        if dtype == np.float64:      # float32 scores of ~200 carry rounding errors of ~1e-5,
            close("z, saturated", z, z_ref, dtype)     # which d_k multiplies by q (~50)
            for name, g, w in zip(("d_q", "d_k", "d_v"), grads,
                                  ops.attention_backward(d_z, q, k, v, pattern_ref)):
                close(name + ", saturated", g, w, dtype)
        q[0, 9, 1, 3] = np.nan
        z, lse = kernels.fused_attention_forward(q, k, v)
        bad = np.zeros(z.shape, bool)
        bad[0, 9, 1] = True
        assert np.isnan(z[bad]).all() and np.isfinite(z[~bad]).all()
        assert np.isnan(lse[0, 1, 9]) and np.isfinite(np.delete(lse.ravel(), 1 * 20 + 9)).all()


@pytest.mark.parametrize("shape", SHAPES + WIDE_SHAPES)
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
def test_blas_row_chunks(dtype, M, monkeypatch):
    # oracle: one plain NumPy product. M >= MIN_ROWS takes the chunked path (1501: chunks of
    # unequal size); the chunks are fixed, so 1 thread and 3 give identical bits (the
    # thread count is minih's own pool's, set here, so this runs on 3 threads on any machine)
    rng = np.random.default_rng(M)
    a, b = rand(rng, (M, 7), dtype), rand(rng, (M, 5), dtype)
    w = rand(rng, (5, 3), dtype).T                               # a transposed (F-order) operand
    monkeypatch.setattr(threads, "n_threads", lambda: 1)
    one = blas.matmul(b, w.T), blas.matmul_tn(a, b)
    monkeypatch.setattr(threads, "n_threads", lambda: 3)
    every = blas.matmul(b, w.T), blas.matmul_tn(a, b)
    close("matmul", one[0], b @ w.T, dtype)
    close("matmul_tn", one[1], a.T @ b, dtype)
    assert all(np.array_equal(x, y) for x, y in zip(one, every))


@pytest.mark.parametrize("shape", SHAPES + WIDE_SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("contiguous", [True, False])
@pytest.mark.parametrize("n_threads", [1, 3])
def test_gelu(shape, dtype, contiguous, n_threads, monkeypatch):
    # oracle: minih.ops.mlp's GELU on [B,T,V] (V plays d_mlp: 1, 2, ... 1000 wide); u = 2 *
    # standard normal reaches the tails (|u| up to ~9), where the reference's float32
    # 1 + tanh(a) cancels and the twin's sigmoid form does not (kernels/mlp.py): there the
    # two differ by the reference's own rounding, ~4e-6 at most for |d_post| ~ 4, inside
    # float32's atol. The GELU splits its numbers over the threads (3: minih's pool, on any
    # machine), which must not change a bit. (The MLP's linear maps have no twin.)
    B, T, H, E, D, V = shape
    rng = np.random.default_rng(hash((shape, contiguous, 3)) % 2**32)
    u = rand(rng, (B, T, V), dtype, contiguous)
    u *= 2                                                       # in place: still a view
    d_post = rand(rng, (B, T, V), dtype, contiguous)
    monkeypatch.setattr(threads, "n_threads", lambda: n_threads)
    post, d_u = kernels.gelu_forward(u), kernels.gelu_backward(d_post, u)
    close("gelu_forward", post, ops.gelu_forward(u), dtype)
    close("gelu_backward", d_u, ops.gelu_backward(d_post, u), dtype)
    monkeypatch.setattr(threads, "n_threads", lambda: 1)
    assert np.array_equal(post, kernels.gelu_forward(u)), "gelu_forward: the threads changed bits"
    assert np.array_equal(d_u, kernels.gelu_backward(d_post, u)), "gelu_backward: the same"


@pytest.mark.parametrize("dtype", DTYPES)
def test_gelu_tails_and_non_finite_values(dtype):
    # oracle: minih.ops.mlp's GELU. Every u from -12 to 12 (step 0.005), then the specials.
    # Where a = c (u + k u^3) < -43.5 (u < ~-9.9) the twin's float32 e^(-2|a|) is flushed
    # to 0, and the GELU and its slope are 0 (-0.0 for u < 0), as the reference's
    # 1 + tanh(a) = 0 is (float64: tiny, not 0, close to it). NaN and -inf give NaN, +inf
    # gives inf (post) and NaN (slope) in both. Tolerances: TOL, as in test_gelu
    u = np.concatenate([np.linspace(-12, 12, 4801),
                        [0.0, -0.0, np.nan, np.inf, -np.inf]]).astype(dtype)
    d_post = np.ones_like(u)
    with np.errstate(invalid="ignore", over="ignore"):
        want_post, want_slope = ops.gelu_forward(u), ops.gelu_backward(d_post, u)
    got_post, got_slope = kernels.gelu_forward(u), kernels.gelu_backward(d_post, u)
    for name, got, want in (("post", got_post, want_post), ("slope", got_slope, want_slope)):
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=name)
        inf = np.isinf(want)
        assert np.array_equal(got[inf], want[inf]), name
        finite = np.isfinite(want)
        close(name, got[finite], want[finite], dtype)
    assert np.array_equal(np.signbit(got_post[:4801]), np.signbit(want_post[:4801]))
    if dtype == np.float32:
        far = np.flatnonzero(u[:4801] < -10)
        assert np.all(got_post[far] == 0) and np.all(got_slope[far] == 0)
        # against the float64 reference (absolute error ~1e-16, far below float32's): the
        # twin's GELU is within one float32 step of the largest value, 12 (9.5e-7), as the
        # reference's is (4.7e-7 and 4.2e-7 when written), and its slope is the closer of
        # the two (1.6e-7 against 1.2e-6: no cancellation in 1 - tanh(a)^2)
        u64 = u[:4801].astype(np.float64)
        exact_post, exact_slope = ops.gelu_forward(u64), ops.gelu_backward(np.ones(4801), u64)
        assert np.abs(got_post[:4801] - exact_post).max() <= np.spacing(np.float32(12))
        assert (np.abs(got_slope[:4801] - exact_slope).max()
                <= np.abs(want_slope[:4801] - exact_slope).max())


@pytest.mark.parametrize("shape", SHAPES + WIDE_SHAPES)
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
    if not contiguous:                                           # the same tokens as a strided
        wide = np.zeros((B, 2 * T), np.int32)                    # int32 view for the kernels
        wide[:, ::2] = tokens
        tokens_in = wide[:, ::2]
    else:
        tokens_in = tokens
    close("embed_forward", kernels.embed_forward(W_E, tokens_in), ops.embed_forward(W_E, tokens),
          dtype)
    close("embed_backward", kernels.embed_backward(d_y, tokens_in, V),
          ops.embed_backward(d_y, tokens, V), dtype)
    close("pos_embed_backward", kernels.pos_embed_backward(d_y, T + 2),
          ops.pos_embed_backward(d_y, T + 2), dtype)
    if T >= 2:
        logits = 3 * rand(rng, (B, T, V), dtype, contiguous)
        (l_got, p_got), (l_want, p_want) = (kernels.cross_entropy_forward(logits, tokens_in),
                                            ops.cross_entropy_forward(logits, tokens))
        assert abs(l_got - l_want) <= TOL[dtype][0] * abs(l_want), (l_got, l_want)
        close("probs", p_got, p_want, dtype)
        probs_in = p_want if contiguous else np.repeat(p_want, 2, axis=-1)[..., ::2]  # a view
        close("d_logits", kernels.cross_entropy_backward(probs_in, tokens_in),
              ops.cross_entropy_backward(p_want, tokens), dtype)
        close("per_token_loss", kernels.per_token_loss(logits, tokens_in),
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


@pytest.mark.parametrize("dtype", DTYPES)
def test_kernels_divide_by_zero_as_numpy_does(dtype):
    # oracle: the NumPy reference. With eps = 0 and a zero gradient and moments, the
    # update is 0 / 0: NumPy gives NaN; Numba's default error model ("python") would
    # raise ZeroDivisionError instead (and its check per division kept the loop scalar).
    p, g, m, v = (np.zeros(20, dtype) for _ in range(4))
    p[3], g[5] = 1, 2
    ref = [a.copy() for a in (p, m, v)]
    args = (1e-2, 0.9, 0.99, 0.0, 0.0, 1, 1.0)                   # eps = 0
    with np.errstate(invalid="ignore"):
        ops.adamw_update(ref[0], g, ref[1], ref[2], *args)
    kernels.adamw_update(p, g, m, v, *args)
    assert np.isnan(ref[0]).sum() == 19                          # all but g[5]'s entry
    for name, got, want in zip("pmv", (p, m, v), ref):
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=name)
        close(name, np.nan_to_num(got), np.nan_to_num(want), dtype)


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
    (tmp_path / "simd.py").write_text("version 2")
    _jit.drop_stale_cache(tmp_path)                              # a helper changed: cleared
    assert not any(f.exists() for f in kernel_files)
    write_cache()
    (tmp_path / "simd.py").write_text("version 3")
    monkeypatch.setattr(numba.config, "CACHE_DIR", str(tmp_path / "elsewhere"))
    _jit.drop_stale_cache(tmp_path)                              # the user's own cache: untouched
    assert all(f.exists() for f in kernel_files)


# --- the kernel bodies without the JIT: their Python logic, line by line ----------------

def _tile_inputs(rng, dtype, Ep=32, Tk=48):
    """Scratch-shaped inputs of the tile helpers: rows a [Tq, Ep], columns xT [Ep, Tk], ..."""
    a = rng.standard_normal((24, Ep)).astype(dtype)              # query rows (three tiles)
    xT = rng.standard_normal((Ep, Tk)).astype(dtype)             # keys as columns
    x = np.ascontiguousarray(xT.T)                               # keys as rows [Tk, Ep]
    return a, xT, x


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("i0", [0, 8, 16])
def test_tile_helpers_without_jit(i0, dtype):
    # oracle: the same formulas in NumPy, on one tile of rows i0..i0+7 (n = its keys: 16, 16,
    # 32). The kernels' .py_func (test_kernel_bodies_without_jit) call these helpers
    # compiled; here their own Python runs, simd.py's functions on NumPy arrays of 16 (which
    # check every load and store against the row's length), outputs filled with NaN first
    rng = np.random.default_rng(i0)
    zero, ninf = dtype(0), dtype(-np.inf)
    a, xT, x = _tile_inputs(rng, dtype)
    n = attention._padded(i0 + attention.ROWS, simd.LANES)
    rows = np.arange(i0, i0 + attention.ROWS)
    dots = a[rows] @ xT[:, :n]                                   # [8, n]
    future = np.arange(n)[None, :] > rows[:, None]               # key j > query i
    s, m = np.full((8, 48), np.nan, dtype), np.full(8, np.nan, dtype)
    attention._tile_scores.py_func(s, a, i0, xT, n, ninf, zero, m)
    assert_scores("tile_scores", s[:, :n], np.where(future, -np.inf, dots), dtype)
    assert np.isnan(s[:, n:]).all(), "wrote past key n"
    close("row max", m, np.where(future, -np.inf, dots).max(axis=1), dtype)
    total = np.full(8, np.nan, dtype)
    attention._exp_rows.py_func(s, n, m, total, zero)
    e = np.where(future, 0, np.exp(dots - m[:, None]))
    close("exp_rows", s[:, :n], e, dtype)
    close("exp_rows total", total, e.sum(axis=1), dtype)
    lse = rng.standard_normal(24).astype(dtype) + 3
    p = np.full((8, 48), np.nan, dtype)
    attention._tile_pattern.py_func(p, a, i0, xT, n, lse, ninf, zero)
    close("tile_pattern", p[:, :n], np.where(future, 0, np.exp(dots - lse[rows, None])), dtype)
    dot = rng.standard_normal(24).astype(dtype)
    d_s = np.full((8, 48), np.nan, dtype)
    attention._tile_d_scores.py_func(d_s, a, i0, xT, n, p, dot, zero)
    close("tile_d_scores", d_s[:, :n], p[:, :n] * (dots - dot[rows, None]), dtype)
    assert np.isnan(d_s[:, n:]).all(), "wrote past key n"
    w = rng.standard_normal((8, 48)).astype(dtype)
    scales = rng.standard_normal(8).astype(dtype)
    out = np.full((24, 32), np.nan, dtype)
    attention._tile_sums.py_func(out, i0, w, x, n, scales, zero)
    close("tile_sums", out[rows], scales[:, None] * (w[:, :n] @ x[:n]), dtype)
    assert np.isnan(np.delete(out, rows, axis=0)).all(), "wrote outside the tile's rows"
    acc = rng.standard_normal((48, 32)).astype(dtype)
    want = acc.copy()
    want[:n] += w[:, :n].T @ a[rows]
    attention._tile_add_outer.py_func(acc, w, a, i0, n)
    close("tile_add_outer", acc, want, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_copy_head_without_jit(dtype):
    # oracle: NumPy's slicing; the scratch's padding must stay as it was (zeros)
    rng = np.random.default_rng(3)
    a = rng.standard_normal((2, 5, 3, 4)).astype(dtype)          # [B, T, H, E]
    rows, cols = np.zeros((8, 16), dtype), np.zeros((16, 16), dtype)
    attention._copy_head.py_func(rows, a, 1, 2, dtype(0.5), False)
    attention._copy_head.py_func(cols, a, 1, 2, dtype(1), True)
    want_rows, want_cols = np.zeros((8, 16), dtype), np.zeros((16, 16), dtype)
    want_rows[:5, :4] = 0.5 * a[1, :, 2]
    want_cols[:4, :5] = a[1, :, 2].T
    assert np.array_equal(rows, want_rows) and np.array_equal(cols, want_cols)


def test_attention_without_jit_stays_inside_its_rows():
    # oracle: the reference, with the whole Numba backend running as Python
    # (NUMBA_DISABLE_JIT=1, in a fresh process): simd.py's load16 and store16 then check every
    # vector access of the attention kernels against its row's length (IndexError), at the
    # lengths the kernels really use. T = 5: fewer keys than one block; T = 17: a partial
    # tile whose keys run one block past the last real key; E = 1, 16, 17, 32: the padded,
    # exact, one-and-a-bit and two-pass widths
    # (float64 at the file's tight tolerance; one float32 shape at its loose one, where
    # exp16 is simd.py's Python polynomial)
    code = """
import numba
import numpy as np
from minih import kernels, ops
assert numba.config.DISABLE_JIT                   # the kernels below run as Python
TOL = {np.float64: (1e-10, 1e-12), np.float32: (1e-4, 1e-5)}
for shape, dtype in [((1, 5, 2, 16), np.float64), ((1, 17, 1, 1), np.float64),
                     ((2, 9, 1, 17), np.float64), ((1, 16, 1, 32), np.float64),
                     ((2, 11, 2, 20), np.float32)]:
    rtol, atol = TOL[dtype]
    same = lambda g, w: g.dtype == w.dtype and np.allclose(g, w, rtol=rtol, atol=atol)
    rng = np.random.default_rng(shape[1])
    q, k, v, d_z = (rng.standard_normal(shape).astype(dtype) for _ in range(4))
    z, lse = kernels.fused_attention_forward(q, k, v)
    pattern_ref = ops.attention_pattern(ops.attention_scores(q, k))
    assert same(z, ops.attention_z(pattern_ref, v)), shape
    for g, w in zip(kernels.fused_attention_backward(d_z, q, k, v, z, lse),
                    ops.attention_backward(d_z, q, k, v, pattern_ref)):
        assert same(g, w), shape
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


def three_ranges(n):
    """[0, 1), [1, 5) and [5, n), the empty ones left out: as three chunks would call a kernel."""
    cuts = sorted({0, min(1, n), min(5, n), n})
    return list(zip(cuts[:-1], cuts[1:]))


def test_kernel_bodies_without_jit():
    """Run each jitted kernel's .py_func (plain Python) on a tiny case and compare with the
    reference: the same logic the compiled code runs. Kernels over a range of items (rows,
    (b, h) pairs) run on two ranges, [0, 1) and [1, n), as run_chunks would call them. (The
    helpers a kernel calls run compiled here; the attention's tile helpers also run as
    Python in test_tile_helpers_without_jit.)"""
    rng = np.random.default_rng(5)
    B, T, H, E, D, V = 2, 11, 2, 29, 4, 7                        # E = 29: two 16-wide passes;
    # T = 11: a whole tile of 8 rows and a partial one (3 rows)
    f32 = np.float32
    q, k, v, d_z = (rng.standard_normal((B, T, H, E)).astype(f32) for _ in range(4))
    scale, ninf = f32(1 / np.sqrt(E)), f32(-np.inf)
    z, lse = np.full_like(q, np.nan), np.full((B, H, T), np.nan, f32)
    for bh0, bh1 in two_ranges(B * H):
        attention._attention_forward.py_func(q, k, v, scale, ninf, z, lse, bh0, bh1)
    z_ref, lse_ref, pattern_ref = reference_attention(q, k, v)
    close("z", z, z_ref, np.float32)
    close("lse", lse, lse_ref, np.float32)
    d_q, d_k, d_v = (np.full_like(q, np.nan) for _ in range(3))
    for bh0, bh1 in two_ranges(B * H):
        attention._attention_backward.py_func(d_z, q, k, v, z, lse, scale, ninf, d_q, d_k, d_v,
                                              bh0, bh1)
    for name, g, w in zip(("d_q", "d_k", "d_v"), (d_q, d_k, d_v),
                          ops.attention_backward(d_z, q, k, v, pattern_ref)):
        close(name, g, w, np.float32)
    scores = np.full((B, H, T, T), np.nan, f32)
    for bh0, bh1 in two_ranges(B * H):
        attention._attention_scores.py_func(q, k, scale, ninf, scores, bh0, bh1)
    scores_ref = ops.attention_scores(q, k)
    assert_scores("scores", scores, scores_ref, np.float32)
    rows = scores_ref.reshape(-1, T)
    for fast_exp in (True, False):                               # float32 exp and max, or np's
        pattern = np.full_like(rows, np.nan)
        for r0, r1 in two_ranges(rows.shape[0]):
            attention._softmax_rows.py_func(rows, pattern, fast_exp, r0, r1)
        close("pattern", pattern.reshape(scores.shape), pattern_ref, np.float32)

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


@pytest.mark.parametrize("dtype", DTYPES)
def test_gelu_kernel_bodies_without_jit(dtype):
    # oracle: minih.ops.mlp's GELU. The kernels' .py_func (plain Python, the float32 exp
    # helper compiled) on three chunks of a flat array, as run_chunks slices it
    rng = np.random.default_rng(6)
    u, d_post = (3 * rng.standard_normal(23)).astype(dtype), rng.standard_normal(23).astype(dtype)
    consts, fast = k_mlp._gelu_constants(u.dtype)
    assert fast == (dtype == np.float32) and all(type(c) is dtype for c in consts)
    post, d_u = np.full_like(u, np.nan), np.full_like(u, np.nan)
    for i0, i1 in three_ranges(u.size):
        k_mlp._gelu_forward.py_func(u[i0:i1], post[i0:i1], consts, fast)
        k_mlp._gelu_backward.py_func(d_post[i0:i1], u[i0:i1], d_u[i0:i1], consts, fast)
    close("gelu_forward", post, ops.gelu_forward(u), dtype)
    close("gelu_backward", d_u, ops.gelu_backward(d_post, u), dtype)


@pytest.mark.parametrize("n", [1, 2, 17, 1000, 4096 + 5])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("jit", [True, False])
def test_gelu_forward_keeping_slope(n, dtype, jit):
    # oracle: the two GELU twins, and minih.ops.mlp's GELU. The whole-step kernel's GELU
    # (kernels/step.py) writes post as _gelu_forward does and overwrites u with the slope
    # _gelu_backward multiplies d_post by (d_post = 1 here, exact): the same lines, so the
    # same numbers up to rounding (compiled: post differs from _gelu_forward's in ~3% of
    # numbers, by up to ~130 ulps, 8e-6 relative in float32, as LLVM fuses one loop's
    # multiply-adds otherwise than two loops'; as plain Python the slope's two terms cancel
    # in part, 4e-6), within the TOL of every twin; compiled and as plain Python
    rng = np.random.default_rng(n)
    u = (3 * rng.standard_normal(n)).astype(dtype)
    u[:3] = [0.0, -12.0, 12.0][:n]                                # zero and both tails
    consts, fast = k_mlp._gelu_constants(u.dtype)
    post, slope = np.full_like(u, np.nan), u.copy()
    f = k_mlp._gelu_forward_keeping_slope
    (f if jit else f.py_func)(slope, post, consts, fast)
    want_post, want_slope = np.empty_like(u), np.empty_like(u)
    k_mlp._gelu_forward(u, want_post, consts, fast)
    k_mlp._gelu_backward(np.ones_like(u), u, want_slope, consts, fast)
    close("post vs _gelu_forward", post, want_post, dtype)
    close("slope vs _gelu_backward", slope, want_slope, dtype)
    close("post", post, ops.gelu_forward(u), dtype)
    close("slope", slope, ops.gelu_backward(np.ones_like(u), u), dtype)


def test_exp_neg_f32():
    # oracle: float64 np.exp. The float32 exp of the GELU twins, for x <= 0: accurate to
    # float32 rounding, exactly 0 below EXP_MIN = -87, NaN kept
    x = np.concatenate([-np.geomspace(1e-8, 86.9, 2000),
                        [0.0, -87.5, -1e3, -np.inf]]).astype(np.float32)
    got = np.array([k_mlp._exp_neg_f32(v) for v in x])          # float32 values, as Python floats
    assert np.array_equal(got, got.astype(np.float32))
    want = np.exp(x.astype(np.float64))
    ok = x >= -87
    # 3e-7: 2.5 float32 ulps at most (an ulp is 6e-8 to 1.2e-7 relative); these 2000 points
    # found 2.5e-7 near x = -71, a little over test_fast_exp_f32's 2e-7 on its 1001 points
    assert_close("exp", got[ok], want[ok], 3e-7, 1e-44)
    assert np.all(got[~ok] == 0) and got[x == 0][0] == 1
    assert np.isnan(k_mlp._exp_neg_f32(np.float32(np.nan)))


# --- bad input ---------------------------------------------------------------------------

def test_bad_input_raises_clear_errors():
    q = np.zeros((1, 3, 2, 4), np.float32)
    with pytest.raises(ValueError, match="share one dtype"):
        kernels.fused_attention_forward(q, q.astype(np.float64), q)
    with pytest.raises(ValueError, match=r"k has shape"):
        kernels.fused_attention_forward(q, q[:, :2], q)
    with pytest.raises(ValueError, match="float32 or float64"):
        kernels.layernorm_forward(np.zeros((2, 3), int), np.ones(3), np.zeros(3))
    with pytest.raises(ValueError, match=r"d_vocab"):
        kernels.embed_forward(np.zeros((4, 2)), np.array([[0, 4]]))
    with pytest.raises(ValueError, match="C-contiguous"):
        p = np.zeros((3, 2)).T
        kernels.adamw_update(p, p, p, p, 1e-3, 0.9, 0.99, 1e-8, 0.0, 1)
    x = np.zeros((2, 3, 4))
    with pytest.raises(ValueError, match="share one dtype"):
        kernels.gelu_backward(x.astype(np.float32), x)
    with pytest.raises(ValueError, match=r"d_post has shape"):
        kernels.gelu_backward(x[:1], x)


# --- the whole model: both backends, same loss and gradients ------------------------------

MODEL_CONFIGS = [
    dict(n_layers=0),
    dict(n_layers=1, layernorm=False, positional="standard"),
    dict(n_layers=2),
    dict(n_layers=2, smeared_keys=True, smear_init=0.3),
    dict(n_layers=3, layernorm=False, smeared_keys=True, positional="standard"),
    dict(n_layers=1, n_heads=1, d_head=1),
    dict(n_layers=2, positional="standard"),                     # LayerNorm, standard positions
    dict(n_layers=1, layernorm=False),                           # no LayerNorm, shortformer
    dict(n_layers=2, d_head=20),                                 # more than 16 dimensions a head
    dict(n_layers=2, d_mlp=7),                                   # MLPs (LayerNorm ln2 before each)
    dict(n_layers=1, layernorm=False, positional="standard", d_mlp=1),  # a 1-wide MLP, no LayerNorm
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
    # and every cached activation, the patterns, scores and per-head results included
    logits_ref, cache_ref = minih.run_with_cache(params, tokens, cfg, backend="numpy")
    logits_nb, cache_nb = minih.run_with_cache(params, tokens, cfg, backend="numba")
    close("logits", logits_nb, logits_ref, np.float64)
    assert set(cache_nb) == set(cache_ref)
    for key in cache_ref:
        if key.endswith("hook_attn_scores"):
            assert_scores(key, cache_nb[key], cache_ref[key], np.float64)
        else:
            close(key, np.asarray(cache_nb[key]), np.asarray(cache_ref[key]), np.float64)


@pytest.mark.parametrize("B", [1, 2, 5, 9])
def test_batch_shards_give_the_whole_batch(B, monkeypatch):
    # oracle: the NumPy ops on the whole batch at once (model._loss_and_grads, no shards),
    # float64. The numba backend computes shard_bounds(B) (N_SHARDS = 8: B = 5 gives five
    # shards of 1, B = 9 seven of 1 and one of 2) and weights each shard by its share
    # B_s / B; a wrong weight or a lost shard is an O(1) error. The numpy backend runs the
    # whole batch plainly and must give the same. MIN_SHARD_POSITIONS = 1 makes these
    # small batches split; MIN_SPLIT_POSITIONS = 1 and MIN_ROWS = 8 make B = 1 (one shard)
    # split its ops and products over the threads instead
    from minih.kernels import shards
    from minih.model import _loss_and_grads
    monkeypatch.setattr(shards, "MIN_SHARD_POSITIONS", 1)
    monkeypatch.setattr(shards, "MIN_SPLIT_POSITIONS", 1)
    monkeypatch.setattr(blas, "MIN_ROWS", 8)
    bounds = shards.shard_bounds(B, 11)
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


@pytest.mark.parametrize("B, T, n_calls", [(31, 32, 1), (32, 32, 2), (4, 256, 2), (16, 128, 4),
                                         (32, 128, 8), (9, 512, 8), (7, 600, 7), (3, 400, 2),
                                         (1, 4096, 1)])
def test_batch_shards_only_when_each_holds_enough_positions(B, T, n_calls):
    # oracle: the calls of f, counted. As many shards as hold MIN_SHARD_POSITIONS = 512
    # positions each on average, at most 8 and at most B: 31 x 32 (992 positions) runs
    # whole (one call), 32 x 32 and 4 x 256 in 2 shards of 512, 16 x 128 in 4, 32 x 128
    # in 8, 9 x 512 in 8 (the last of two sequences), 7 x 600 in 7 of one sequence,
    # 3 x 400 in 2 (of 1 and 2 sequences); one sequence is always one call. A whole batch
    # under MIN_SPLIT_POSITIONS = 2048 positions runs alone (marked as a task: nothing
    # inside splits), a bigger one not
    from minih.kernels import shards
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
    from minih.kernels import shards

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


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_model_with_mlp_training_step(dtype):
    # oracle: the NumPy backend (the MLP's reference ops are checked against finite
    # differences by gradcheck). The "tiny" preset with d_mlp = 6: loss and gradients, then
    # one whole training step (AdamW included) from the same start. Tolerances: float64
    # rounding as in assert_same_float64; float32 as test_model_float32_and_cache (loss
    # 1e-5 relative; each gradient 2e-4 of its own largest entry: float32 sums over 3*6
    # positions in another order, and the twins' GELU differs from the reference's by its
    # float32 rounding, kernels/mlp.py). The AdamW update after it in float64 only: in
    # float32 an entry whose gradient is at rounding level may change sign between the
    # backends, and Adam's first step moves it by about +-lr either way
    from minih.optim import AdamWConfig, adamw_init, train_step
    cfg = minih.ModelConfig.preset("tiny", d_mlp=6, dtype=dtype)
    params = minih.init_params(cfg, seed=7)
    assert "blocks.1.mlp.W_in" in params and params["blocks.1.mlp.W_in"].shape == (8, 6)
    tokens = np.random.default_rng(7).integers(0, cfg.d_vocab, (3, cfg.n_ctx))
    loss_nb, grads_nb = minih.loss_and_grads(params, tokens, cfg, backend="numba")
    loss_ref, grads_ref = minih.loss_and_grads(params, tokens, cfg, backend="numpy")
    if dtype == "float64":
        assert_same_float64("numba", loss_nb, grads_nb, loss_ref, grads_ref)
    else:
        assert abs(loss_nb - loss_ref) <= 1e-5 * abs(loss_ref)
        assert list(grads_nb) == list(grads_ref)
        for key in grads_ref:
            scale = np.abs(grads_ref[key]).max()
            assert_close(key, grads_nb[key] / scale, grads_ref[key] / scale, 0, 2e-4)
    if dtype == "float32":
        return
    stepped = {}
    for backend in ("numba", "numpy"):
        p = {k: v.copy() for k, v in params.items()}
        loss, _ = train_step(p, adamw_init(p), tokens, cfg, AdamWConfig(), backend=backend)
        stepped[backend] = loss, p
    (loss_nb, p_nb), (loss_ref, p_ref) = stepped["numba"], stepped["numpy"]
    assert abs(loss_nb - loss_ref) <= 1e-12 * abs(loss_ref)
    for key in p_ref:
        assert not np.array_equal(p_ref[key], params[key]), f"{key}: the step moved nothing"
        close(key, p_nb[key], p_ref[key], np.float64)


def test_forward_keeps_what_it_is_asked_to():
    # oracle: model.HookPoints' docstring. "all" keeps every value, "patterns" all but the
    # scores and the per-head results; "backward" (training) the same, except that the
    # Numba backend runs its fused attention there: no [B,H,T,T] array, attn.lse instead.
    # The reference's backward reads the pattern, so its "backward" keeps it. Anything
    # else is a one-line error naming the choices
    from minih.model import forward, get_backend
    cfg = minih.ModelConfig.preset("small", n_ctx=12)
    params = minih.init_params(cfg, seed=1)
    tokens = np.random.default_rng(2).integers(0, cfg.d_vocab, (2, 12))
    square = ("attn.hook_pattern", "attn.hook_attn_scores")
    for backend in ("numpy", "numba"):
        ops = get_backend(backend)
        caches = {keep: forward(params, tokens, cfg, ops, keep=keep)[1]
                  for keep in ("all", "patterns", "backward")}
        fused = backend == "numba"
        for keep, cache in caches.items():
            big = [key for key, a in cache.items() if a.ndim == 4 and a.shape[-2:] == (12, 12)]
            want = {"all": 2, "patterns": 1, "backward": 0 if fused else 1}[keep] * cfg.n_layers
            assert len(big) == want, (backend, keep, big)
            has_lse = [f"blocks.{l}.attn.lse" in cache for l in range(cfg.n_layers)]
            assert has_lse == [fused and keep == "backward"] * cfg.n_layers, (backend, keep)
        assert set(caches["all"]) - set(caches["patterns"]) == {
            f"blocks.{l}.{name}" for l in range(cfg.n_layers)
            for name in ("attn.hook_attn_scores", "attn.hook_result")}
        assert not any(key.endswith(square) for key in caches["backward"]) or not fused
        with pytest.raises(ValueError, match="keep must be one of"):
            forward(params, tokens, cfg, ops, keep="some")


def test_numba_forward_falls_back_to_the_passes_when_the_pattern_is_edited():
    # oracle: the NumPy reference with the same edit. An edit at hook_pattern must reach
    # z even in training's keep="backward", where the Numba backend would otherwise fuse
    # the attention and never make the pattern; float64 rounding only
    from minih.model import forward, get_backend
    cfg = minih.ModelConfig.preset("tiny", n_ctx=9, dtype="float64")
    params = minih.init_params(cfg, seed=3)
    tokens = np.random.default_rng(3).integers(0, cfg.d_vocab, (2, 9))
    uniform = lambda p: np.tril(np.ones_like(p)) / np.arange(1, p.shape[-1] + 1)[:, None]
    edits = {"blocks.0.attn.hook_pattern": uniform}
    got, cache = forward(params, tokens, cfg, get_backend("numba"), keep="backward", edits=edits)
    want, _ = forward(params, tokens, cfg, get_backend("numpy"), keep="backward", edits=edits)
    plain, _ = forward(params, tokens, cfg, get_backend("numba"), keep="backward")
    assert "blocks.0.attn.lse" not in cache and "blocks.1.attn.lse" in cache
    close("logits", got, want, np.float64)
    assert np.abs(got - plain).max() > 1e-3                     # the edit did change them


@pytest.mark.parametrize("d_mlp", [0, 6])
@pytest.mark.parametrize("B, backend", [(1, "numba"), (5, "numba")])
def test_threads_do_not_change_results(B, backend, d_mlp, monkeypatch):
    # oracle: the same kernels on one thread. Every parallel loop owns its outputs, and
    # the row chunks and the batch's shards are fixed, so the thread count must not change
    # a single bit (B = 1: one shard, the ops split over the threads; B = 5: shards, whose
    # products are one BLAS call each). MIN_ROWS = 8 makes these small products big
    # enough to split outside a shard, MIN_SHARD_POSITIONS = 1 this small batch into
    # shards. (The numpy backend has no threads: nothing to test.) The thread count is set
    # (minih's pool), not the machine's: 1 thread, then 3, on any machine.
    from minih.kernels import shards
    monkeypatch.setattr(blas, "MIN_ROWS", 8)
    monkeypatch.setattr(shards, "MIN_SHARD_POSITIONS", 1)
    monkeypatch.setattr(shards, "MIN_SPLIT_POSITIONS", 1)               # and B = 1 split its ops
    # d_mlp = 6: with MLPs, whose GELU splits its numbers and whose linear maps split rows
    cfg = minih.ModelConfig.preset("tiny", n_ctx=24, smeared_keys=True, d_mlp=d_mlp)
    params = minih.init_params(cfg, seed=0)
    tokens = np.random.default_rng(0).integers(0, cfg.d_vocab, (B, 24))
    monkeypatch.setattr(threads, "n_threads", lambda: 1)
    loss1, g1 = minih.loss_and_grads(params, tokens, cfg, backend=backend)
    monkeypatch.setattr(threads, "n_threads", lambda: 3)
    loss2, g2 = minih.loss_and_grads(params, tokens, cfg, backend=backend)
    assert loss1 == loss2
    assert all(np.array_equal(g1[k], g2[k]) for k in g1)


def test_bench_step_flops_counts_useful_work():
    # oracle: the multiply-adds enumerated from the shapes, with the causal pairs
    # (i, j <= i) counted from an explicit lower-triangular mask
    from minih.app.bench import step_flops
    cfg = minih.ModelConfig(n_layers=3, n_heads=2, d_model=5, d_head=3, n_ctx=7, d_vocab=11)
    B, T, D, H, E, V = 4, 7, 5, 2, 3, 11
    pairs = int(np.tril(np.ones((T, T))).sum())                  # 28 causal (i, j) pairs
    macs_layer = 3 * B * T * D * H * E + 2 * B * H * pairs * E + B * T * H * E * D
    macs_forward = 3 * macs_layer + B * T * D * V
    assert step_flops(cfg, B) == 3 * 2 * macs_forward             # backward = 2 x forward
    # with an MLP of width M: two more products per layer, D -> M and M -> D
    M = 13
    macs_mlp = macs_forward + 3 * 2 * B * T * D * M
    assert step_flops(cfg.replace(d_mlp=M), B) == 3 * 2 * macs_mlp


def test_bench_merge_rounds_pools_the_step_times():
    # oracle: the median and mean written out for two rounds of a 100-token step
    from minih.app.bench import merge_rounds
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


def test_bench_table_names_the_cpus_vectors():
    # oracle: the machine dict given; the table's first line must say whether the CPU has
    # AVX-512 (the attention's 16-lane vectors in one register, or two: docs/04_numba.md)
    from minih.app.bench import format_table
    for avx512, words in ((False, "(no AVX-512)"), (True, "(AVX-512)")):
        result = {"machine": {"processor": "CPU X", "avx512": avx512,
                              "cpu_count": 2, "numba_threads": 2, "load_average_before": [0.5],
                              "load_average_after": [0.7]}, "matmul_gflops": 100.0, "configs": {}}
        first = format_table(result).splitlines()[0]
        assert first.startswith("machine: CPU X") and words in first, first


def _bench_result(matmul, numpy_eager, cold, warm, growth, eager=None, compiled=None,
                  config="induction-2l"):
    """A bench result dict holding just what target_checks reads: these REF values and,
    when eager is given, `config`'s numba / torch ratios."""
    rows = [{"impl": "minih numba", "fraction_of_matmul": matmul}]
    result = {"configs": {"ref": {"results": rows, "ratios": {"minih numpy / torch eager": numpy_eager}}},
              "numba_start_ref": {"cold": {"first_step_s": cold}, "warm": {"first_step_s": warm}},
              "numba_memory_ref": {"growth_bytes": growth}}
    if eager is not None:
        result["configs"][config] = {"results": [], "ratios": {
            "minih numba / torch eager": eager, "minih numba / torch.compile": compiled}}
    return result


def test_bench_target_checks():
    # oracle: minih's speed targets as docs/04_numba.md states them, typed here (not read from
    # minih.app.bench): on REF >= 50% of matmul, numpy >= 0.5x eager, cold start < 20 s, warm
    # start < 3 s, no growth beyond MEMORY_GROWTH_LIMIT bytes; on every config reproduce
    # trains, numba >= 2x torch eager and >= 1.5x torch.compile
    import copy
    from minih.app.bench import MEMORY_GROWTH_LIMIT, target_checks
    just_met = _bench_result(0.50, 0.5, 19.9, 2.9, MEMORY_GROWTH_LIMIT - 1, 2.0, 1.5)
    just_missed = _bench_result(0.49, 0.49, 20.0, 3.0, MEMORY_GROWTH_LIMIT, 1.99, 1.49)
    before = copy.deepcopy(just_met)
    assert [met for *_, met in target_checks(just_met)] == [True] * 7
    assert just_met == before                                    # reads its input only
    checks = target_checks(just_missed)
    assert [met for *_, met in checks] == [False] * 7
    assert [value for _, value, _, _ in checks] == [0.49, 0.49, 20.0, 3.0, MEMORY_GROWTH_LIMIT,
                                                    1.99, 1.49]
    assert [what.split(":")[0] for what, *_ in checks] == ["REF"] * 5 + ["induction-2l"] * 2
    # each config reproduce trains gets its own rows; REF and SMALL get none
    both = _bench_result(0.5, 0.5, 1, 1, 0, 2.5, 1.2)
    both["configs"]["text-3l"] = {"ratios": {"minih numba / torch eager": 1.9}}
    both["configs"]["small"] = {"ratios": {"minih numba / torch eager": 9.0}}
    rows = {what: met for what, _, _, met in target_checks(both)}
    assert rows["induction-2l: numba >= 2x torch eager"] is True
    assert rows["induction-2l: numba >= 1.5x torch.compile"] is False
    assert rows["text-3l: numba >= 2x torch eager"] is False
    assert rows["text-3l: numba >= 1.5x torch.compile"] is None          # no torch.compile run
    assert not any(what.startswith("small") for what in rows)
    # a run without torch, start or memory measurements: those targets are not measured
    partial = {"configs": {"ref": {"results": [{"impl": "minih numba", "fraction_of_matmul": 0.5}],
                                   "ratios": {}}}}
    checks = target_checks(partial)
    assert [met for *_, met in checks] == [True, None, None, None, None, None, None]
    assert checks[-1][0] == "reproduce's configs: numba >= 1.5x torch.compile"
    assert all(met is None for *_, met in target_checks({"configs": {}}))


def test_bench_table_says_which_targets_are_met():
    from minih.app.bench import format_table
    result = _bench_result(0.44, 0.69, 7.5, 0.5, 32, 1.5, 1.56)
    result.update({"machine": {"processor": "CPU X", "avx512": True, "cpu_count": 2,
                               "numba_threads": 2, "load_average_before": [0.5]},
                   "matmul_gflops": 300.0})
    result["numba_start_ref"]["cold"]["import_and_setup_s"] = 1.0
    result["numba_start_ref"]["warm"]["import_and_setup_s"] = 1.0
    result["numba_memory_ref"].update(steps=10, peak_bytes=65 * 2 ** 20)
    for name in ("ref", "induction-2l"):
        result["configs"][name].update(config={}, batch=32, step_gflop=11.3)
    result["configs"]["ref"]["results"][0].update(tokens_per_s=1.0, median_step_s=1.0, gflops=1.0,
                                                  tokens_per_cpu_s=1.0)
    table = format_table(result).splitlines()
    start = table.index("speed targets (this run):")
    lines = table[start + 1:]
    assert len(lines) == 7
    assert "44%" in lines[0] and lines[0].endswith("NOT met")
    assert "7.50 s" in lines[2] and "32 B" in lines[4]
    assert "1.50x" in lines[5] and lines[5].endswith("NOT met") and "induction-2l" in lines[5]
    assert "1.56x" in lines[6] and lines[6].endswith(" met") and "NOT" not in lines[6]
    # a number just under its target never prints as the target beside "NOT met"
    result["configs"]["ref"]["results"][0]["fraction_of_matmul"] = 0.4979
    result["configs"]["induction-2l"]["ratios"]["minih numba / torch eager"] = 1.9996
    lines = format_table(result).splitlines()[start + 1:]
    assert " 49.8%  NOT met" in lines[0] and " 1.9996x  NOT met" in lines[5]
    result["configs"]["induction-2l"]["ratios"]["minih numba / torch eager"] = 1.9999999999
    assert " <2.00x  NOT met" in format_table(result).splitlines()[start + 6]
    # a run with no config reproduce trains says how to measure them
    del result["configs"]["induction-2l"]
    table = format_table(result)
    assert "reproduce's configs: numba >= 2x torch eager" in table
    assert "--configs reproduce" in table.splitlines()[-1]


def test_bench_configs_cover_every_model_reproduce_trains():
    # oracle: the family's own TrainConfigs; every (model shape, batch) it trains has a
    # bench config of the same fields and batch, and `--configs reproduce` names them all
    from minih.app.bench import CONFIG_GROUPS, CONFIGS, REPRODUCE_CONFIGS
    from minih.app.reproduce.family import family
    fields = ("n_layers", "n_heads", "d_model", "d_head", "n_ctx", "d_vocab", "layernorm",
              "positional", "smeared_keys", "d_mlp", "dtype")

    def shape(model, batch):
        return tuple(getattr(model, f) for f in fields) + (batch,)

    benched = {shape(minih.ModelConfig(**o), b): name for name, (o, b) in CONFIGS.items()}
    trained = {shape(m.train.model, m.train.batch): m.name for m in family("full")}
    missing = [name for key, name in trained.items() if key not in benched]
    assert not missing, f"reproduce trains {missing}, which no bench config measures"
    assert sorted(benched[key] for key in trained) == sorted(REPRODUCE_CONFIGS)
    assert CONFIG_GROUPS["reproduce"] == list(REPRODUCE_CONFIGS)


def test_bench_torch_model_is_minihs_architecture():
    # the PyTorch model of the bench has the parameters minih has, config by config: with an
    # MLP (two biased products per layer) and smeared keys (one logit per head)
    torch = pytest.importorskip("torch")
    from minih.app.bench_torch import _model
    for overrides in ({}, {"d_mlp": 12}, {"smeared_keys": True}, {"layernorm": False, "d_mlp": 5}):
        cfg = minih.ModelConfig(n_layers=2, n_heads=3, d_model=8, d_head=4, n_ctx=6, d_vocab=7,
                                **overrides)
        n_torch = sum(p.numel() for p in _model(cfg).parameters())
        n_minih = sum(v.size for v in minih.init_params(cfg, 0).values())
        assert n_torch == n_minih, overrides
        logits = _model(cfg)(torch.zeros(2, 6, dtype=torch.long))
        assert tuple(logits.shape) == (2, 6, 7)


def test_bench_bad_values_are_one_line_errors(capsys):
    # rejected before any measurement starts: exit code 2 and one line saying what is allowed
    from minih.cli import main as cli_main
    for argv, words in ((["bench", "--rounds", "0"], "--rounds must be >= 1"),
                        (["bench", "--steps", "0"], "--steps and --rounds must be >= 1"),
                        (["bench", "--configs", "huge"], "choose from")):
        assert cli_main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and words in err, err


def test_command_line_sets_no_environment_and_never_restarts():
    # oracle: `python -m minih` leaves the environment as it found it (the BLAS threads and
    # the allocator are set in-process, around minih's own work), so a child process of a
    # command sees exactly its parent's variables
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OPENBLAS_", "OMP_", "MALLOC_", "MINIH_"))}
    env["PYTHONPATH"] = str(root)
    probe = ("import os, runpy, sys; sys.argv = ['minih', 'train', '--list']; "
             "before = dict(os.environ); pid = os.getpid()\n"
             "try:\n    runpy.run_module('minih', run_name='__main__')\n"
             "except SystemExit:\n    pass\n"
             "print('SAME' if dict(os.environ) == before and os.getpid() == pid else 'CHANGED')")
    res = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip().splitlines()[-1] == "SAME"
    assert "induction-2l" in res.stdout


def test_bench_op_profile_times_every_op_and_restores_the_backend():
    # oracle: the backend module's own public functions; after profiling they must be
    # the very same objects again (the profiler wraps them only while it measures)
    from minih.app.bench import op_profile
    cfg = minih.ModelConfig.preset("tiny")
    before = {n: getattr(kernels, n) for n in dir(kernels) if not n.startswith("_")}
    prof = op_profile(cfg, 2, "numba", steps=1, warmup=1)
    assert all(getattr(kernels, n) is f for n, f in before.items())
    for op in ("fused_attention_forward", "fused_attention_backward", "layernorm_forward",
               "cross_entropy_forward", "unembed_backward", "adamw_update"):
        wall, cpu = prof["ops_ms"][op]
        assert wall > 0 and cpu >= 0, op
    assert prof["step_wall_ms"] > 0 and prof["tokens_per_s"] > 0
    assert prof["fused_step_wall_ms"] > 0                # the step as training runs it
    assert kernels.fused_step_applies(np.zeros((2, cfg.n_ctx), dtype=np.int64))  # given back


def test_shapes_cover_whole_and_partial_tiles():
    # keeps SHAPES honest if the tile sizes change: some T must end in a partial tile of rows
    # after whole ones, some E must span more than one 16-wide vector without filling two
    rows, lanes = attention.ROWS, simd.LANES
    assert any(T > rows and T % rows for _, T, _, _, _, _ in SHAPES)
    assert any(E > lanes and E % lanes for _, _, _, E, _, _ in SHAPES)
