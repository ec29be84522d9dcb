"""The Numba backend's whole-step kernel (minih/kernels/step.py) against the NumPy reference.

Oracle: minih.loss_and_grads with backend="numpy" (the readable model.py, itself checked
against finite differences by minih.gradcheck), on the same params and tokens; and
finite differences on the fused step directly. Tolerances are tests/test_kernels.py's:
float64 rtol 1e-10 (sums in another order), float32 rtol 1e-4 (float32 rounding and the
polynomial exp), with an atol for float32 gradients of 3e-5 of each one's largest
entry. A wrong index, a missed residual or a lost gradient term gives errors of order 1.
"""
import itertools

import numpy as np
import pytest

import minih
from minih.kernels import shards, step
from helpers import assert_close

TOL = {"float64": (1e-10, 1e-12), "float32": (1e-4, 1e-5)}
# every architecture choice the kernel branches on
VARIANTS = [dict(layernorm=ln, positional=pos, smeared_keys=sm, d_mlp=m)
            for ln, pos, sm, m in itertools.product((True, False), ("shortformer", "standard"),
                                                    (False, True), (0, 7))]
# (n_layers, n_heads, d_head, d_model, n_ctx, d_vocab, batch): odd sizes, then size-1 ones
# (one layer, one head, d_head 1, d_model 1 with LayerNorm's zero variance, one sequence of
# two tokens: a single prediction), then the attention's whole tiles (T = 32, E = 16),
# then a model of no layers
SHAPES = [(2, 3, 5, 11, 9, 13, 3), (1, 1, 1, 1, 2, 2, 1), (3, 2, 16, 8, 32, 5, 2),
          (0, 2, 3, 6, 7, 5, 2)]                       # no layers: embedding and unembedding


def variant_id(v):
    """A test id naming every choice of the variant, e.g. layernorm=False,...,d_mlp=7."""
    return ",".join(f"{k}={v[k]}" for k in v)


def model(shape, dtype, seed=0, **variant):
    L, H, E, D, T, V, B = shape
    cfg = minih.ModelConfig(n_layers=L, n_heads=H, d_head=E, d_model=D, n_ctx=T, d_vocab=V,
                            dtype=dtype, **variant)
    params = minih.init_params(cfg, seed)
    if variant.get("smeared_keys"):                 # smear away from its init, s != 1/2
        for key in params:
            if key.endswith("attn.smear"):
                params[key] = np.linspace(-1.5, 2.0, H).astype(dtype)
    tokens = np.random.default_rng(seed + 1).integers(0, V, (B, T))
    return cfg, params, tokens


def assert_matches_reference(cfg, params, tokens, dtype):
    loss_ref, grads_ref = minih.loss_and_grads(params, tokens, cfg, backend="numpy")
    loss, grads = step.fused_loss_and_grads(params, tokens, cfg)
    rtol, atol = TOL[dtype]
    assert abs(loss - loss_ref) <= rtol * abs(loss_ref) + atol, (loss, loss_ref)
    assert set(grads) == set(grads_ref)
    for key, want in grads_ref.items():
        assert grads[key].dtype == want.dtype and grads[key].flags.c_contiguous, key
        # in float32 an entry carries the rounding of its whole sum, whose terms can be as
        # large as the gradient's largest entries: so its absolute tolerance scales with
        # them. (On an AMD EPYC, AVX2: 1.2e-5 off on an entry of 0.014 whose gradient
        # reaches 0.82; against float64, the kernel's largest error was 1.1e-5 of the
        # gradient's largest entry, the float32 reference's own 4e-6.)
        scale = np.abs(want).max(initial=0.0) if dtype == "float32" else 0.0
        assert_close(key, grads[key], want, rtol, max(atol, 3e-5 * scale))


@pytest.mark.parametrize("variant", VARIANTS, ids=variant_id)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_fused_step_equals_the_reference_float64(shape, variant):
    cfg, params, tokens = model(shape, "float64", **variant)
    assert_matches_reference(cfg, params, tokens, "float64")


@pytest.mark.parametrize("variant", [VARIANTS[0], VARIANTS[-1], VARIANTS[7]], ids=variant_id)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_fused_step_equals_the_reference_float32(shape, variant):
    cfg, params, tokens = model(shape, "float32", **variant)
    assert_matches_reference(cfg, params, tokens, "float32")


@pytest.mark.parametrize("variant", VARIANTS, ids=variant_id)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_fused_per_token_losses_equal_the_reference(shape, variant):
    # the kernel's forward alone (backward=False), float64 over every variant and shape,
    # float32 on the first shape; oracle: the reference's per_token_losses
    for dtype in ("float64", "float32") if shape == SHAPES[0] else ("float64",):
        cfg, params, tokens = model(shape, dtype, **variant)
        want = minih.per_token_losses(params, tokens, cfg, backend="numpy")
        got = step.fused_per_token_losses(params, tokens, cfg)
        assert got.dtype == want.dtype and got.shape == want.shape
        assert_close("losses", got, want, *TOL[dtype])


