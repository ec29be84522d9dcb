"""minih/training/fused.py: training in the whole-step kernel's layout, against
optim.train_step on the params dict (the oracle: the same bits, step after step)."""
import json

import numpy as np
import pytest

import minih
from minih.optim import adamw_init, train_step
from minih.training.fused import FusedTraining
from test_step import SHAPES, VARIANTS, model, variant_id


def run_both(cfg, params, tokens, opt, steps):
    """(the dict path's params, state, outputs), (the fused path's), from the same start."""
    p_a = {k: v.copy() for k, v in params.items()}
    s_a = adamw_init(p_a)
    out_a = [train_step(p_a, s_a, tokens, cfg, opt, lr=opt.lr * (i + 1) / steps, backend="numba")
             for i in range(steps)]
    p_b = {k: v.copy() for k, v in params.items()}
    s_b = adamw_init(p_b)
    fused = FusedTraining(p_b, s_b, cfg)
    out_b = [fused.step(tokens, opt, lr=opt.lr * (i + 1) / steps) for i in range(steps)]
    fused.sync(p_b, s_b)
    return (p_a, s_a, out_a), (p_b, s_b, out_b)


def assert_same_bits(a, b):
    (p_a, s_a, out_a), (p_b, s_b, out_b) = a, b
    assert out_a == out_b                                   # losses and gradient norms
    assert s_a["step"] == s_b["step"]
    for k in p_a:
        assert np.array_equal(p_a[k], p_b[k]), k
        assert np.array_equal(s_a["m"][k], s_b["m"][k]) and np.array_equal(s_a["v"][k], s_b["v"][k]), k


@pytest.mark.parametrize("variant", VARIANTS, ids=variant_id)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fused_training_takes_the_same_steps_as_train_step(variant, dtype):
    # clipping on (grad_clip below the norms) and weight decay on, so every term of the
    # update is exercised; odd sizes, so the flat segments start anywhere
    cfg, params, tokens = model(SHAPES[0], dtype, **variant)
    opt = minih.AdamWConfig(lr=1e-2, weight_decay=0.1, grad_clip=0.05)
    assert_same_bits(*run_both(cfg, params, tokens, opt, 4))


@pytest.mark.parametrize("shape", SHAPES[1:], ids=str)
def test_fused_training_on_size_one_and_zero_layer_models(shape):
    cfg, params, tokens = model(shape, "float32", smeared_keys=True, d_mlp=3)
    assert_same_bits(*run_both(cfg, params, tokens, minih.AdamWConfig(lr=1e-2), 3))


def test_a_non_finite_loss_changes_nothing():
    cfg, params, tokens = model(SHAPES[0], "float32", d_mlp=7)
    params["unembed.W_U"][0, 0] = np.inf
    state = adamw_init(params)
    fused = FusedTraining(params, state, cfg)
    before = fused.W.copy(), fused.M.copy(), fused.V.copy()
    loss, norm = fused.step(tokens, minih.AdamWConfig())
    assert not (np.isfinite(loss) and np.isfinite(norm))
    assert all(np.array_equal(x, y, equal_nan=True) for x, y in zip(before, (fused.W, fused.M, fused.V)))
    assert fused.step_count == 0


def test_it_applies_where_the_whole_step_kernel_does():
    from minih.kernels import shards
    assert FusedTraining.applies(32, 32) and FusedTraining.applies(4, 256)
    assert not FusedTraining.applies(1, shards.MIN_SPLIT_POSITIONS)      # one big shard: op by op


def test_train_writes_the_same_run_with_or_without_it(tmp_path, monkeypatch):
    # oracle: minih.train with the dict path (FusedTraining switched off): every snapshot's
    # weights and losses, the training losses and the checkpoint's moments, bit for bit;
    # checkpoints every 3 steps, so the weights are written back mid-run too
    from minih.training import fused
    tc = minih.TrainConfig.preset("induction-1l", steps=12, log_snapshots=3, linear_snapshots=2)
    minih.train(tc, tmp_path / "fused", progress=False, checkpoint_every=3)
    monkeypatch.setattr(fused.FusedTraining, "applies", staticmethod(lambda batch, T: False))
    minih.train(tc, tmp_path / "dict", progress=False, checkpoint_every=3)
    a, b = minih.load_run(tmp_path / "fused"), minih.load_run(tmp_path / "dict")
    assert a.steps.tolist() == b.steps.tolist() and len(a) >= 4
    assert np.array_equal(a.train_loss, b.train_loss) and np.array_equal(a.losses, b.losses)
    for s in range(len(a)):
        assert all(np.array_equal(a.params(s)[k], b.params(s)[k]) for k in a.params(s))
    za, zb = np.load(tmp_path / "fused" / "checkpoint.npz"), np.load(tmp_path / "dict" / "checkpoint.npz")
    assert sorted(za.files) == sorted(zb.files)
    for k in za.files:                           # "meta" holds the wall time: its step counts
        if k == "meta":
            ma, mb = (json.loads(str(z[k])) for z in (za, zb))
            assert (ma["step"], ma["opt_step"]) == (mb["step"], mb["opt_step"]) == (12, 12)
        else:
            assert np.array_equal(za[k], zb[k]), k


def test_bad_tokens_are_refused_before_the_kernel_sees_them():
    # the kernel does not check its indices: a token id out of range must be a ValueError
    cfg, params, tokens = model(SHAPES[0], "float32")
    fused = FusedTraining(params, adamw_init(params), cfg)
    tokens[0, 0] = cfg.d_vocab
    with pytest.raises(ValueError, match="d_vocab"):
        fused.step(tokens, minih.AdamWConfig())
    assert fused.step_count == 0
