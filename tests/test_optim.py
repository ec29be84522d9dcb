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
