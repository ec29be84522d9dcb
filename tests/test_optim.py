"""AdamW on the params dict, clipping, and a loss that goes down."""
import numpy as np
import pytest

import minih
from minih.optim import adamw_init, adamw_step, decays, global_norm


def test_loss_goes_down_on_a_tiny_task():
    # a 1-layer model learns a fixed cyclic sequence 0,1,2,...: from ~log(11) = 2.4 to
    # near zero. 300 AdamW steps; "clearly lower" = below a quarter of the start.
    cfg = minih.ModelConfig.preset("tiny", n_layers=1)
    params = minih.init_params(cfg, 0)
    state = adamw_init(params)
    opt = minih.AdamWConfig(lr=1e-2)
    rng = np.random.default_rng(0)
    losses = []
    for _ in range(300):
        start = rng.integers(0, cfg.d_vocab, size=(8, 1))
        tokens = (start + np.arange(cfg.n_ctx)) % cfg.d_vocab
        losses.append(minih.train_step(params, state, tokens, cfg, opt)[0])
    assert losses[-1] < losses[0] / 4, (losses[0], losses[-1])
    assert state["step"] == 300


def test_clipping_scales_the_update_not_the_grads():
    cfg = minih.ModelConfig.preset("tiny", dtype="float64")
    params = minih.init_params(cfg)
    grads = {k: np.ones_like(v) for k, v in params.items()}
    grads_before = {k: v.copy() for k, v in grads.items()}
    norm = global_norm(grads)
    assert norm == pytest.approx(np.sqrt(sum(v.size for v in params.values())))
    # with clipping at norm/2, the first Adam step is the same (Adam is scale-free at
    # step 1 up to eps), but the moments m hold the clipped gradient
    state = adamw_init(params)
    reported = adamw_step(params, grads, state, minih.AdamWConfig(grad_clip=norm / 2, eps=1e-12))
    assert reported == pytest.approx(norm)
    m = state["m"]["unembed.W_U"]
    np.testing.assert_allclose(m, 0.1 * 0.5)   # (1 - beta1) * g * (clip / norm)
    assert all(np.array_equal(grads[k], grads_before[k]) for k in grads)


def test_weight_decay_only_on_matrices():
    cfg = minih.ModelConfig.preset("tiny", dtype="float64", smeared_keys=True)
    params = minih.init_params(cfg)
    assert decays("embed.W_E", params["embed.W_E"]) and decays("unembed.W_U", params["unembed.W_U"])
    assert not decays("ln_final.w", params["ln_final.w"])
    assert not decays("blocks.0.attn.smear", params["blocks.0.attn.smear"])
    # zero gradients: only decay moves anything, and only the matrices move
    before = {k: v.copy() for k, v in params.items()}
    zero = {k: np.zeros_like(v) for k, v in params.items()}
    adamw_step(params, zero, adamw_init(params), minih.AdamWConfig(lr=0.1, weight_decay=0.5))
    for k in params:
        if params[k].ndim >= 2:
            np.testing.assert_allclose(params[k], before[k] * (1 - 0.05), err_msg=k)
        else:
            assert np.array_equal(params[k], before[k]), k


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_check_false_skips_only_the_check_of_params(backend):
    # the same bits with and without the check; a NaN weight is refused with the check,
    # and without it the step reports the non-finite loss and leaves params and state as
    # they were (what minih.train relies on after checking its params once)
    cfg = minih.ModelConfig.preset("tiny", n_layers=1)
    tokens = np.random.default_rng(0).integers(0, cfg.d_vocab, (4, cfg.n_ctx))
    runs = []
    for check in (True, False):
        params = minih.init_params(cfg, 0)
        state = adamw_init(params)
        out = [minih.train_step(params, state, tokens, cfg, minih.AdamWConfig(), backend=backend,
                                check=check) for _ in range(3)]
        runs.append((out, params, state))
    (out_a, p_a, s_a), (out_b, p_b, s_b) = runs
    assert out_a == out_b
    assert all(np.array_equal(p_a[k], p_b[k]) and np.array_equal(s_a["m"][k], s_b["m"][k]) for k in p_a)
    p_a["embed.W_E"][0, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        minih.train_step(p_a, s_a, tokens, cfg, minih.AdamWConfig(), backend=backend)
    before = {k: v.copy() for k, v in p_a.items()}
    tokens[:, 0] = 0                                           # the NaN row is read
    loss, norm = minih.train_step(p_a, s_a, tokens, cfg, minih.AdamWConfig(), backend=backend,
                                  check=False)
    assert not np.isfinite(loss) or not np.isfinite(norm)
    assert all(np.array_equal(p_a[k], before[k], equal_nan=True) for k in p_a)
    assert s_a["step"] == 3
