"""Head ablations (minih/interp/ablation.py): zero, mean and pattern-preserving.

Oracles: run_with_cache (no ablation must reproduce it bit for bit); a full recompute
(the clean-cache shortcut must agree with it); a model built so that a head's mean
output is exactly zero (zero == mean ablation); the hand-built induction model
(minih/interp/handbuilt.py), whose induction circuit is known by construction.
"""
import copy
import itertools

import numpy as np
import pytest

import minih
from minih.interp.ablation import Ablation, KINDS, ablated_per_token_losses, head_means, run_with_ablation
from minih.interp.handbuilt import induction_model, repeated_random_tokens
from helpers import tiny_model

CONFIGS = [dict(layernorm=ln, positional=pos, smeared_keys=sm)
           for ln, pos, sm in itertools.product([True, False], ["shortformer", "standard"], [False, True])]
# models with MLPs: every ablation must work on them too (the MLPs run on the ablated stream)
MLP_CONFIGS = [dict(layernorm=True, positional="standard", smeared_keys=True, d_mlp=6),
               dict(layernorm=False, positional="shortformer", smeared_keys=False, d_mlp=6)]


_model = tiny_model                      # tests/helpers.py


@pytest.mark.parametrize("fields", CONFIGS + MLP_CONFIGS)
def test_no_ablation_is_run_with_cache_exactly(fields):
    # oracle: minih.run_with_cache; same ops in the same order, so equality is exact
    cfg, params, tokens = _model(**fields)
    logits, cache = minih.run_with_cache(params, tokens, cfg)
    for ablation in (None, Ablation([], "zero"), Ablation([], "pattern")):
        logits2, cache2 = run_with_ablation(params, tokens, cfg, ablation, full_cache=True)
        np.testing.assert_array_equal(logits2, logits)
        for key in cache2:
            np.testing.assert_array_equal(cache2[key], cache[key], err_msg=key)


@pytest.mark.parametrize("fields", CONFIGS + MLP_CONFIGS)
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


@pytest.mark.parametrize("d_mlp", [0, 6])
def test_mean_ablation_writes_the_per_position_mean(d_mlp):
    # oracle: the mean of hook_result over the batch, taken directly from the cache
    cfg, params, tokens = _model(layernorm=False, d_mlp=d_mlp)
    _, cache = minih.run_with_cache(params, tokens, cfg)
    means = head_means(params, tokens, cfg)
    # float64; the same mean computed two ways (einsum of mean(z) vs mean of results): rounding only
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


@pytest.mark.parametrize("d_mlp", [0, 6])
@pytest.mark.parametrize("kind", KINDS)
def test_ablation_never_changes_its_inputs(kind, d_mlp):
    # oracle: deep copies taken before the call
    cfg, params, tokens = _model(d_mlp=d_mlp)
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
    _, cache = minih.run_with_cache(params, tokens[:2], cfg)
    with pytest.raises(ValueError, match="clean_cache"):
        run_with_ablation(params, tokens, cfg, Ablation([(1, 0)], "pattern"), clean_cache=cache)
    with pytest.raises(ValueError, match="means"):
        run_with_ablation(params, tokens, cfg, Ablation([(1, 0)], "mean", means={0: np.zeros((6, 2, 8))}))


# --- the hand-built induction model: the known answer -----------------------------------

def _handbuilt(copy_strength=15.0):
    cfg, params = induction_model(d_vocab=16, n_ctx=32, n_heads=2, copy_strength=copy_strength)
    tokens = repeated_random_tokens(16, 16, n_repeats=2, batch=8, seed=0)   # [8, 32]
    return cfg, params, tokens


@pytest.mark.parametrize("kind", KINDS)
def test_handbuilt_induction_head_ablation_removes_the_icl(kind):
    # oracle: minih/interp/handbuilt.py by construction. Head 1.0 is the induction head, heads
    # 0.1 and 1.1 are small random "unrelated" heads (std 0.02). ICL = loss at context
    # index 31 (second repeat: ~0) - at index 3 (first repeat: above chance), ~ -8 nats.
    from minih.interp.metrics import icl_score
    cfg, params, tokens = _handbuilt()
    icl_clean = icl_score(minih.per_token_losses(params, tokens, cfg))
    assert icl_clean < -5

    def icl(head):
        return icl_score(ablated_per_token_losses(params, tokens, cfg, Ablation([head], kind)))

    removed = (icl((1, 0)) - icl_clean) / -icl_clean          # fraction of the ICL removed
    if kind == "mean":
        # the mean over 8 sequences of a copying head's write still tilts the logits
        # towards tokens seen at that position elsewhere: most, not all, of the ICL goes
        assert removed > 0.5
    else:
        # zero / pattern: only the unrelated heads' tiny noise (std 0.02) still reaches
        # the logits, which are then ~uniform at every position: ICL(ablated) ~ 0, so all
        # of it goes (measured 1.0007: 1e-3 leaves room for that noise)
        assert removed == pytest.approx(1.0, abs=1e-3)
    for head in [(0, 1), (1, 1)]:                             # unrelated heads: < 1% of it
        assert abs(icl(head) - icl_clean) < 0.01 * -icl_clean, head


