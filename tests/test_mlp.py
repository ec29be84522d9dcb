"""Models with MLPs (d_mlp > 0): the ops, the whole backward, and nothing changed at d_mlp = 0.

Oracles: central finite differences in float64 (each op alone, tolerance as in
test_ops.py: second-order stencil, h = 1e-5, accurate to ~1e-10 on these smooth ops;
the whole model through minih.gradcheck, tolerance 1e-6 as in test_gradients.py);
GELU against its formula written out and against the exact erf GELU, which the tanh
form approximates to within 1e-3 (measured here: at most 4.7e-4, at |u| = 2.70);
an attention-only run directory written by minih 0.1.0, before d_mlp existed
(tests/data/run_before_mlp; its run.json records the version): its scores and a resume
to step 45 (backend numpy) were computed then, by that code, into expected.json.
"""
import itertools
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy.special import erf

import minih
from minih import ops
from minih.interp.metrics import heads as H
from helpers import assert_close, numerical_grad

RTOL, ATOL = 1e-7, 1e-9
TOL = 1e-6
OLD_RUN = Path(__file__).parent / "data" / "run_before_mlp"
OTHER_CPU = (1e-5, 1e-6)           # rtol, atol: float32 rounding, summed in another order
rng = np.random.default_rng(0)


# --- the ops ---------------------------------------------------------------------------

def test_gelu_forward_matches_its_formula_and_the_erf_gelu():
    u = np.linspace(-6, 6, 241)
    written = 0.5 * u * (1 + np.tanh(math.sqrt(2 / math.pi) * (u + 0.044715 * u ** 3)))
    assert_close("gelu", ops.gelu_forward(u), written, 1e-15, 1e-15)
    exact = 0.5 * u * (1 + erf(u / math.sqrt(2)))
    assert np.abs(ops.gelu_forward(u) - exact).max() < 1e-3
    # properties: gelu(0) = 0, ~identity for large u, ~0 for very negative u
    assert ops.gelu_forward(np.array([0.0]))[0] == 0
    assert abs(ops.gelu_forward(np.array([10.0]))[0] - 10) < 1e-12
    assert abs(ops.gelu_forward(np.array([-10.0]))[0]) < 1e-12


@pytest.mark.parametrize("shape", [(2, 3, 5), (1, 1, 1), (4,)])
def test_gelu_backward(shape):
    u, R = rng.normal(size=shape) * 2, rng.normal(size=shape)
    L = lambda: float((ops.gelu_forward(u) * R).sum())
    assert_close("d_u", ops.gelu_backward(R, u), numerical_grad(L, u), RTOL, ATOL)


def test_gelu_slope_at_known_points():
    # gelu'(0) = 1/2 (t = 0); gelu' -> 1 for large u and -> 0 for very negative u
    slope = ops.gelu_backward(np.ones(3), np.array([0.0, 30.0, -30.0]))
    assert_close("slope", slope, np.array([0.5, 1.0, 0.0]), 1e-12, 1e-12)


@pytest.mark.parametrize("shape,d_out", [((2, 3, 5), 4), ((1, 1, 1), 1), ((3, 2), 6)])
def test_linear_backward(shape, d_out):
    x = rng.normal(size=shape)
    W, b = rng.normal(size=(shape[-1], d_out)), rng.normal(size=d_out)
    R = rng.normal(size=shape[:-1] + (d_out,))
    L = lambda: float((ops.linear_forward(x, W, b) * R).sum())
    d_x, d_W, d_b = ops.linear_backward(R, x, W)
    assert d_x.shape == x.shape and d_W.shape == W.shape and d_b.shape == b.shape
    for name, got, wrt in (("d_x", d_x, x), ("d_W", d_W, W), ("d_b", d_b, b)):
        assert_close(name, got, numerical_grad(L, wrt), RTOL, ATOL)


def test_mlp_ops_keep_float32():
    u = rng.normal(size=(2, 3)).astype(np.float32)
    W, b = np.ones((3, 2), np.float32), np.zeros(2, np.float32)
    assert ops.gelu_forward(u).dtype == np.float32
    assert ops.gelu_backward(u, u).dtype == np.float32
    assert ops.linear_forward(u, W, b).dtype == np.float32
    assert all(g.dtype == np.float32 for g in ops.linear_backward(np.ones((2, 2), np.float32), u, W))


