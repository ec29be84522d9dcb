"""Every head metric on the hand-built induction model (minih/interp/handbuilt.py).

Oracle: the construction. Head 0.0 attends to the previous token and writes it into
the PREV slot; head 1.0 matches its query token against PREV (K-composition) and
copies; W_U reads only what head 1.0 writes. So the answers are known in advance,
some exactly (derivations in the comments).
"""
import numpy as np
import pytest

import minih
from minih.interp import metrics as M
from minih.interp.handbuilt import induction_model, repeated_random_tokens

V, N = 16, 48


@pytest.fixture(scope="module")
def model():
    return induction_model(d_vocab=V, n_ctx=N, n_heads=3, seed=0)


@pytest.fixture(scope="module")
def exact_model():
    """Unrelated heads exactly zero: some scores become exact."""
    return induction_model(d_vocab=V, n_ctx=N, n_heads=2, other_std=0.0)


def test_prefix_matching(model):
    cfg, params = model
    tokens, queries = M.prefix_matching_tokens(V, n_ctx=N, seed=0)
    assert tokens.shape[1] <= N and np.all(tokens[:, 0] == M.DEFAULT_BOS)
    s = M.prefix_matching_scores(params, cfg)
    # induction head: margin 30 on the matching keys -> essentially all attention there
    assert s[1, 0] > 0.99
    # every other head: near-uniform attention; a query in repeat k+1 at position i has
    # k matching keys out of i+1, so uniform attention scores ~ k/(i+1) < 0.1 here
    others = np.delete(s.ravel(), 1 * cfg.n_heads + 0)
    assert np.all(others < 0.1)


def test_previous_token(model):
    cfg, params = model
    text = M.copying_tokens(V, n_seqs=4, seq_len=N, seed=1)        # random text, repeats allowed
    s = M.previous_token_scores(params, cfg, text)
    assert s[0, 0] > 0.999                                        # designed margin 30
    assert np.all(np.delete(s.ravel(), 0) < 0.3)                  # uniform-ish: mean 1/(i+1) ~ 0.08


def test_copying_scores(model, exact_model):
    cfg, params = model
    emp = M.empirical_copying_scores(params, cfg)
    eig = M.eigenvalue_copying_scores(params, cfg)
    # head 1.0's OV maps TOK v -> OUT v and W_U reads OUT v as logit v: pure copying.
    # Noise from the std-0.02 unrelated heads stays far below the gain of 15.
    assert emp[1, 0] > 0.95 and eig[1, 0] > 0.95
    # exactly: full OV of head 1.0 is copy_strength * I, so both scores are 1
    cfg0, params0 = exact_model
    assert M.eigenvalue_copying_scores(params0, cfg0)[1, 0] == pytest.approx(1.0, abs=1e-12)
    assert M.empirical_copying_scores(params0, cfg0)[1, 0] == pytest.approx(1.0, abs=1e-12)
    ov = M.full_ov_circuits(params0, cfg0)
    np.testing.assert_allclose(ov[1, 0], 15.0 * np.eye(V), atol=1e-12)
    # head 0.0 writes PREV, which W_U never reads: its full OV is 0, eigenvalue score
    # undefined (NaN), empirical score 0 (no preference)
    assert np.all(ov[0, 0] == 0) and np.isnan(M.eigenvalue_copying_scores(params0, cfg0)[0, 0])
    assert M.empirical_copying_scores(params0, cfg0)[0, 0] == 0.0


def test_k_composition_far_above_baseline(model, exact_model):
    cfg, params = model
    comp = M.composition_scores(params, cfg)
    samples = M.composition_baseline_samples(cfg.d_model, cfg.d_head)
    base = M.composition_baseline(cfg.d_model, cfg.d_head)
    assert base == samples.mean()
    k = comp["K"][0, 0, 1, 0]
    others = [comp["K"][0, h1, 1, h2] for h1 in range(3) for h2 in range(3) if (h1, h2) != (0, 0)]
    # a perfect rank-V composition scores only 1/sqrt(2V) (see below), but the random
    # scores are tightly spread (std ~0.002 here): the pair sits > 20 std above them
    assert k > 1.5 * base and (k - base) / samples.std() > 20
    assert k > 1.5 * max(others)
    # exactly (no noise): OV_00 = TOK->PREV (V ones), QK_10 = a^2 (TOK->PREV) - a^2 (sum TOK)->POS0,
    # so ||OV QK^T|| / (||OV|| ||QK||) = a^2 sqrt(V) / (sqrt(V) * a^2 sqrt(2V)) = 1/sqrt(2V);
    # Q- and V-composition of that pair are exactly 0 (PREV is read by keys only)
    cfg0, params0 = exact_model
    comp0 = M.composition_scores(params0, cfg0)
    assert comp0["K"][0, 0, 1, 0] == pytest.approx(1 / np.sqrt(2 * V), abs=1e-12)
    assert comp0["Q"][0, 0, 1, 0] == 0.0 and comp0["V"][0, 0, 1, 0] == 0.0
    assert np.all(np.isnan(comp0["K"][1]))                        # no later layer for layer 1