def test_handbuilt_previous_token_head_pattern_vs_zero():
    # oracle: the construction again. Head 0.0 matters only through the KEYS of head 1.0
    # (K-composition). Zero ablation changes head 1.0's pattern and loses much of the ICL;
    # pattern-preserving ablation freezes that pattern, and no value reads what head 0.0
    # wrote, so it removes ~nothing: it sees only paths through values (docs/06).
    from minih.interp.metrics import icl_score
    cfg, params, tokens = _handbuilt()
    icl_clean = icl_score(minih.per_token_losses(params, tokens, cfg))
    zero = icl_score(ablated_per_token_losses(params, tokens, cfg, Ablation([(0, 0)], "zero")))
    pattern = icl_score(ablated_per_token_losses(params, tokens, cfg, Ablation([(0, 0)], "pattern")))
    assert zero - icl_clean > 0.3 * -icl_clean
    assert abs(pattern - icl_clean) < 0.01 * -icl_clean


# --- attribution over a run ------------------------------------------------------------

def _handbuilt_run(path, n_snapshots=6):
    """A run whose snapshots are the hand-built model with a growing copy strength:
    ICL appears over 'training', carried by head 1.0."""
    from minih.training.run import RunWriter
    cfg, _, tokens = _handbuilt()
    writer = RunWriter(path, cfg, {"test": "handbuilt ramp"}, tokens)
    for s in range(n_snapshots):
        _, params = induction_model(d_vocab=16, n_ctx=32, n_heads=2,
                                    copy_strength=15.0 * s / (n_snapshots - 1))
        writer.add_snapshot(s, 1000 * (s + 1), params, minih.per_token_losses(params, tokens, cfg))
    return minih.load_run(path)


def test_sweep_matches_direct_computation(tmp_path):
    # oracles: icl_score of the ablated per-token losses, and v . (L_ablated - L) with
    # v built by hand, for every head at one snapshot; the run's arrays stay unchanged
    from minih.interp.attribution import phase_direction, sweep_heads
    from minih.interp.metrics import icl_score
    run = _handbuilt_run(tmp_path / "run")
    losses_before = run.losses.copy()
    v = phase_direction(run.losses[1], run.losses[4])
    move = run.losses[4].astype(np.float64) - run.losses[1]      # stored float32, differenced in float64
    np.testing.assert_allclose(v, move.ravel() / np.linalg.norm(move), rtol=0, atol=1e-12)
    for kind in KINDS:
        sweep = sweep_heads(run, kind, direction=v, progress=False)
        assert sweep.max_stored_diff < 1e-5          # float32 storage of the same losses
        s = 3
        params = run.params(s)
        clean = minih.per_token_losses(params, run.eval_tokens, run.cfg)
        dicl = sweep.dicl(3, 31)                     # context indices 3 and 31, as icl_score
        assert len(sweep.units) == 4 + 2                 # every head, then every layer whole
        for k, unit in enumerate(sweep.units):
            lost = ablated_per_token_losses(params, run.eval_tokens, run.cfg, Ablation(unit, kind))
            # float64 model; the sweep reuses the clean cache, so rounding only
            assert dicl[k, s] == pytest.approx(icl_score(lost) - icl_score(clean), abs=1e-9)
            assert sweep.phase_attr[k, s] == pytest.approx(v @ (lost - clean).ravel(), abs=1e-9)
    np.testing.assert_array_equal(run.losses, losses_before)