# --- config and parameters ---------------------------------------------------------------

def test_mlp_parameters_names_shapes_and_init():
    cfg = minih.ModelConfig.preset("tiny", d_mlp=12)
    shapes = minih.param_shapes(cfg)
    for l in range(cfg.n_layers):
        assert shapes[f"blocks.{l}.ln2.w"] == shapes[f"blocks.{l}.ln2.b"] == (8,)
        assert shapes[f"blocks.{l}.mlp.W_in"] == (8, 12)
        assert shapes[f"blocks.{l}.mlp.b_in"] == (12,)
        assert shapes[f"blocks.{l}.mlp.W_out"] == (12, 8)
        assert shapes[f"blocks.{l}.mlp.b_out"] == (8,)
    assert "blocks.0.ln2.w" not in minih.param_shapes(cfg.replace(layernorm=False))
    p = minih.init_params(cfg.replace(d_model=64, d_mlp=256), 0)
    assert abs(p["blocks.0.mlp.W_in"].std() - 1 / 8) < 0.01           # 1/sqrt(d_model)
    assert abs(p["blocks.0.mlp.W_out"].std() - 1 / 16) < 0.005        # 1/sqrt(d_mlp)
    assert not p["blocks.0.mlp.b_in"].any() and not p["blocks.0.mlp.b_out"].any()
    assert (p["blocks.0.ln2.w"] == 1).all()
    q = minih.init_params(cfg.replace(init_mlp_in_std=0.5, init_mlp_out_std=0.25), 0)
    assert abs(q["blocks.0.mlp.W_in"].std() - 0.5) < 0.1
    assert abs(q["blocks.0.mlp.W_out"].std() - 0.25) < 0.05


def test_attention_only_config_is_unchanged():
    # d_mlp = 0: no MLP key or hook (the draws: test_an_old_run_directory_loads_and_scores_the_same)
    cfg = minih.ModelConfig.preset("tiny")
    assert cfg.d_mlp == 0
    assert not any("mlp" in k or "ln2" in k for k in minih.param_shapes(cfg))
    assert not any("mlp" in n or "resid_mid" in n for n in minih.model.hook_names(cfg))


@pytest.mark.parametrize("bad,message", [(dict(d_mlp=-1), "d_mlp must be >= 0"),
                                         (dict(d_mlp=2.5), "d_mlp must be an int"),
                                         (dict(init_mlp_out_std=float("nan")), "init_mlp_out_std")])
def test_bad_mlp_config_is_refused(bad, message):
    with pytest.raises(ValueError, match=message):
        minih.ModelConfig(**bad)


def test_params_of_the_wrong_family_are_refused():
    cfg = minih.ModelConfig.preset("tiny", d_mlp=4)
    with pytest.raises(ValueError, match="missing key.*mlp.*d_mlp=4"):
        minih.run_with_cache(minih.init_params(cfg.replace(d_mlp=0)), [[1, 2]], cfg)
    with pytest.raises(ValueError, match="does not use.*d_mlp=0"):
        minih.run_with_cache(minih.init_params(cfg), [[1, 2]], cfg.replace(d_mlp=0))


# --- the forward -------------------------------------------------------------------------

def random_mlp_params(cfg, seed=1):
    """init_params with nonzero biases and LayerNorm weights != 1, so that every term of
    the backward is exercised (at init the biases are 0 and the weights 1)."""
    params = minih.init_params(cfg, seed)
    r = np.random.default_rng(seed + 100)
    for k, v in params.items():
        if k.endswith((".b", "b_in", "b_out")):
            params[k] = (r.normal(size=v.shape) * 0.5).astype(v.dtype)
        elif k.endswith(".w"):
            params[k] = (1 + r.normal(size=v.shape) * 0.3).astype(v.dtype)
    return params


