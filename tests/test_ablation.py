"""Head ablations (minih/ablation.py): zero, mean and pattern-preserving.

Oracles: run_with_cache (no ablation must reproduce it bit for bit); a full recompute
(the clean-cache shortcut must agree with it); a model built so that a head's mean
output is exactly zero (zero == mean ablation); the hand-built induction model
(minih/handbuilt.py), whose induction circuit is known by construction.
"""
import copy
import itertools

import numpy as np
import pytest

import minih
from minih.ablation import Ablation, KINDS, ablated_per_token_losses, head_means, run_with_ablation
from minih.handbuilt import induction_model, repeated_random_tokens

CONFIGS = [dict(layernorm=ln, positional=pos, smeared_keys=sm)
           for ln, pos, sm in itertools.product([True, False], ["shortformer", "standard"], [False, True])]


def _model(seed=0, **fields):
    cfg = minih.ModelConfig.preset("tiny", dtype="float64", **fields)
    params = minih.init_params(cfg, seed)
    tokens = np.random.default_rng(seed).integers(0, cfg.d_vocab, (3, cfg.n_ctx))
    return cfg, params, tokens


@pytest.mark.parametrize("fields", CONFIGS)
def test_no_ablation_is_run_with_cache_exactly(fields):
    # oracle: minih.run_with_cache; same ops in the same order, so equality is exact
    cfg, params, tokens = _model(**fields)
    logits, cache = minih.run_with_cache(params, tokens, cfg)
    for ablation in (None, Ablation([], "zero"), Ablation([], "pattern")):
        logits2, cache2 = run_with_ablation(params, tokens, cfg, ablation, full_cache=True)
        np.testing.assert_array_equal(logits2, logits)
        for key in cache2:
            np.testing.assert_array_equal(cache2[key], cache[key], err_msg=key)


@pytest.mark.parametrize("fields", CONFIGS)
@pytest.mark.parametrize("kind", KINDS)
def test_clean_cache_shortcut_equals_full_recompute(fields, kind):
    # oracle: the same ablation computed from the embedding up (no clean cache reuse)
    cfg, params, tokens = _model(**fields)
    _, cache = minih.run_with_cache(params, tokens, cfg)
    for heads in ([(0, 1)], [(1, 0)], [(0, 0), (1, 1)]):
        ab = Ablation(heads, kind)
        full, _ = run_with_ablation(params, tokens, cfg, ab)
        fast, _ = run_with_ablation(params, tokens, cfg, ab, clean_cache=cache)
        # float64; the shortcut reuses values equal to the recomputed ones, so only
        # rounding could differ
        np.testing.assert_allclose(fast, full, rtol=0, atol=1e-12, err_msg=f"{kind} {heads}")


def test_zero_ablation_is_removing_the_heads_write():
    # oracle: the clean logits minus the ablated head's write pushed through the rest of
    # a 1-layer model without LayerNorm, which is linear: logits - result_h @ W_U
    cfg, params, tokens = _model(n_layers=1, layernorm=False)
    logits, cache = minih.run_with_cache(params, tokens, cfg)
    ablated, _ = run_with_ablation(params, tokens, cfg, Ablation([(0, 1)], "zero"))
    expected = logits - cache["blocks.0.attn.hook_result"][:, :, 1] @ params["unembed.W_U"]
    np.testing.assert_allclose(ablated, expected, rtol=0, atol=1e-12)  # float64 rounding only


def test_mean_ablation_writes_the_per_position_mean():
    # oracle: the mean of hook_result over the batch, taken directly from the cache
    cfg, params, tokens = _model(layernorm=False)
    _, cache = minih.run_with_cache(params, tokens, cfg)
    means = head_means(params, tokens, cfg)
    np.testing.assert_allclose(means[1], cache["blocks.1.attn.hook_result"].mean(axis=0), atol=1e-12)
    _, ab_cache = run_with_ablation(params, tokens, cfg, Ablation([(1, 0)], "mean"), full_cache=True)
    written = ab_cache["blocks.1.attn.hook_result"][:, :, 0]                 # [B,T,D]
    np.testing.assert_allclose(written, np.broadcast_to(means[1][:, 0], written.shape), atol=1e-12)