def test_ablate_command_writes_tables_and_figures(tmp_path):
    # oracle: the run's design (head 1.0 carries all the ICL) and the file contract
    import csv
    import json
    from minih.cli import main
    run = _handbuilt_run(tmp_path / "run")
    out = tmp_path / "out"
    assert main(["ablate", str(run.path), "--kind", "all", "--out", str(out), "--quiet"]) == 0
    for kind in KINDS:
        rows = list(csv.DictReader(open(out / f"ablation_{kind}.csv")))
        assert len(rows) == len(run) * (4 + 2)                   # snapshots x (heads + layers)
        result = json.load(open(out / f"ablation_{kind}.json"))
        # the circuit's two heads carry the ICL; mean-ablating the previous-token head
        # (its mean write is a blur of tokens in PREV) can hurt even more than the
        # induction head, so only the zero and pattern kinds must put L1H0 first
        circuit = {"L1H0"} if kind != "mean" else {"L1H0", "L0H0"}
        dicl = np.array(result["dicl"])                          # [K, S]
        attr = np.array(result["phase_attr"])                    # [K, S]
        singles = slice(0, 4)                                    # rows 4, 5 are layers L0*, L1*
        assert result["labels"][int(np.argmax(dicl[singles, -1]))] in circuit
        assert result["labels"][int(np.argmin(attr[singles, -1]))] in circuit
        assert result["labels"][4:] == ["L0*", "L1*"]
        assert result["phase_window"] is not None
        for name in (f"dicl_{kind}.png", f"phase_attr_{kind}.png"):
            assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    paths = json.load(open(out / "paths.json"))
    # the induction head's single path is the term that moves the loss most (here it
    # lowers it: the hand-built model is confidently wrong on first repeats)
    biggest = max(paths["terms"], key=lambda r: abs(r["importance"]))
    assert biggest["name"] == "L1H0"
    assert main(["ablate", str(run.path), "--every", "0"]) == 2  # bad value: exit code 2


@pytest.mark.parametrize("d_mlp", [0, 6])
def test_pattern_without_frozen_ln_on_the_last_layer_is_zero_ablation(d_mlp):
    # oracle: zero ablation. For a head of the last layer no later pattern exists, so
    # freezing patterns changes nothing; with freeze_ln=False the final LayerNorm scale
    # is recomputed as zero ablation does, so the two must agree; with freeze_ln=True
    # (the default) they must differ, since the final scale stays at the clean one.
    # With MLPs the last layer's MLP runs on the ablated stream under both kinds alike
    cfg, params, tokens = _model(d_mlp=d_mlp)
    zero, _ = run_with_ablation(params, tokens, cfg, Ablation([(1, 1)], "zero"))
    unfrozen, _ = run_with_ablation(params, tokens, cfg, Ablation([(1, 1)], "pattern", freeze_ln=False))
    frozen, _ = run_with_ablation(params, tokens, cfg, Ablation([(1, 1)], "pattern"))
    np.testing.assert_allclose(unfrozen, zero, rtol=0, atol=1e-12)       # float64 rounding
    assert np.abs(frozen - zero).max() > 1e-3


@pytest.mark.parametrize("kind", KINDS)
def test_numba_backend_agrees_with_numpy(kind):
    # oracle: the NumPy reference. Without ablation the numba path must equal
    # run_with_cache(backend="numba") exactly (same ops); with ablation the two backends
    # agree to float64 kernel rounding (docs/04: the kernels match the reference to 1e-10;
    # here we see ~2e-15)
    pytest.importorskip("numba")
    cfg, params, tokens = _model(smeared_keys=True)
    ref, _ = minih.run_with_cache(params, tokens, cfg, backend="numba")
    mine, _ = run_with_ablation(params, tokens, cfg, None, backend="numba")
    np.testing.assert_array_equal(mine, ref)
    ab = Ablation([(0, 1), (1, 0)], kind)
    fast = ablated_per_token_losses(params, tokens, cfg, ab, backend="numba")
    slow = ablated_per_token_losses(params, tokens, cfg, ab, backend="numpy")
    np.testing.assert_allclose(fast, slow, rtol=0, atol=1e-10)


# --- models with MLPs ------------------------------------------------------------------------

def _mlp_model(**fields):
    """The tiny preset with MLPs, every parameter moved off its init (LN weights, biases
    and MLP biases nonzero), so that every block of the model does something."""
    cfg, params, tokens = _model(d_mlp=6, **fields)
    rng = np.random.default_rng(5)
    params = {k: v + 0.3 * rng.standard_normal(v.shape) for k, v in params.items()}
    return cfg, params, tokens