@pytest.mark.parametrize("layernorm", [True, False])
def test_forward_follows_the_written_steps(layernorm):
    # oracle: the forward of the contract, written out here with plain NumPy on the cache's
    # own attention outputs: resid_mid = resid_pre + attn_out, then the MLP, then resid_post
    cfg = minih.ModelConfig.preset("tiny", d_mlp=6, layernorm=layernorm, dtype="float64")
    params = random_mlp_params(cfg)
    tokens = rng.integers(0, cfg.d_vocab, (3, 5))
    logits, cache = minih.run_with_cache(params, tokens, cfg)

    def ln(x, w, b):
        return (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5) * w + b

    c = math.sqrt(2 / math.pi)
    for l in range(cfg.n_layers):
        p = f"blocks.{l}."
        mid = cache[p + "hook_resid_pre"] + cache[p + "hook_attn_out"]
        assert_close("mid", cache[p + "hook_resid_mid"], mid, 1e-12, 1e-12)
        h2 = ln(mid, params[p + "ln2.w"], params[p + "ln2.b"]) if layernorm else mid
        pre = h2 @ params[p + "mlp.W_in"] + params[p + "mlp.b_in"]
        post = 0.5 * pre * (1 + np.tanh(c * (pre + 0.044715 * pre ** 3)))
        out = post @ params[p + "mlp.W_out"] + params[p + "mlp.b_out"]
        assert cache[p + "mlp.hook_pre"].shape == (3, 5, 6)
        assert_close("pre", cache[p + "mlp.hook_pre"], pre, 1e-12, 1e-12)
        assert_close("post", cache[p + "mlp.hook_post"], post, 1e-12, 1e-12)
        assert_close("mlp_out", cache[p + "hook_mlp_out"], out, 1e-12, 1e-12)
        assert_close("post", cache[p + "hook_resid_post"], mid + out, 1e-12, 1e-12)
    assert set(minih.model.hook_names(cfg)) <= set(cache)


def test_an_mlp_edit_changes_what_flows_on():
    # zeroing every MLP's output gives the attention-only model with the same weights
    cfg = minih.ModelConfig.preset("tiny", d_mlp=6, dtype="float64")
    params = random_mlp_params(cfg)
    tokens = rng.integers(0, cfg.d_vocab, (2, 6))
    ops_ = minih.model.get_backend("numpy")
    zero = {f"blocks.{l}.hook_mlp_out": np.zeros((2, 6, cfg.d_model)) for l in range(cfg.n_layers)}
    edited, _ = minih.model.forward(params, tokens, cfg, ops_, edits=zero)
    attn_only = cfg.replace(d_mlp=0)
    plain = {k: v for k, v in params.items() if k in minih.param_shapes(attn_only)}
    expect, _ = minih.run_with_cache(plain, tokens, attn_only)
    assert_close("logits", edited, expect, 1e-12, 1e-12)
    unedited, _ = minih.run_with_cache(params, tokens, cfg)
    assert np.abs(unedited - expect).max() > 1e-3               # the MLPs did something


# --- the backward: every MLP parameter against finite differences ------------------------

GRID = list(itertools.product([0, 1, 2, 3, 4], [True, False], ["shortformer", "standard"],
                              [False, True]))


@pytest.mark.parametrize("n_layers,layernorm,positional,smeared", GRID)
def test_gradcheck_with_mlps(n_layers, layernorm, positional, smeared):
    cfg = minih.ModelConfig.preset("tiny", n_layers=n_layers, layernorm=layernorm, d_mlp=6,
                                   positional=positional, smeared_keys=smeared, smear_init=0.3,
                                   dtype="float64")
    # every entry up to 1 layer; a seeded sample of 12 entries per parameter beyond (the
    # deeper models repeat the same blocks; sampling keeps the suite fast)
    # Step h: without LayerNorm nothing rescales the stream, each GELU adds curvature, and
    # in the 4-layer model the stencil's truncation error (~h^4) reached 7e-6 absolute at
    # h = 5e-4 on a gradient of 3.0 (rel 2.5e-6; it fell 16x per halving of h, as
    # truncation does, to 1.2e-8 at h = 1e-4). So h = 1e-4 there; rounding stays ~1e-11.
    report = minih.gradcheck(cfg, params=random_mlp_params(cfg, n_layers), seed=n_layers,
                             seq_len=5, max_entries=None if n_layers <= 1 else 12,
                             h=5e-4 if layernorm else 1e-4)
    assert report.ok(TOL), str(report)
    assert {r.key for r in report.rows} == set(minih.param_shapes(cfg))