def test_zero_and_mean_agree_when_the_heads_mean_output_is_zero():
    # A model where head 0.0 writes something nonzero but zero on average: its queries
    # and keys are zero (uniform attention, the same pattern for every sequence), the
    # embedding of token v + V/2 is minus that of v, and the batch holds every sequence
    # with its mirror. LayerNorm with b = 0 is odd (LN(-x) = -LN(x)), so the head's
    # write for the mirror is exactly minus the write for the sequence.
    cfg = minih.ModelConfig(n_layers=2, n_heads=2, d_model=8, d_head=4, n_ctx=6, d_vocab=10,
                            dtype="float64")
    params = minih.init_params(cfg, 1)
    half = cfg.d_vocab // 2
    params["embed.W_E"][half:] = -params["embed.W_E"][:half]
    params["blocks.0.attn.W_Q"][0] = 0
    params["blocks.0.attn.W_K"][0] = 0
    seqs = np.random.default_rng(1).integers(0, half, (3, cfg.n_ctx))
    tokens = np.concatenate([seqs, seqs + half])                            # [6, T]
    _, cache = minih.run_with_cache(params, tokens, cfg)
    write = cache["blocks.0.attn.hook_result"][:, :, 0]
    assert np.abs(write).max() > 0.1                        # the head does write something
    assert np.abs(head_means(params, tokens, cfg)[0][:, 0]).max() < 1e-14   # ... zero on average
    zero = ablated_per_token_losses(params, tokens, cfg, Ablation([(0, 0)], "zero"))
    mean = ablated_per_token_losses(params, tokens, cfg, Ablation([(0, 0)], "mean"))
    clean = minih.per_token_losses(params, tokens, cfg)
    assert np.abs(zero - clean).max() > 1e-3                # the ablation does change the loss
    np.testing.assert_allclose(mean, zero, rtol=0, atol=1e-12)   # means are ~1e-16: rounding only


@pytest.mark.parametrize("kind", KINDS)
def test_ablation_never_changes_its_inputs(kind):
    # oracle: deep copies taken before the call
    cfg, params, tokens = _model()
    _, cache = minih.run_with_cache(params, tokens, cfg)
    before = copy.deepcopy((params, tokens, cache))
    means = head_means(params, tokens, cfg) if kind == "mean" else None
    means_before = copy.deepcopy(means)
    ab = Ablation([(0, 1), (1, 0)], kind, means=means)
    run_with_ablation(params, tokens, cfg, ab, full_cache=True)
    run_with_ablation(params, tokens, cfg, ab, clean_cache=cache, full_cache=True)
    for got, want in zip((params, cache), before[::2]):
        for key in want:
            np.testing.assert_array_equal(got[key], want[key], err_msg=key)
    np.testing.assert_array_equal(tokens, before[1])
    if means is not None:
        for l in means:
            np.testing.assert_array_equal(means[l], means_before[l])


def test_pattern_ablation_keeps_every_pattern():
    # oracle: the clean run's patterns; a zero ablation, by contrast, changes layer 1's
    cfg, params, tokens = _model()
    _, cache = minih.run_with_cache(params, tokens, cfg)
    _, pat = run_with_ablation(params, tokens, cfg, Ablation([(0, 0)], "pattern"))
    _, zero = run_with_ablation(params, tokens, cfg, Ablation([(0, 0)], "zero"))
    np.testing.assert_array_equal(pat["blocks.1.attn.hook_pattern"], cache["blocks.1.attn.hook_pattern"])
    assert np.abs(zero["blocks.1.attn.hook_pattern"] - cache["blocks.1.attn.hook_pattern"]).max() > 1e-3


def test_bad_ablations_raise():
    cfg, params, tokens = _model()
    with pytest.raises(ValueError, match="kind"):
        Ablation([(0, 0)], "ones")
    with pytest.raises(ValueError, match="does not exist"):
        run_with_ablation(params, tokens, cfg, Ablation([(2, 0)]))
    with pytest.raises(ValueError, match="pairs"):
        Ablation([0, 1])
    with pytest.raises(ValueError, match="means"):
        run_with_ablation(params, tokens, cfg, Ablation([(1, 0)], "mean", means={0: np.zeros((6, 2, 8))}))
