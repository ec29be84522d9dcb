"""Known answers for the forward pass and the cache contract (parameter names, hook names, shapes)."""
import numpy as np
import pytest

import minih
from helpers import assert_close

rng = np.random.default_rng(0)


def tokens_for(cfg, batch=3, T=None, seed=0):
    return np.random.default_rng(seed).integers(0, cfg.d_vocab, (batch, T or cfg.n_ctx))


@pytest.mark.parametrize("layernorm", [True, False])
def test_zero_layer_model_is_embedding_times_unembedding(layernorm):
    # oracle: with no layers the logits are W_E[t] @ W_U, through LayerNorm when on
    cfg = minih.ModelConfig.preset("tiny", n_layers=0, layernorm=layernorm, dtype="float64")
    params = minih.init_params(cfg, 1)
    if layernorm:
        params["ln_final.w"] = rng.normal(size=cfg.d_model)
        params["ln_final.b"] = rng.normal(size=cfg.d_model)
    t = tokens_for(cfg)
    logits, _ = minih.run_with_cache(params, t, cfg)
    x = params["embed.W_E"]                                      # [V, D]
    if layernorm:
        x = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5)
        x = x * params["ln_final.w"] + params["ln_final.b"]
    table = x @ params["unembed.W_U"]                            # [V, V]: row v = logits after token v
    assert_close("logits", logits, table[t], 1e-12, 1e-12)


def test_standard_positions_enter_the_residual_stream():
    cfg = minih.ModelConfig.preset("tiny", n_layers=0, positional="standard", dtype="float64",
                                   layernorm=False)
    params = minih.init_params(cfg, 2)
    t = tokens_for(cfg, T=4)
    logits, cache = minih.run_with_cache(params, t, cfg)
    expect = (params["embed.W_E"][t] + params["pos_embed.W_pos"][:4]) @ params["unembed.W_U"]
    assert_close("logits", logits, expect, 1e-12, 1e-12)
    # shortformer: positions never touch the residual stream, so a 0-layer model ignores them
    cfg_s = cfg.replace(positional="shortformer")
    logits_s, _ = minih.run_with_cache(params, t, cfg_s)
    assert_close("logits", logits_s, params["embed.W_E"][t] @ params["unembed.W_U"], 1e-12, 1e-12)


@pytest.mark.parametrize("smeared", [False, True])
def test_patterns_are_causal_and_rows_sum_to_one(smeared):
    cfg = minih.ModelConfig.preset("tiny", smeared_keys=smeared)
    params = minih.init_params(cfg, 0)
    _, cache = minih.run_with_cache(params, tokens_for(cfg), cfg)
    for l in range(cfg.n_layers):
        pattern = cache[f"blocks.{l}.attn.hook_pattern"]              # [B,H,T,T]
        assert np.all(np.triu(pattern, k=1) == 0), "attention to a future key"
        np.testing.assert_allclose(pattern.sum(-1), 1, atol=1e-6)    # float32 rounding
        assert np.all(pattern >= 0)


def test_cache_names_and_shapes():
    cfg = minih.ModelConfig(n_layers=2, n_heads=3, d_model=8, d_head=5, n_ctx=7, d_vocab=13,
                            smeared_keys=True)
    B, T, H, E, D = 2, 6, 3, 5, 8
    logits, cache = minih.run_with_cache(minih.init_params(cfg), tokens_for(cfg, B, T), cfg)
    assert logits.shape == (B, T, 13) and logits.dtype == np.float32
    for l in range(2):
        p = f"blocks.{l}."
        expected = {
            "hook_resid_pre": (B, T, D), "hook_resid_post": (B, T, D), "hook_attn_out": (B, T, D),
            "ln1.hook_scale": (B, T, 1), "ln1.hook_normalized": (B, T, D),
            "attn.hook_q": (B, T, H, E), "attn.hook_k": (B, T, H, E), "attn.hook_v": (B, T, H, E),
            "attn.hook_k_smeared": (B, T, H, E), "attn.hook_z": (B, T, H, E),
            "attn.hook_attn_scores": (B, H, T, T), "attn.hook_pattern": (B, H, T, T),
            "attn.hook_result": (B, T, H, D),
        }
        for name, shape in expected.items():
            assert cache[p + name].shape == shape, p + name
        # each head's write, summed over heads, is the layer's output
        assert_close("result sum", cache[p + "attn.hook_result"].sum(2), cache[p + "hook_attn_out"],
                     1e-5, 1e-5)
    for name in ("ln_final.hook_normalized", "ln_final.hook_scale", "hook_embed"):
        assert name in cache
    # the residual stream adds up: resid_post = resid_pre + attn_out
    assert_close("resid", cache["blocks.1.hook_resid_post"],
                 cache["blocks.1.hook_resid_pre"] + cache["blocks.1.hook_attn_out"], 1e-6, 1e-6)


