"""Argument-4 measurements: exact on hand-made patterns, and the hand-built (literal)
induction model copies literally but neither translates nor matches fuzzily."""
import numpy as np
import pytest

from minih.data.generality_tasks import GeneralityTasks
from minih.interp.generality import (baseline_patterns, baseline_scores, generality_scores,
                                     in_context_gain, target_attention)
from minih.interp.handbuilt import induction_model


def test_target_attention_on_hand_made_patterns():
    T = 6
    target = np.zeros((1, T, T), dtype=bool)
    target[0, 3, 1] = target[0, 4, [1, 2]] = True           # query 4 has two right keys
    perfect = np.zeros((1, 1, T, T))
    perfect[0, 0, np.arange(T), np.arange(T)] = 1.0
    perfect[0, 0, 3] = 0
    perfect[0, 0, 3, 1] = 1.0
    perfect[0, 0, 4] = 0
    perfect[0, 0, 4, [1, 2]] = 0.5                          # split between its two targets
    uniform = np.tril(np.ones((T, T))) / np.arange(1, T + 1)[:, None]
    both = np.concatenate([perfect, uniform[None, None]], axis=1)    # [1, 2, T, T]
    frozen = both.copy()
    # oracle: perfect -> 1; uniform -> (1/4 + 2/5) / 2 over queries 3 and 4
    assert target_attention(both, target) == pytest.approx([1.0, (1 / 4 + 2 / 5) / 2])
    assert np.array_equal(both, frozen)
    bad = np.zeros((1, T, T), dtype=bool)
    bad[0, 1, 5] = True
    with pytest.raises(ValueError, match="not a causal target"):
        target_attention(both, bad)
    with pytest.raises(ValueError, match="no query has a target"):
        target_attention(both, np.zeros((1, T, T), dtype=bool))


def test_baselines_by_hand():
    T = 6
    target = np.zeros((1, T, T), dtype=bool)
    target[0, 3, 1] = target[0, 4, [1, 2]] = target[0, 5, 4] = True
    # oracle: uniform = mean of (1/4, 2/5, 1/6); previous token hits only query 5's key 4
    b = baseline_scores(target)
    assert b["uniform"] == pytest.approx((1 / 4 + 2 / 5 + 1 / 6) / 3)
    assert b["previous_token"] == pytest.approx(1 / 3)
    p = baseline_patterns(2, T)
    assert p["uniform"].shape == (2, 1, T, T)
    np.testing.assert_allclose(p["uniform"].sum(-1), 1.0)
    np.testing.assert_allclose(p["previous_token"].sum(-1), 1.0)
    assert not np.triu(p["uniform"][0, 0], 1).any() and not np.triu(p["previous_token"][0, 0], 1).any()


def test_fuzzy_matching_baseline_of_a_previous_token_head_is_near_a_third():
    # items and labels alternate, so the key before a query is often a right answer
    src = GeneralityTasks(d_vocab=64, n_classes=4, min_len=4, max_len=10)
    _, target, _ = src.sample_with_targets(np.random.default_rng(0), 64, 64, kind="fuzzy")
    b = baseline_scores(target)
    assert 0.2 < b["previous_token"] < 0.5 and b["uniform"] < b["previous_token"]


def test_in_context_gain_by_hand():
    role = np.array([[2, 1, 0, 1, 0]])           # role[:, i] describes losses[:, i]
    losses = np.array([[5.0, 1.0, 9.0, 0.5]])
    # unpredictable: 5.0; predictable: (1.0 + 0.5) / 2; role 0 (9.0) ignored
    assert in_context_gain(losses, role) == pytest.approx(5.0 - 0.75)
    with pytest.raises(ValueError, match="both roles"):
        in_context_gain(losses, np.array([[1, 1, 0, 1, 0]]))


def test_handbuilt_literal_head_copies_but_does_not_generalise():
    cfg, params = induction_model(d_vocab=128, n_ctx=48, n_heads=2)
    before = {k: v.copy() for k, v in params.items()}
    src = GeneralityTasks(d_vocab=128, n_classes=4, min_len=4, max_len=10)
    r = generality_scores(params, cfg, src)
    # head 1.0 matches tokens exactly: literal yes, translation no; fuzzy only where the
    # very same item came earlier (its label is then right too), far from all of it
    assert r["literal"]["attention"][1, 0] > 0.9
    assert r["translation"]["attention"][1, 0] < 0.2
    assert r["fuzzy"]["attention"][1, 0] < 0.5
    assert r["literal"]["gain"] > 3.0            # nats: copying makes images nearly free
    assert r["literal"]["attention"][0, 0] < 0.05   # the previous-token head is no induction head
    assert all(np.array_equal(before[k], params[k]) for k in params)


def test_bad_inputs_get_clear_errors():
    from minih.interp import metrics as M
    from minih.interp.paths import term_importance
    cfg, params = induction_model(d_vocab=16, n_ctx=16, n_heads=1)
    with pytest.raises(ValueError, match=r"losses must be \[B, T-1\]"):
        in_context_gain(np.zeros((2, 3)), np.ones((2, 9), int))
    with pytest.raises(ValueError, match="positions must be a slice or 1-D integer indices"):
        term_importance(params, np.array([[1, 2, 3, 4]]), cfg, positions=[100])
    with pytest.raises(ValueError, match="terms must have exactly the keys"):
        M.term_shares({})
    with pytest.raises(ValueError, match="n_tokens must be an int"):
        M.icl_indices("a")
    with pytest.raises(ValueError, match=r"tokens must have shape \[B, T\]"):
        M.copying_score_from_logits(np.zeros((1, 1, 3, 16)), np.array([1, 2, 3]))
