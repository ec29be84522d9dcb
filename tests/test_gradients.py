"""The whole model's backward against finite differences, every config combination.

Oracle: minih.gradcheck, a fourth-order central difference of the float64 loss for
every parameter entry. Tolerance 1e-6 on the relative error: the stencil is exact to
~1e-12 absolute here (see minih/gradcheck.py), a correct backward measures below
2e-7, and a wrong one is off by O(1e-1) or more.
"""
import itertools

import numpy as np
import pytest

import minih

TOL = 1e-6
CONFIGS = list(itertools.product([0, 1, 2, 3, 4], [True, False], ["shortformer", "standard"],
                                 [False, True]))


@pytest.mark.parametrize("n_layers,layernorm,positional,smeared", CONFIGS)
def test_gradcheck_every_config(n_layers, layernorm, positional, smeared):
    # smear_init 0.3 so that s != 0.5 exercises the general formula
    cfg = minih.ModelConfig.preset("tiny", n_layers=n_layers, layernorm=layernorm,
                                   positional=positional, smeared_keys=smeared, smear_init=0.3)
    # every entry up to 2 layers; a seeded sample of 24 entries per parameter beyond
    # (the deeper models repeat the same blocks; sampling keeps the suite fast)
    report = minih.gradcheck(cfg, seed=n_layers, seq_len=5,
                             max_entries=None if n_layers <= 2 else 24)
    assert report.ok(TOL), str(report)
    assert {r.key for r in report.rows} == set(minih.param_shapes(cfg))


def test_gradcheck_detects_a_wrong_backward(monkeypatch):
    # the checker itself must fail when the backward is wrong: halve one gradient
    real = minih.model.backward

    def broken(*args, **kwargs):
        grads = real(*args, **kwargs)
        grads["blocks.0.attn.W_K"] = grads["blocks.0.attn.W_K"] * 0.5
        return grads

    monkeypatch.setattr(minih.model, "backward", broken)
    report = minih.gradcheck()
    bad = {r.key for r in report.rows if r.max_rel_err > TOL}
    assert bad == {"blocks.0.attn.W_K"}


def test_gradcheck_sampling_and_float32_params():
    # float32 params are cast to float64 for the check; a sample of entries is checked
    cfg = minih.ModelConfig.preset("tiny", dtype="float32")
    report = minih.gradcheck(cfg, params=minih.init_params(cfg, 1), max_entries=5)
    assert report.ok(TOL)
    assert all(r.n_checked == min(5, int(np.prod(s))) for r, s in
               zip(report.rows, minih.param_shapes(cfg).values()))


def test_float32_gradients_match_float64():
    # the float32 training path computes the same gradients to float32 precision:
    # rtol 1e-3 / atol 1e-5 cover accumulated rounding (eps32 = 6e-8) over ~1e3 terms
    cfg64 = minih.ModelConfig.preset("tiny", dtype="float64", smeared_keys=True)
    cfg32 = cfg64.replace(dtype="float32")
    p64 = minih.init_params(cfg64, 3)
    p32 = {k: v.astype(np.float32) for k, v in p64.items()}
    tokens = np.random.default_rng(0).integers(0, cfg64.d_vocab, (3, cfg64.n_ctx))
    l64, g64 = minih.loss_and_grads(p64, tokens, cfg64)
    l32, g32 = minih.loss_and_grads(p32, tokens, cfg32)
    assert abs(l32 - l64) < 1e-5
    for k in g64:
        assert g32[k].dtype == np.float32, k
        np.testing.assert_allclose(g32[k], g64[k], rtol=1e-3, atol=1e-5, err_msg=k)