def test_huge_smear_logit_equals_vanilla_model():
    # s = sigmoid(50) = 1 - 2e-22: k' = k exactly in float64, so the smeared model
    # computes the vanilla model's logits
    cfg = minih.ModelConfig.preset("tiny", dtype="float64")
    cfg_s = cfg.replace(smeared_keys=True)
    params = minih.init_params(cfg, 4)
    params_s = dict(params)
    for l in range(cfg.n_layers):
        params_s[f"blocks.{l}.attn.smear"] = np.full(cfg.n_heads, 50.0)
    t = tokens_for(cfg)
    assert_close("logits", minih.run_with_cache(params_s, t, cfg_s)[0],
                 minih.run_with_cache(params, t, cfg)[0], 1e-13, 1e-13)


def test_fully_smeared_keys_are_the_previous_keys():
    # s -> 0: k'[j] = k[j-1], the "previous token" key of the paper's Argument 2
    cfg = minih.ModelConfig.preset("tiny", dtype="float64", smeared_keys=True)
    params = minih.init_params(cfg, 5)
    for l in range(cfg.n_layers):
        params[f"blocks.{l}.attn.smear"] = np.full(cfg.n_heads, -50.0)
    _, cache = minih.run_with_cache(params, tokens_for(cfg), cfg)
    k, ks = cache["blocks.0.attn.hook_k"], cache["blocks.0.attn.hook_k_smeared"]
    assert_close("k'[1:]", ks[:, 1:], k[:, :-1], 1e-13, 1e-13)


def test_later_tokens_do_not_change_earlier_logits():
    # causality end to end: editing the last token leaves every earlier logit unchanged
    cfg = minih.ModelConfig.preset("tiny", smeared_keys=True, positional="standard")
    params = minih.init_params(cfg, 6)
    t = tokens_for(cfg)
    t2 = t.copy()
    t2[:, -1] = (t2[:, -1] + 1) % cfg.d_vocab
    a, b = minih.run_with_cache(params, t, cfg)[0], minih.run_with_cache(params, t2, cfg)[0]
    assert np.array_equal(a[:, :-1], b[:, :-1])
    assert not np.array_equal(a[:, -1], b[:, -1])


def test_loss_is_mean_of_per_token_losses_and_params_untouched():
    cfg = minih.ModelConfig.preset("tiny")
    params = minih.init_params(cfg, 7)
    before = {k: v.copy() for k, v in params.items()}
    t = tokens_for(cfg)
    loss, grads = minih.loss_and_grads(params, t, cfg)
    per_token = minih.per_token_losses(params, t, cfg)
    assert per_token.shape == (3, cfg.n_ctx - 1)
    # float32: the two means sum 15 terms in different orders (eps32 ~ 6e-8 per add)
    assert loss == pytest.approx(float(per_token.mean()), rel=1e-6)
    assert all(np.array_equal(before[k], params[k]) for k in params)
    assert list(grads) == list(params)


def test_init_params_shapes_seed_and_scales():
    cfg = minih.ModelConfig.preset("small", smeared_keys=True, smear_init=-1.0)
    a, b, c = minih.init_params(cfg, 0), minih.init_params(cfg, 0), minih.init_params(cfg, 1)
    assert {k: v.shape for k, v in a.items()} == minih.param_shapes(cfg)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["embed.W_E"], c["embed.W_E"])
    # the documented scales, within sampling error (thousands of entries)
    assert a["embed.W_E"].std() == pytest.approx(cfg.init_embed_std, rel=0.05)
    assert a["blocks.0.attn.W_Q"].std() == pytest.approx(1 / np.sqrt(cfg.d_model), rel=0.05)
    assert a["blocks.0.attn.W_O"].std() == pytest.approx(1 / np.sqrt(cfg.n_heads * cfg.d_head), rel=0.05)
    assert np.all(a["blocks.0.attn.smear"] == -1.0)
    assert np.all(a["blocks.1.ln1.w"] == 1) and np.all(a["ln_final.b"] == 0)
    assert all(v.dtype == np.float32 for v in a.values())


