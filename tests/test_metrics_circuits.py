"""Circuits and the positional split (minih/interp/metrics/circuits.py, positional.py).

Oracles: eigenvalues of matrices with known spectra (identity, minus identity,
rotation); the reference composition_score on explicit [D, D] matrices for the
factored all-heads version; the forward pass's own attention scores for the sum of
the four positional terms and for the layer-0 full QK circuit; explicit [V, V]
K-composition matrices for the trace. With MLPs: the same weights in an attention-only
config (the circuits ignore the MLPs), and the forward's scores again.
"""
import numpy as np
import pytest

import minih
from minih.interp import metrics as M
from minih.interp.metrics import circuits as C


def random_model(layernorm=True, positional="shortformer", smeared_keys=False, seed=0, d_mlp=0):
    cfg = minih.ModelConfig(n_layers=3, n_heads=2, d_model=12, d_head=4, n_ctx=10, d_vocab=9,
                            layernorm=layernorm, positional=positional,
                            smeared_keys=smeared_keys, d_mlp=d_mlp, dtype="float64")
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


@pytest.mark.parametrize("positional,layernorm,smeared,d_mlp", [
    ("shortformer", True, False, 0), ("standard", True, False, 0), ("standard", False, False, 0),
    ("shortformer", False, True, 0), ("standard", True, True, 0),
    ("standard", True, False, 5), ("shortformer", True, True, 5)])   # with MLPs: in the content part
def test_four_terms_sum_to_the_forward_scores(positional, layernorm, smeared, d_mlp):
    cfg, params = random_model(layernorm=layernorm, positional=positional, smeared_keys=smeared,
                               d_mlp=d_mlp)
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


def _without_mlps(cfg, params):
    """The same weights in an attention-only config: the MLP and LN2 parameters dropped."""
    kept = {k: v for k, v in params.items() if ".mlp." not in k and ".ln2." not in k}
    return cfg.replace(d_mlp=0), kept


@pytest.mark.parametrize("layernorm", [True, False])
def test_circuits_ignore_the_mlps(layernorm):
    # oracle: the same weights without the MLP keys, in an attention-only config. The
    # circuits read the attention weights only, so the numbers are the same ones, exactly
    cfg, params = random_model(layernorm=layernorm, d_mlp=5)
    rng = np.random.default_rng(7)
    params = {k: v + 0.3 * rng.standard_normal(v.shape) if ".mlp." in k or ".ln2." in k else v
              for k, v in params.items()}                  # MLPs that would change anything they touched
    cfg0, params0 = _without_mlps(cfg, params)
    assert len(params0) < len(params)
    prev = np.random.default_rng(0).random((3, 2))
    calls = {
        "folded_weights": lambda c, p: C.folded_weights(p, c),
        "full_ov_circuits": lambda c, p: M.full_ov_circuits(p, c),
        "full_qk_circuits": lambda c, p: M.full_qk_circuits(p, c),
        "eigenvalue_copying_scores": lambda c, p: M.eigenvalue_copying_scores(p, c),
        "composition_scores": lambda c, p: M.composition_scores(p, c),
        "k_composition_qk_terms": lambda c, p: M.k_composition_qk_terms(p, c),
        "k_composition_qk_trace": lambda c, p: M.k_composition_qk_trace(p, c, prev),
        "ln_linear": lambda c, p: [M.ln_linear(p, c, w) for w in (0, 1, 2, "final")],
        "embed_through_ln": lambda c, p: [M.embed_through_ln(p, c, l) for l in range(3)],
        "small_ov_circuits": lambda c, p: [M.small_ov_circuits(p, c, l) for l in range(3)],
    }
    def arrays(x):                          # every array of a result, in order
        if isinstance(x, dict):
            return [a for k in sorted(x) for a in arrays(x[k])]
        if isinstance(x, (list, tuple)):
            return [a for v in x for a in arrays(v)]
        return [np.asarray(x)]

    for name, call in calls.items():
        with_mlps, without = arrays(call(cfg, params)), arrays(call(cfg0, params0))
        assert len(with_mlps) == len(without), name
        for a, b in zip(with_mlps, without):
            np.testing.assert_array_equal(a, b, err_msg=name)


def test_empirical_copying_ignores_later_mlps():
    # oracle: the score is a head's direct effect through its OV circuit, on the stream
    # the model computed. Changing the last layer's MLP changes the logits but no head's
    # input or direct path: every score stays, bit for bit. Changing layer 0's MLP
    # changes what the later layers' heads read, so their scores move, and layer 0's stay.
    cfg, params = random_model(d_mlp=5)
    tokens = M.copying_tokens(cfg.d_vocab, n_seqs=4, seq_len=8, seed=0)
    scores = M.empirical_copying_scores(params, cfg, tokens)
    last = dict(params)
    last["blocks.2.mlp.W_out"] = 3 * params["blocks.2.mlp.W_out"] + 1
    last["blocks.2.mlp.b_out"] = params["blocks.2.mlp.b_out"] + 1
    logits, _ = minih.run_with_cache(params, tokens, cfg)
    logits_last, _ = minih.run_with_cache(last, tokens, cfg)
    assert np.abs(logits_last - logits).max() > 1e-2
    np.testing.assert_array_equal(M.empirical_copying_scores(last, cfg, tokens), scores)
    first = dict(params)
    first["blocks.0.mlp.W_out"] = 3 * params["blocks.0.mlp.W_out"] + 1
    moved = M.empirical_copying_scores(first, cfg, tokens)
    np.testing.assert_array_equal(moved[0], scores[0])
    assert np.abs(moved[1:] - scores[1:]).max() > 1e-6