@pytest.mark.parametrize("variant", [VARIANTS[7], VARIANTS[-1]], ids=variant_id)
def test_fused_step_against_finite_differences(variant):
    # oracle: central differences of the loss (minih.gradcheck, which differentiates the
    # plain forward), independent of any backward; gradcheck's loss_and_grads with the
    # numba backend is the fused step (checked below)
    cfg, params, tokens = model(SHAPES[0], "float64", **variant)
    report = minih.gradcheck(cfg, params, tokens, backend="numba", max_entries=12)
    assert report.ok(), report


def test_the_numba_backend_trains_with_the_fused_step(monkeypatch):
    # oracle: the calls of the kernel, counted. A batch in shards runs it once a shard; a
    # batch of one big shard (one sequence of at least MIN_SPLIT_POSITIONS positions) runs
    # the op-by-op path, which splits its ops over the threads
    calls = []
    kernel = step._shard_step

    def counted(tokens, *rest):
        calls.append(tokens.shape)
        return kernel(tokens, *rest)

    monkeypatch.setattr(step, "_shard_step", counted)
    monkeypatch.setattr(shards, "MIN_SHARD_POSITIONS", 4)
    monkeypatch.setattr(shards, "MIN_SPLIT_POSITIONS", 16)
    cfg, params, tokens = model((2, 3, 5, 11, 9, 13, 4), "float64", d_mlp=7)
    loss, grads = minih.loss_and_grads(params, tokens, cfg, backend="numba")
    assert calls == [(1, 9)] * 4                    # 4 shards of one sequence, 9 >= 4 positions
    assert list(grads) == list(params)              # the params' key order
    loss_ref, grads_ref = minih.loss_and_grads(params, tokens, cfg, backend="numpy")
    assert abs(loss - loss_ref) < 1e-12
    calls.clear()
    assert step.fused_step_applies(tokens[:1])     # one sequence of 9 < 16 positions
    cfg_long = cfg.replace(n_ctx=20)
    params_long = minih.init_params(cfg_long, 0)
    long = np.random.default_rng(0).integers(0, cfg.d_vocab, (1, 20))          # 20 >= 16
    assert not step.fused_step_applies(long)
    loss, _ = minih.loss_and_grads(params_long, long, cfg_long, backend="numba")
    assert calls == []
    assert abs(loss - minih.loss_and_grads(params_long, long, cfg_long, backend="numpy")[0]) < 1e-12


def test_per_token_losses_take_the_fused_forward(monkeypatch):
    # oracle: the kernel's calls, counted, with backward=False; the same numbers as the
    # op-by-op path (fused_step_applies False), which is also what a long sequence takes
    calls = []
    kernel = step._shard_step

    def counted(tokens, *rest):
        calls.append((tokens.shape, rest[-1]))
        return kernel(tokens, *rest)

    monkeypatch.setattr(step, "_shard_step", counted)
    monkeypatch.setattr(shards, "MIN_SHARD_POSITIONS", 4)
    monkeypatch.setattr(shards, "MIN_SPLIT_POSITIONS", 16)
    cfg, params, tokens = model((2, 3, 5, 11, 9, 13, 4), "float64", d_mlp=7)
    got = minih.per_token_losses(params, tokens, cfg, backend="numba")
    assert calls == [((1, 9), False)] * 4            # 4 shards, forward only
    assert abs(minih.loss_fn(params, tokens, cfg, backend="numba") - got.mean()) < 1e-12
    calls.clear()
    monkeypatch.setattr(step, "fused_step_applies", lambda tokens: False)
    monkeypatch.setattr(minih.kernels, "fused_step_applies", lambda tokens: False)
    op_by_op = minih.per_token_losses(params, tokens, cfg, backend="numba")
    assert calls == []
    assert_close("losses", got, op_by_op, *TOL["float64"])


def test_fused_step_leaves_its_inputs_unchanged():
    cfg, params, tokens = model(SHAPES[0], "float32", d_mlp=7, smeared_keys=True)
    before = {k: v.copy() for k, v in params.items()}
    tokens_before = tokens.copy()
    step.fused_loss_and_grads(params, tokens, cfg)
    step.fused_per_token_losses(params, tokens, cfg)
    assert all(np.array_equal(params[k], before[k]) for k in params)
    assert np.array_equal(tokens, tokens_before)


@pytest.mark.parametrize("variant", [VARIANTS[0], VARIANTS[-1]], ids=variant_id)
def test_fused_steps_hold_no_more_memory_as_they_go(variant):
    # oracle: tracemalloc (every NumPy array and Python object). After the first steps
    # (the workspace), further steps must leave nothing behind: 352 bytes a step were
    # once kept by a generator in stacked(), found this way. 50 steps of a leak of even
    # 8 bytes a step would pass 400 bytes
    import tracemalloc
    cfg, params, tokens = model(SHAPES[0], "float32", **variant)
    for _ in range(2):
        step.fused_loss_and_grads(params, tokens, cfg)
    tracemalloc.start()
    try:
        step.fused_loss_and_grads(params, tokens, cfg)
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(50):
            step.fused_loss_and_grads(params, tokens, cfg)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 400, f"{grown} bytes more held after 50 more steps"