# --- the one forward and its hook points ------------------------------------------------

from minih.model import forward, get_backend, hook_names  # noqa: E402
from helpers import tiny_model  # noqa: E402

FIELDS = [dict(layernorm=ln, positional=pos, smeared_keys=sm)
          for ln in (True, False) for pos in ("shortformer", "standard") for sm in (False, True)]


@pytest.mark.parametrize("fields", FIELDS)
def test_hook_names_are_the_cache_keys(fields):
    # oracle: run_with_cache's cache; every key is a hook point but hook_pos_embed, a record
    cfg, params, tokens = tiny_model(**fields)
    _, cache = minih.run_with_cache(params, tokens, cfg)
    assert set(cache) == set(hook_names(cfg)) | {"hook_pos_embed"}


@pytest.mark.parametrize("fields", FIELDS)
def test_identity_edits_change_nothing(fields):
    # oracle: run_with_cache. An edit that returns what it gets, at every hook point, gives
    # the same numbers bit for bit (the same ops in the same order; a LayerNorm with an
    # edited scale runs its two steps, which layernorm_forward is made of), except that an
    # edited hook_result makes the layer's output the sum of the per-head writes, which
    # rounds differently (float64: 1e-12). Each edit is called once, with the cached value
    cfg, params, tokens = tiny_model(**fields)
    logits, cache = minih.run_with_cache(params, tokens, cfg)
    seen = {}

    def record(name):
        def edit(value):
            assert name not in seen, f"{name} edited twice"
            seen[name] = value
            return value
        return edit

    names = [n for n in hook_names(cfg) if not n.endswith("hook_result")]
    got, cache2 = forward(params, tokens, cfg, get_backend("numpy"),
                          edits={n: record(n) for n in names})
    np.testing.assert_array_equal(got, logits)
    assert set(seen) == set(names)
    for name in names:
        np.testing.assert_array_equal(seen[name], cache[name], err_msg=name)
        np.testing.assert_array_equal(cache2[name], cache[name], err_msg=name)
    got, _ = forward(params, tokens, cfg, get_backend("numpy"),
                     edits={n: (lambda v: v) for n in hook_names(cfg)})
    assert_close("logits, every hook edited", got, logits, 1e-12, 1e-12)


def test_an_edit_flows_on():
    # oracle: the model's definition. Zeroing hook_z of every head of the last layer leaves
    # the unembedded stream before it: logits = LNfinal(resid_pre of that layer) @ W_U
    cfg, params, tokens = tiny_model(layernorm=False)
    last = f"blocks.{cfg.n_layers - 1}."
    logits, cache = forward(params, tokens, cfg, get_backend("numpy"),
                            edits={last + "attn.hook_z": np.zeros_like})
    np.testing.assert_array_equal(cache[last + "hook_attn_out"], 0)
    assert_close("logits", logits, cache[last + "hook_resid_pre"] @ params["unembed.W_U"], 1e-12, 1e-12)
    clean, _ = minih.run_with_cache(params, tokens, cfg)
    assert np.abs(clean - logits).max() > 1e-3


@pytest.mark.parametrize("start", [1, 2])
def test_starting_at_a_layer_from_its_residual_stream(start):
    # oracle: the forward from the tokens. The layers from `start` on run the same ops on
    # the same stream, so the logits and their cache entries are equal bit for bit; the
    # layers before are neither run nor cached
    cfg, params, tokens = tiny_model(smeared_keys=True)
    logits, cache = minih.run_with_cache(params, tokens, cfg)
    got, cache2 = forward(params, tokens, cfg, get_backend("numpy"), start_layer=start,
                          resid=cache[f"blocks.{start}.hook_resid_pre"] if start < cfg.n_layers
                          else cache["hook_resid_final"])
    np.testing.assert_array_equal(got, logits)
    assert "hook_embed" not in cache2 and "blocks.0.hook_resid_pre" not in cache2
    for name in cache2:
        np.testing.assert_array_equal(cache2[name], cache[name], err_msg=name)


