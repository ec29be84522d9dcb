"""Circuits and the positional split (minih/interp/metrics/circuits.py, positional.py).

Oracles: eigenvalues of matrices with known spectra (identity, minus identity,
rotation); the reference composition_score on explicit [D, D] matrices for the
factored all-heads version; the forward pass's own attention scores for the sum of
the four positional terms and for the layer-0 full QK circuit; explicit [V, V]
K-composition matrices for the trace.
"""
import numpy as np
import pytest

import minih
from minih.interp import metrics as M
from minih.interp.metrics import circuits as C


def random_model(layernorm=True, positional="shortformer", smeared_keys=False, seed=0):
    cfg = minih.ModelConfig(n_layers=3, n_heads=2, d_model=12, d_head=4, n_ctx=10, d_vocab=9,
                            layernorm=layernorm, positional=positional,
                            smeared_keys=smeared_keys, dtype="float64")
    params = minih.init_params(cfg, seed)
    rng = np.random.default_rng(seed + 100)
    if layernorm:                                     # non-trivial LN weights and biases
        for k in params:
            if k.endswith(".w"):
                params[k] = 1 + 0.3 * rng.standard_normal(params[k].shape)
            elif k.endswith(".b"):
                params[k] = 0.3 * rng.standard_normal(params[k].shape)
    if smeared_keys:
        for k in params:
            if k.endswith("smear"):
                params[k] = rng.standard_normal(params[k].shape)
    return cfg, params


def identity_ov_model(sign):
    """D = E = V, no LayerNorm, W_E = W_V = W_U = I, W_O = sign * I: full OV = sign * I."""
    cfg = minih.ModelConfig(n_layers=1, n_heads=1, d_model=5, d_head=5, n_ctx=4, d_vocab=5,
                            layernorm=False, dtype="float64")
    params = minih.init_params(cfg, 0)
    params["embed.W_E"] = np.eye(5)
    params["blocks.0.attn.W_V"] = np.eye(5)[None].copy()
    params["blocks.0.attn.W_O"] = sign * np.eye(5)[None]
    params["unembed.W_U"] = np.eye(5)
    return cfg, params


def test_eigenvalue_copying_identity_and_minus_identity():
    assert M.eigenvalue_positivity(np.eye(4)) == 1.0
    assert M.eigenvalue_positivity(-np.eye(4)) == -1.0
    # a 90-degree rotation has eigenvalues +-i: trace 0, no copying, no suppression
    assert M.eigenvalue_positivity(np.array([[0.0, -1.0], [1.0, 0.0]])) == pytest.approx(0.0, abs=1e-15)
    assert np.isnan(M.eigenvalue_positivity(np.zeros((3, 3))))
    for sign in (1, -1):
        cfg, params = identity_ov_model(sign)
        np.testing.assert_array_equal(M.full_ov_circuits(params, cfg)[0, 0], sign * np.eye(5))
        assert M.eigenvalue_copying_scores(params, cfg)[0, 0] == pytest.approx(sign, abs=1e-12)


def test_eigenvalue_score_from_small_matrix_equals_full_circuit():
    cfg, params = random_model()
    full = M.full_ov_circuits(params, cfg)                        # [L,H,V,V]
    fast = M.eigenvalue_copying_scores(params, cfg)               # from [E,E] matrices
    slow = np.array([[M.eigenvalue_positivity(full[l, h]) for h in range(2)] for l in range(3)])
    # same nonzero eigenvalues; the V x V matrix adds V-E eigenvalues at ~1e-15
    np.testing.assert_allclose(fast, slow, atol=1e-9)