def test_gradcheck_catches_a_wrong_gelu_slope(monkeypatch):
    real = ops.gelu_backward
    monkeypatch.setattr(ops, "gelu_backward", lambda d, u: real(d, u) * 1.01)
    cfg = minih.ModelConfig.preset("tiny", d_mlp=6, dtype="float64")
    report = minih.gradcheck(cfg, params=random_mlp_params(cfg), max_entries=4)
    bad = {r.key for r in report.rows if r.max_rel_err > TOL}
    # everything before the last GELU is wrong; what comes after it (the last W_out, b_out,
    # ln_final, W_U) is not
    assert {"blocks.1.mlp.W_in", "blocks.1.mlp.b_in", "blocks.0.attn.W_Q"} <= bad
    assert not bad & {"blocks.1.mlp.W_out", "blocks.1.mlp.b_out", "unembed.W_U"}


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_float32_training_step_matches_float64(backend):
    # rtol 1e-3 / atol 1e-5: float32 rounding (eps 6e-8) accumulated over ~1e3 terms
    cfg64 = minih.ModelConfig.preset("tiny", d_mlp=6, dtype="float64")
    p64 = random_mlp_params(cfg64)
    p32 = {k: v.astype(np.float32) for k, v in p64.items()}
    tokens = rng.integers(0, cfg64.d_vocab, (4, 6))
    l64, g64 = minih.loss_and_grads(p64, tokens, cfg64)
    l32, g32 = minih.loss_and_grads(p32, tokens, cfg64.replace(dtype="float32"), backend=backend)
    assert abs(l32 - l64) < 1e-5
    for k in g64:
        assert g32[k].dtype == np.float32
        assert_close(k, g32[k], g64[k], 1e-3, 1e-5)


# --- an attention-only run from before MLPs existed --------------------------------------

def test_an_old_run_directory_loads_and_scores_the_same():
    expected = json.loads((OLD_RUN / "expected.json").read_text())
    run = minih.load_run(OLD_RUN / "run")
    assert run.cfg.d_mlp == 0
    # the same parameter draws as before d_mlp existed: minih 0.1.0 stored its initial
    # weights as the step-0 snapshot
    seed = run.manifest["train"]["seed"]
    for key, value in minih.init_params(run.cfg, seed).items():
        assert np.array_equal(value, run.params(0)[key]), key
    p = run.params(-1)
    # the recorded numbers are those of the CPU that made them; another CPU's BLAS kernels
    # round float32 sums in another order (7e-7 apart on an AVX-512 Intel VM against the
    # AVX2 AMD VM that recorded them), so: equal up to float32 rounding. A wrongly loaded
    # weight or token would differ by orders more
    assert_close("losses", minih.per_token_losses(p, run.eval_tokens, run.cfg),
                 np.array(expected["per_token_losses_last"]), *OTHER_CPU)
    assert_close("prefix", H.prefix_matching_scores(p, run.cfg),
                 np.array(expected["prefix_matching_last"]), *OTHER_CPU)
    assert_close("prev", H.previous_token_scores(p, run.cfg, run.eval_tokens),
                 np.array(expected["previous_token_last"]), *OTHER_CPU)


def test_an_old_run_resumes_bit_for_bit(tmp_path):
    # resumed to step 45 in one session or in two, the bits are the same; and the same
    # as the recorded run's up to float32 rounding (recorded on another CPU, see above)
    expected = json.loads((OLD_RUN / "expected.json").read_text())
    for name in ("once", "twice"):
        shutil.copytree(OLD_RUN / "run", tmp_path / name)
    tc = minih.TrainConfig.from_dict(minih.load_run(tmp_path / "once").manifest["train"])
    minih.train(tc.replace(steps=45), tmp_path / "once", resume=True, progress=False)
    minih.train(tc.replace(steps=38), tmp_path / "twice", resume=True, progress=False)
    minih.train(tc.replace(steps=45), tmp_path / "twice", resume=True, progress=False)
    once, twice = minih.load_run(tmp_path / "once"), minih.load_run(tmp_path / "twice")
    assert int(once.steps[-1]) == int(twice.steps[-1]) == 45
    for k, v in once.params(-1).items():
        assert np.array_equal(v, twice.params(-1)[k]), k
        assert_close(k, v, np.array(expected["resumed_to_45"][k], dtype=np.float32), *OTHER_CPU)
    assert np.array_equal(once.train_loss, twice.train_loss)
    assert_close("train loss", once.train_loss, np.array(expected["resumed_train_loss"], np.float32),
                 *OTHER_CPU)