@pytest.mark.parametrize("fields", FIELDS)
def test_a_given_value_is_used_without_computing_what_feeds_it(fields):
    # oracle: the same edit as a function. An array at hook_pattern (or ln.hook_scale, or
    # hook_z) flows on exactly as a function returning it would, bit for bit; what only
    # fed it is neither computed nor cached (the queries, keys and scores; for a given z
    # the whole read of the layer's heads)
    cfg, params, tokens = tiny_model(**fields)
    ops = get_backend("numpy")
    _, clean = minih.run_with_cache(params, tokens, cfg)
    other = minih.run_with_cache(minih.init_params(cfg, 9), tokens, cfg)[1]   # another model's
    names = ["blocks.1.attn.hook_pattern", "blocks.0.attn.hook_z"]
    names += ["blocks.0.ln1.hook_scale", "ln_final.hook_scale"] if cfg.layernorm else []
    for name in names:
        as_function, c_f = forward(params, tokens, cfg, ops, edits={name: lambda _, a=other[name]: a})
        given, c_g = forward(params, tokens, cfg, ops, edits={name: other[name]})
        np.testing.assert_array_equal(given, as_function, err_msg=name)
        np.testing.assert_array_equal(c_g[name], other[name], err_msg=name)
        assert np.abs(given - clean_logits(params, tokens, cfg)).max() > 1e-6, name
    _, c_g = forward(params, tokens, cfg, ops, edits={"blocks.1.attn.hook_pattern": other["blocks.1.attn.hook_pattern"]})
    assert not any(k in c_g for k in ("blocks.1.attn.hook_q", "blocks.1.attn.hook_k", "blocks.1.attn.hook_attn_scores"))
    assert "blocks.1.attn.hook_v" in c_g
    _, c_g = forward(params, tokens, cfg, ops, edits={"blocks.0.attn.hook_z": clean["blocks.0.attn.hook_z"]})
    assert not any(k.startswith(("blocks.0.attn.hook_v", "blocks.0.attn.hook_pattern", "blocks.0.ln1")) for k in c_g)


def clean_logits(params, tokens, cfg):
    return minih.run_with_cache(params, tokens, cfg)[0]


def test_bad_edits_raise():
    cfg, params, tokens = tiny_model()
    ops = get_backend("numpy")
    with pytest.raises(ValueError, match="no hook point.*blocks.0.attn.hook_patern"):
        forward(params, tokens, cfg, ops, edits={"blocks.0.attn.hook_patern": lambda p: p})
    with pytest.raises(ValueError, match=r"edits\['blocks.0.attn.hook_z'\] must be a function .* or an array"):
        forward(params, tokens, cfg, ops, edits={"blocks.0.attn.hook_z": 0})
    with pytest.raises(ValueError, match="edits must be a dict"):
        forward(params, tokens, cfg, ops, edits=[("blocks.0.attn.hook_z", np.zeros_like)])
    with pytest.raises(ValueError, match="start_layer must be in 0..2, got 3"):
        forward(params, tokens, cfg, ops, start_layer=3)
    with pytest.raises(ValueError, match="resid must be the"):
        forward(params, tokens, cfg, ops, start_layer=1, resid=np.zeros((1, 2, 3)))


def test_the_reference_backend_runs_on_one_thread(tmp_path):
    # oracle: the interpreter's own record. loss_and_grads(backend="numpy") must compute
    # the batch plainly: no thread started, the Numba backend (and its pool) never imported.
    # A fresh process, so that no other test has imported them first
    script = tmp_path / "plain.py"
    script.write_text(
        "import sys, threading\n"
        "import numpy as np\n"
        "import minih\n"
        "cfg = minih.ModelConfig.preset('ref')\n"
        "params = minih.init_params(cfg, 0)\n"
        "tokens = np.random.default_rng(0).integers(0, cfg.d_vocab, (16, cfg.n_ctx))\n"
        "threading.Thread.start = lambda self: sys.exit('a thread was started')\n"
        "loss, grads = minih.loss_and_grads(params, tokens, cfg)\n"
        "assert np.isfinite(loss)\n"
        "assert not any(m.startswith('minih.kernels') for m in sys.modules), 'kernels imported'\n"
        "print('plain')\n")
    import os
    import subprocess
    import sys
    env = {**os.environ, "PYTHONPATH": str(minih.__file__).rsplit("/minih/", 1)[0]}
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env)
    assert out.returncode == 0 and out.stdout.strip() == "plain", out.stderr[-2000:]