def test_full_ov_equals_explicit_product():
    cfg, params = random_model()
    ov = M.full_ov_circuits(params, cfg)
    for l in range(3):
        for h in range(2):
            # LN1 applied to W_E by hand, final LN's linear part P diag(w)
            WE = params["embed.W_E"]
            mu, var = WE.mean(1, keepdims=True), WE.var(1, keepdims=True)
            ln = (WE - mu) / np.sqrt(var + 1e-5) * params[f"blocks.{l}.ln1.w"] + params[f"blocks.{l}.ln1.b"]
            P = np.eye(12) - 1 / 12
            expected = (ln @ params[f"blocks.{l}.attn.W_V"][h] @ params[f"blocks.{l}.attn.W_O"][h]
                        @ P @ np.diag(params["ln_final.w"]) @ params["unembed.W_U"])
            np.testing.assert_allclose(ov[l, h], expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("layernorm", [True, False])
def test_factored_composition_equals_reference(layernorm):
    cfg, params = random_model(layernorm=layernorm)
    comp = M.composition_scores(params, cfg)
    f = M.folded_weights(params, cfg)
    OV = f["W_V"] @ f["W_O"]                                      # [L,H,D,D]
    QK = f["W_Q"] @ np.swapaxes(f["W_K"], -1, -2)                 # [L,H,D,D]
    for a in range(3):
        for b in range(3):
            for h1 in range(2):
                for h2 in range(2):
                    if a >= b:
                        assert all(np.isnan(comp[k][a, h1, b, h2]) for k in "QKV")
                        continue
                    ref = {"Q": C.composition_score(OV[a, h1], QK[b, h2]),
                           "K": C.composition_score(OV[a, h1], QK[b, h2].T),
                           "V": C.composition_score(OV[a, h1], OV[b, h2])}
                    for k in "QKV":   # two exact formulas in float64: 1e-10 relative
                        assert comp[k][a, h1, b, h2] == pytest.approx(ref[k], rel=1e-10)


def test_composition_baseline_matches_direct_sampling():
    D, E = 12, 4
    base = M.composition_baseline(D, E, n_samples=400, seed=1)
    rng = np.random.default_rng(2)                                # independent samples
    direct = [C.composition_score(rng.standard_normal((D, E)) @ rng.standard_normal((E, D)),
                                  rng.standard_normal((D, E)) @ rng.standard_normal((E, D)))
              for _ in range(400)]
    # two means of 400 samples of a score with std ~0.04: difference std ~0.003; allow 5 sigma
    assert abs(base - np.mean(direct)) < 5 * np.std(direct) * np.sqrt(2 / 400)
    # rank-1 matrices that line up exactly score 1 (the maximum)
    u = np.ones((D, 1))
    assert C.composition_score(u @ u.T, u @ u.T) == pytest.approx(1.0)


def test_k_composition_trace_equals_explicit_matrix():
    cfg, params = random_model()
    trace, positivity = M.k_composition_qk_terms(params, cfg)
    f = M.folded_weights(params, cfg)
    W_E = params["embed.W_E"]
    for a, b in ((0, 1), (0, 2), (1, 2)):
        for h1 in range(2):
            for h2 in range(2):
                q = W_E @ f["W_Q"][b, h2]                                     # [V,E]
                k = W_E @ f["W_V"][a, h1] @ f["W_O"][a, h1] @ f["W_K"][b, h2]  # [V,E]
                Mvv = q @ k.T / np.sqrt(cfg.d_head)                           # [V,V]
                assert trace[a, h1, b, h2] == pytest.approx(np.trace(Mvv) / cfg.d_vocab, rel=1e-10)
                assert positivity[a, h1, b, h2] == pytest.approx(M.eigenvalue_positivity(Mvv), abs=1e-8)
    prev = np.array([[0.5, 0.25], [1.0, 0.0], [0.3, 0.3]])
    w = M.k_composition_qk_trace(params, cfg, prev)
    assert w[2, 1] == pytest.approx(sum(prev[a, h] * trace[a, h, 2, 1] for a in range(2) for h in range(2)))


@pytest.mark.parametrize("positional,layernorm,smeared", [
    ("shortformer", True, False), ("standard", True, False), ("standard", False, False),
    ("shortformer", False, True), ("standard", True, True)])
def test_four_terms_sum_to_the_forward_scores(positional, layernorm, smeared):
    cfg, params = random_model(layernorm=layernorm, positional=positional, smeared_keys=smeared)
    tokens = np.random.default_rng(0).integers(0, 9, size=(2, 10))
    _, cache = minih.run_with_cache(params, tokens, cfg)
    causal = np.tri(10, dtype=bool)
    for l in range(3):
        terms = M.score_terms(params, cfg, cache, l)
        total = sum(terms.values())
        # the forward's scores, same float64 products summed in another order
        np.testing.assert_allclose(total[..., causal], cache[f"blocks.{l}.attn.hook_attn_scores"][..., causal],
                                   rtol=1e-9, atol=1e-12)
        shares = M.term_shares(terms)
        np.testing.assert_allclose(sum(shares.values()), 1.0, rtol=1e-12)


def test_layer0_token_term_is_the_full_qk_circuit():
    cfg, params = random_model()                                  # shortformer + LayerNorm
    tokens = np.random.default_rng(1).integers(0, 9, size=(1, 10))
    _, cache = minih.run_with_cache(params, tokens, cfg)
    # float64, two orders of the same products: rounding only (rtol 1e-10, atol 1e-12)
    tt = M.score_terms(params, cfg, cache, 0)["token_token"][0]   # [H,T,T]
    qk = M.full_qk_circuits(params, cfg)[0]                       # [H,V,V]
    t = tokens[0]
    for i in range(10):
        for j in range(i + 1):
            np.testing.assert_allclose(tt[:, i, j], qk[:, t[i], t[j]], rtol=1e-10, atol=1e-12)


def test_inputs_unchanged():
    cfg, params = random_model(smeared_keys=True)
    tokens = np.random.default_rng(0).integers(0, 9, size=(2, 10))
    _, cache = minih.run_with_cache(params, tokens, cfg)
    frozen = {k: v.copy() for k, v in params.items()}
    for v in list(params.values()) + [tokens]:
        v.setflags(write=False)
    for v in cache.values():
        if isinstance(v, np.ndarray) and v.flags.owndata:
            v.setflags(write=False)
    M.full_ov_circuits(params, cfg); M.full_qk_circuits(params, cfg)
    M.eigenvalue_copying_scores(params, cfg); M.composition_scores(params, cfg)
    M.k_composition_qk_trace(params, cfg, np.ones((3, 2)))
    M.positional_shares(params, cfg, tokens, cache=cache)
    M.empirical_copying_scores(params, cfg)
    for k in params:
        np.testing.assert_array_equal(params[k], frozen[k])
