"""Argument-4 measurements: exact on hand-made patterns, and the hand-built (literal)
induction model does literal copying but neither translation nor fuzzy matching."""
import numpy as np
import pytest

from minih.data.generality import GeneralityTasks
from minih.generality import generality_scores, image_loss_drop, target_attention
from minih.handbuilt import induction_model


def test_target_attention_on_hand_made_patterns():
    T = 6
    target = np.array([[-1, -1, -1, 1, 2, -1]])
    perfect = np.zeros((1, 1, T, T))
    perfect[0, 0, np.arange(T), np.arange(T)] = 1.0                  # start from "attend to self"
    perfect[0, 0, [3, 4], [1, 2]] = 1.0
    perfect[0, 0, [3, 4], [3, 4]] = 0.0
    uniform = np.tril(np.ones((T, T))) / np.arange(1, T + 1)[:, None]
    both = np.concatenate([perfect, uniform[None, None]], axis=1)    # [1, 2, T, T]
    frozen = both.copy()
    # oracle: perfect -> 1; uniform -> mean of 1/(i+1) over queries 3 and 4
    assert target_attention(both, target) == pytest.approx([1.0, (1 / 4 + 1 / 5) / 2])
    assert np.array_equal(both, frozen)
    with pytest.raises(ValueError, match="not a causal target"):
        target_attention(both, np.array([[-1, 5, -1, -1, -1, -1]]))
    with pytest.raises(ValueError, match="no position has a target"):
        target_attention(both, np.full((1, T), -1))


def test_image_loss_drop_by_hand():
    target = np.array([[-1, -1, 1, -1]])         # position 2 holds g(s_0), pointing at s_1
    losses = np.array([[5.0, 1.0, 0.5]])         # losses[:, i] predicts token i+1 from i
    # predictable: losses[:, 2] (0.5); the others average (5 + 1) / 2 = 3
    assert image_loss_drop(losses, target) == pytest.approx(3.0 - 0.5)


def test_handbuilt_literal_head_copies_but_does_not_translate():
    cfg, params = induction_model(d_vocab=128, n_ctx=48, n_heads=2)
    before = {k: v.copy() for k, v in params.items()}
    src = GeneralityTasks(d_vocab=128, n_classes=4, min_len=4, max_len=10)
    r = generality_scores(params, cfg, src)
    # head 1.0 is the induction head; it matches tokens exactly, so only literal works
    assert r["literal"]["attention"][1, 0] > 0.9
    assert r["translation"]["attention"][1, 0] < 0.2
    assert r["fuzzy"]["attention"][1, 0] < 0.2
    assert r["literal"]["loss_drop"] > 3.0       # nats: copying makes images nearly free
    assert r["literal"]["attention"][0, 0] < 0.05   # the previous-token head is no induction head
    assert all(np.array_equal(before[k], params[k]) for k in params)
