"""Path expansion and term importance (minih/interp/paths.py).

Oracles: run_with_cache (the paths must sum to its logits), pattern-preserving
ablation (FW footnote: removing a head with patterns frozen = removing every path
through it), the direct path written out by hand (W_E[t] @ W_U), and the hand-built
induction model, whose layer-1 head reads only what the embedding wrote. Models with
MLPs have no path expansion: they are refused.
"""
import copy
import itertools

import numpy as np
import pytest

import minih
from minih.interp.ablation import Ablation, run_with_ablation
from minih.interp.handbuilt import induction_model, repeated_random_tokens
from helpers import tiny_model
from minih.interp.paths import iter_paths, path_expansion, path_name, term_importance

CONFIGS = [dict(n_layers=n, layernorm=ln, positional=pos)
           for n, ln, pos in itertools.product([1, 2, 3], [True, False], ["shortformer", "standard"])]


_model = tiny_model                      # tests/helpers.py


@pytest.mark.parametrize("fields", CONFIGS)
def test_paths_sum_to_the_logits(fields):
    # oracle: run_with_cache; patterns and LN scales are frozen at their own clean
    # values, so the expansion is exact and only float64 rounding (over at most 27
    # terms of size ~10) separates the sum from the logits
    cfg, params, tokens = _model(**fields)
    logits, _ = minih.run_with_cache(params, tokens, cfg)
    paths = path_expansion(params, tokens, cfg)
    assert len(paths) == (1 + cfg.n_heads) ** cfg.n_layers
    assert sorted(len(p) for p in paths) == sorted(
        len(c) for k in range(cfg.n_layers + 1)
        for c in itertools.combinations(range(cfg.n_layers), k) for _ in range(cfg.n_heads ** k))
    np.testing.assert_allclose(sum(paths.values()), logits, rtol=0, atol=1e-12)


@pytest.mark.parametrize("fields", CONFIGS)
def test_pattern_ablation_removes_every_path_through_the_head(fields):
    # oracle: the FW footnote. Pattern-preserving ablation (patterns and LN scales
    # frozen) of head h == the sum of the paths that do not pass through h
    cfg, params, tokens = _model(**fields)
    paths = path_expansion(params, tokens, cfg)
    for l, h in itertools.product(range(cfg.n_layers), range(cfg.n_heads)):
        ablated, _ = run_with_ablation(params, tokens, cfg, Ablation([(l, h)], "pattern"))
        kept = sum(v for path, v in paths.items() if (l, h) not in path)
        np.testing.assert_allclose(ablated, kept, rtol=0, atol=1e-12, err_msg=f"head {l}.{h}")
    if cfg.n_layers >= 2:                       # and for a set of heads in different layers
        ablated, _ = run_with_ablation(params, tokens, cfg, Ablation([(0, 0), (1, 1)], "pattern"))
        kept = sum(v for path, v in paths.items() if (0, 0) not in path and (1, 1) not in path)
        np.testing.assert_allclose(ablated, kept, rtol=0, atol=1e-12)


def test_direct_path_by_hand():
    # oracle: without LayerNorm and with shortformer positions, the direct path is W_E[t] @ W_U
    cfg, params, tokens = _model(layernorm=False)
    paths = path_expansion(params, tokens, cfg)
    np.testing.assert_allclose(paths[()], params["embed.W_E"][tokens] @ params["unembed.W_U"],
                               rtol=0, atol=1e-12)


def test_term_importance_is_consistent_and_pure():
    # oracles: order_loss of the highest order is the clean loss; each term's loss_without
    # is the loss of the logits minus that path's logits, recomputed here
    cfg, params, tokens = _model()
    before = copy.deepcopy(params)
    ti = term_importance(params, tokens, cfg)
    assert ti["loss"] == pytest.approx(minih.loss_fn(params, tokens, cfg), abs=1e-12)
    assert ti["order_loss"][cfg.n_layers] == pytest.approx(ti["loss"], abs=1e-10)
    assert len(ti["terms"]) == (1 + cfg.n_heads) ** cfg.n_layers
    paths = path_expansion(params, tokens, cfg)
    logits, _ = minih.run_with_cache(params, tokens, cfg)
    ops = minih.model.get_backend("numpy")
    # float64; abs 1e-10 (not 1e-12 as elsewhere): each loss here is a mean of log-sums
    # of logits that are themselves sums of up to 27 path terms of size ~10
    for row in ti["terms"]:
        expected = ops.cross_entropy_forward(logits - paths[row["path"]], tokens)[0]
        assert row["loss_without"] == pytest.approx(expected, abs=1e-10), row["name"]
        assert row["importance"] == pytest.approx(expected - ti["loss"], abs=1e-10)
    for key in params:
        np.testing.assert_array_equal(params[key], before[key], err_msg=key)


def test_handbuilt_single_induction_head_carries_the_loss():
    # oracle: minih/interp/handbuilt.py by construction. Head 1.0 copies the token slot that
    # only W_E writes, and head 0.0 writes only the PREV slot, which no value reads:
    # so the virtual head 1.0∘0.0 is exactly zero (K-composition lives in the frozen
    # patterns, not in any path), and the single head 1.0 carries the prediction.
    cfg, params = induction_model(d_vocab=16, n_ctx=32, n_heads=2, other_std=0.0)
    tokens = repeated_random_tokens(16, 16, n_repeats=2, batch=4, seed=0)
    # the loss on the second repeat: predictions at positions 16..30 (0-based)
    ti = term_importance(params, tokens, cfg, positions=slice(16, None))
    assert ti["loss"] < 1e-3                    # the hand-built model is ~perfect there
    terms = {row["name"]: row for row in ti["terms"]}
    assert abs(terms["L1H0∘L0H0"]["importance"]) < 1e-12     # an exactly-zero term
    # without the induction head's path the logits are uniform: loss log 16 = 2.77
    assert terms["L1H0"]["importance"] == pytest.approx(np.log(16) - ti["loss"], abs=1e-6)
    assert terms["L1H0"]["importance"] == max(r["importance"] for r in ti["terms"])


def test_path_names():
    assert path_name(()) == "direct"
    assert path_name(((0, 3),)) == "L0H3"
    assert path_name(((0, 3), (1, 5))) == "L1H5∘L0H3"


def test_models_with_mlps_are_refused_in_one_line():
    # oracle: the refusal itself. An MLP is not linear, so there is no path expansion;
    # every entry point says so, in one line, before any work
    from minih.interp.paths import path_logits
    cfg, params, tokens = tiny_model(d_mlp=6)
    _, cache = minih.run_with_cache(params, tokens, cfg)
    calls = {"iter_paths": lambda: iter_paths(params, tokens, cfg, cache),
             "path_logits": lambda: path_logits(params, cfg, cache, (), cache["hook_embed"]),
             "path_expansion": lambda: path_expansion(params, tokens, cfg),
             "term_importance": lambda: term_importance(params, tokens, cfg)}
    for name, call in calls.items():
        with pytest.raises(ValueError, match=r"for attention-only models.*MLPs \(d_mlp=6\).*not linear") as e:
            call()
        assert "\n" not in str(e.value), name
        assert "minih.interp.ablation" in str(e.value), name       # what is allowed instead