def test_k_composition_qk_trace(exact_model):
    cfg, params = exact_model
    trace, positivity = M.k_composition_qk_terms(params, cfg)
    # the term M[v, u] = 30 [v == u] (induction_strength on the diagonal): trace/V = 30
    assert trace[0, 0, 1, 0] == pytest.approx(30.0, abs=1e-9)
    assert positivity[0, 0, 1, 0] == pytest.approx(1.0, abs=1e-12)
    prev = np.array([[1.0, 0.0], [0.0, 0.0]])
    w = M.k_composition_qk_trace(params, cfg, prev)
    assert w[1, 0] == pytest.approx(30.0, abs=1e-9) and np.all(np.isnan(w[0]))


def test_icl_score_strongly_negative_on_repeated_text(model):
    cfg, params = model
    # 6 repeats of an 8-token segment (T = 48): early index round(50/512*48) = 5 is in the
    # first repeat, late index round(500/512*48) = 47 in the last
    tokens = repeated_random_tokens(V, 8, n_repeats=6, batch=4, seed=0)
    losses = M.per_token_losses(params, tokens, cfg)
    assert M.icl_indices(48) == (5, 47)
    icl = M.icl_score(losses)
    # late loss ~0 (perfect copying), early loss > log V (confidently wrong copies)
    assert icl < -np.log(V)


def test_positional_split(exact_model):
    cfg, params = exact_model
    tokens = repeated_random_tokens(V, 8, n_repeats=3, batch=2, seed=3)
    shares = M.positional_shares(params, cfg, tokens)
    # head 0.0 is built from W_pos alone: all its score variation is position-position
    assert shares["position_position"][0, 0] == pytest.approx(1.0, abs=1e-12)
    # head 1.0: token (query) x token (PREV of key) plus token x position (the key-0 penalty)
    assert shares["position_position"][1, 0] == pytest.approx(0.0, abs=1e-12)
    assert shares["token_token"][1, 0] > 0.5


def test_numba_backend_gives_the_same_scores(model):
    pytest.importorskip("minih.kernels")
    cfg, params = model
    # float64 model: both backends agree to ~1e-12; scores are means of such numbers
    np.testing.assert_allclose(M.prefix_matching_scores(params, cfg, backend="numba"),
                               M.prefix_matching_scores(params, cfg), atol=1e-9)


def test_detector_scores_and_inputs_unchanged(model):
    cfg, params = model
    frozen = {k: v.copy() for k, v in params.items()}
    ro = {k: v.copy() for k, v in params.items()}
    tokens, queries = M.prefix_matching_tokens(V, n_ctx=N, seed=0)
    for arr in list(ro.values()) + [tokens, queries]:
        arr.setflags(write=False)                                 # any in-place write raises
    det = M.detector_scores(ro, cfg, tokens, "induction_head", exclude_bos=True)
    # head 1.0 puts ~all attention on the induction targets wherever it has one; rows of
    # the first repeat (no target) attend uniformly, and exclude_bos drops only key 0
    assert det[1, 0] > 0.6 and det[1, 0] > 3 * np.delete(det.ravel(), cfg.n_heads).max()
    M.prefix_matching_scores(ro, cfg, tokens, queries)
    M.previous_token_scores(ro, cfg, tokens)
    M.duplicate_token_scores(ro, cfg, tokens)
    M.empirical_copying_scores(ro, cfg)
    M.full_qk_circuits(ro, cfg)
    for k in params:
        np.testing.assert_array_equal(ro[k], frozen[k])
        np.testing.assert_array_equal(params[k], frozen[k])