@pytest.mark.parametrize("with_clean_cache", [False, True])
def test_pattern_ablation_with_mlps_freezes_patterns_and_the_mlps_respond(with_clean_cache):
    # What "pattern" freezes in a model with MLPs (docs/06, "Models with MLPs"): every
    # attention pattern and the ln1 / final LayerNorm scales, bit for bit (they are the
    # clean arrays, given); LN2 and the MLPs run normally on the ablated stream.
    # Oracles: the clean cache, and the model's own mlp_block run afresh on the ablated
    # run's hook_resid_mid (the MLP computed what it computes on that stream).
    from minih.model import HookPoints, get_backend, mlp_block
    cfg, params, tokens = _mlp_model()
    _, clean = minih.run_with_cache(params, tokens, cfg)
    ab = Ablation([(0, 1)], "pattern")
    _, cache = run_with_ablation(params, tokens, cfg, ab, full_cache=True,
                                 clean_cache=clean if with_clean_cache else None)
    ops = get_backend("numpy")
    for l in range(cfg.n_layers):
        p = f"blocks.{l}."
        if l > 0:            # layer 0 reads the clean stream: its heads' z are given, not recomputed
            for name in ("attn.hook_pattern", "ln1.hook_scale"):
                np.testing.assert_array_equal(cache[p + name], clean[p + name], err_msg=p + name)
        # the MLPs respond: the ablated head's missing write changes what they read and write
        assert np.abs(cache[p + "hook_mlp_out"] - clean[p + "hook_mlp_out"]).max() > 1e-3, p
        assert np.abs(cache[p + "ln2.hook_scale"] - clean[p + "ln2.hook_scale"]).max() > 1e-6, p
        fresh = mlp_block(params, cache[p + "hook_resid_mid"], l, cfg, ops, HookPoints())
        # float64; the same ops on the same input, so equal up to rounding (seen: exact)
        np.testing.assert_allclose(cache[p + "hook_mlp_out"], fresh, rtol=0, atol=1e-12, err_msg=p)
    np.testing.assert_array_equal(cache["ln_final.hook_scale"], clean["ln_final.hook_scale"])
    assert not cache["blocks.0.attn.hook_result"][:, :, 1].any()          # the head writes nothing
    # not vacuous: the zero ablation of the same head moves layer 1's pattern
    _, zero = run_with_ablation(params, tokens, cfg, Ablation([(0, 1)], "zero"))
    moved = np.abs(zero["blocks.1.attn.hook_pattern"] - clean["blocks.1.attn.hook_pattern"]).max()
    assert moved > 1e-3


def _gelu_by_hand(u):
    """GELU, tanh form, written out: 0.5 u (1 + tanh(sqrt(2/pi) (u + 0.044715 u^3)))."""
    return 0.5 * u * (1 + np.tanh(np.sqrt(2 / np.pi) * (u + 0.044715 * u ** 3)))


def test_zero_ablation_with_an_mlp_by_hand():
    # oracle: a 1-layer model with an MLP and no LayerNorm, written out by hand: without
    # head 1 the stream after the attention is resid_mid - result_1, and the MLP then
    # computes on that stream. The head's linear removal (logits - result_1 @ W_U), exact
    # without MLPs (test_zero_ablation_is_removing_the_heads_write), misses the MLP's change.
    cfg, params, tokens = _mlp_model(n_layers=1, layernorm=False)
    logits, cache = minih.run_with_cache(params, tokens, cfg)
    ablated, _ = run_with_ablation(params, tokens, cfg, Ablation([(0, 1)], "zero"))
    mid = cache["blocks.0.hook_resid_mid"] - cache["blocks.0.attn.hook_result"][:, :, 1]
    post = _gelu_by_hand(mid @ params["blocks.0.mlp.W_in"] + params["blocks.0.mlp.b_in"])
    final = mid + post @ params["blocks.0.mlp.W_out"] + params["blocks.0.mlp.b_out"]
    np.testing.assert_allclose(ablated, final @ params["unembed.W_U"], rtol=0, atol=1e-12)  # float64
    linear = logits - cache["blocks.0.attn.hook_result"][:, :, 1] @ params["unembed.W_U"]
    assert np.abs(ablated - linear).max() > 1e-3


@pytest.mark.parametrize("kind", KINDS)
def test_numba_backend_agrees_with_numpy_with_mlps(kind):
    # oracle: the NumPy reference (as test_numba_backend_agrees_with_numpy)
    pytest.importorskip("numba")
    cfg, params, tokens = _mlp_model(smeared_keys=True)
    ab = Ablation([(0, 1), (1, 0)], kind)
    fast = ablated_per_token_losses(params, tokens, cfg, ab, backend="numba")
    slow = ablated_per_token_losses(params, tokens, cfg, ab, backend="numpy")
    np.testing.assert_allclose(fast, slow, rtol=0, atol=1e-10)
