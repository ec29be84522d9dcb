"""minih/interp on models with MLPs: the pattern and loss scores keep their definitions
and run the whole model; the circuits ignore the MLPs; runs with MLPs analyse, sweep
and ablate (docs/05_metrics.md and docs/06_ablations.md, "Models with MLPs").

Oracle: the hand-built induction model with MLPs (tests/helpers.py,
handbuilt_with_mlps), whose designed heads 0.0 and 1.0 read nothing an MLP writes, so
their patterns, values and scores are those of the attention-only model it was built
from, while its logits are not (layer 0's MLP adds a bigram guess). Where the MLP model
and the attention-only model must agree, they are compared; where the MLP must show,
it is checked that it does.
"""
import numpy as np
import pytest

import minih
from minih.interp import metrics as M
from minih.interp.ablation import KINDS, Ablation, ablated_per_token_losses
from minih.interp.handbuilt import repeated_random_tokens
from helpers import handbuilt_with_mlps

V, N = 16, 32
DESIGNED = [(0, 0), (1, 0)]             # the previous-token head and the induction head


@pytest.fixture(scope="module")
def models():
    return handbuilt_with_mlps(d_vocab=V, n_ctx=N, n_heads=2)


@pytest.fixture(scope="module")
def tokens():
    return repeated_random_tokens(V, N // 2, n_repeats=2, batch=8, seed=3)     # [8, 32]


def test_the_mlps_respond(models, tokens):
    # not vacuous: the MLP model's logits differ from the attention-only model's
    cfg, params, cfg0, params0 = models
    logits, cache = minih.run_with_cache(params, tokens, cfg)
    logits0, _ = minih.run_with_cache(params0, tokens, cfg0)
    assert np.abs(cache["blocks.0.hook_mlp_out"]).max() > 0.4        # bigram * gelu(1)
    assert np.abs(logits - logits0).max() > 5                        # copy_strength * 0.42


def test_per_token_losses_and_icl_score_run_the_mlps(models, tokens):
    # oracle: -log softmax of run_with_cache's logits, written out (the MLPs are in them)
    cfg, params, cfg0, params0 = models
    logits, _ = minih.run_with_cache(params, tokens, cfg)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    by_hand = -np.take_along_axis(logp[:, :-1], tokens[:, 1:, None], axis=-1)[..., 0]
    losses = M.per_token_losses(params, tokens, cfg)
    np.testing.assert_allclose(losses, by_hand, rtol=0, atol=1e-9)   # float64, two roundings
    # the induction still works on the second repeat (context indices scaled to T = 32);
    # the bigram guess, wrong on random tokens, makes the first repeat worse than without it
    assert M.icl_score(losses) < -5
    losses0 = M.per_token_losses(params0, tokens, cfg0)
    assert losses[:, 2:15].mean() > losses0[:, 2:15].mean() + 1
    np.testing.assert_allclose(losses[:, N // 2:], 0, atol=1e-3)     # second repeat: copied


def test_pattern_scores_of_the_designed_heads_are_the_attention_only_ones(models, tokens):
    # oracle: the attention-only model; the designed heads read no slot an MLP writes
    cfg, params, cfg0, params0 = models
    for score in (lambda p, c: M.prefix_matching_scores(p, c),
                  lambda p, c: M.previous_token_scores(p, c, tokens),
                  lambda p, c: M.duplicate_token_scores(p, c, tokens),
                  lambda p, c: M.detector_scores(p, c, tokens, "induction_head")):
        with_mlps, without = score(params, cfg), score(params0, cfg0)
        assert with_mlps.shape == (2, 2) and np.all(np.isfinite(with_mlps))
        for l, h in DESIGNED:           # float64, identical products plus exact zeros
            assert with_mlps[l, h] == pytest.approx(without[l, h], abs=1e-12)
    prefix = M.prefix_matching_scores(params, cfg)
    prev = M.previous_token_scores(params, cfg, tokens)
    assert prefix[1, 0] > 0.99 and prefix[0, 0] < 0.05             # the induction head, only
    assert prev[0, 0] > 0.99                                         # the previous-token head


def test_copying_scores_read_the_ov_circuit_and_ignore_the_mlps(models):
    # oracle: the attention-only model. The layer-0 MLP writes a bigram into OUT, the slot
    # the unembedding reads: a copying score that looked through it would change; the
    # direct path of a head's OV circuit does not
    cfg, params, cfg0, params0 = models
    emp, emp0 = M.empirical_copying_scores(params, cfg), M.empirical_copying_scores(params0, cfg0)
    for l, h in DESIGNED:
        assert emp[l, h] == pytest.approx(emp0[l, h], abs=1e-12)
    assert emp[1, 0] > 0.99                                          # head 1.0 copies
    np.testing.assert_array_equal(M.eigenvalue_copying_scores(params, cfg),
                                  M.eigenvalue_copying_scores(params0, cfg0))
    comp, comp0 = M.composition_scores(params, cfg), M.composition_scores(params0, cfg0)
    for kind in comp:
        np.testing.assert_array_equal(comp[kind], comp0[kind])


def test_generality_scores_with_mlps():
    # oracle: the attention-only hand-built model's (test_generality): head 1.0 copies
    # literally and does not translate; the MLP changes none of its patterns
    from minih.data.generality_tasks import GeneralityTasks
    from minih.interp.generality import generality_scores
    cfg, params, cfg0, params0 = handbuilt_with_mlps(d_vocab=128, n_ctx=48, n_heads=1)
    src = GeneralityTasks(d_vocab=128, n_classes=4, min_len=4, max_len=10)
    r, r0 = generality_scores(params, cfg, src, n_seqs=8), generality_scores(params0, cfg0, src, n_seqs=8)
    for kind in r:
        np.testing.assert_allclose(r[kind]["attention"], r0[kind]["attention"], rtol=0, atol=1e-12)
    assert r["literal"]["attention"][1, 0] > 0.9 and r["translation"]["attention"][1, 0] < 0.2
    assert r["literal"]["gain"] > 3.0


# --- a run with MLPs: analyse, sweep, ablate ---------------------------------------------------

def _mlp_run(path, n_snapshots=6):
    """A run written by hand: the hand-built MLP model with its copying gain ramped from 0
    (no induction) to 15, as tests/test_ablation.py's _handbuilt_run."""
    from minih.training.run import RunWriter
    tokens = repeated_random_tokens(V, N // 2, n_repeats=2, batch=8, seed=1)
    cfg = handbuilt_with_mlps(V, N)[0]
    writer = RunWriter(path, cfg, {"test": "handbuilt with MLPs, ramp"}, tokens)
    for s in range(n_snapshots):
        _, params, _, _ = handbuilt_with_mlps(V, N, copy_strength=15.0 * s / (n_snapshots - 1))
        writer.add_snapshot(s, 1000 * (s + 1), params, minih.per_token_losses(params, tokens, cfg))
    return minih.load_run(path)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return _mlp_run(tmp_path_factory.mktemp("mlp") / "run")


def test_sweep_with_mlps_matches_direct_computation(run):
    # oracle: ablated_per_token_losses from scratch, for every unit at one snapshot
    from minih.interp.attribution import phase_direction, sweep_heads
    v = phase_direction(run.losses[1], run.losses[4])
    s = 3
    params = run.params(s)
    clean = minih.per_token_losses(params, run.eval_tokens, run.cfg)
    for kind in KINDS:
        sweep = sweep_heads(run, kind, direction=v, snapshots=[s], progress=False)
        assert sweep.max_stored_diff < 1e-5                     # float32 storage of the same losses
        dicl = sweep.dicl(3, 31)
        for k, unit in enumerate(sweep.units):
            lost = ablated_per_token_losses(params, run.eval_tokens, run.cfg, Ablation(unit, kind))
            # float64 model; the sweep reuses the clean cache, so rounding only
            assert dicl[k, 0] == pytest.approx(M.icl_score(lost) - M.icl_score(clean), abs=1e-9)
            assert sweep.phase_attr[k, 0] == pytest.approx(v @ (lost - clean).ravel(), abs=1e-9)
        assert sweep.labels[int(np.argmax(dicl[:4, 0]))] in ("L1H0", "L0H0")


def test_analyze_a_run_with_mlps(run, tmp_path, capsys):
    # oracle: the metric functions on the last snapshot, and the attention-only weights
    from minih.cli import main
    result = minih.analyze(run.path, out_dir=tmp_path / "a", progress=False)
    assert result.settings["d_mlp"] == V
    last = [r for r in result.rows("heads") if r["snapshot"] == len(run) - 1]
    by_name = {r["name"]: r for r in last}
    assert by_name["1.0"]["prefix_matching"] > 0.99
    params = run.params(len(run) - 1)
    cfg0 = run.cfg.replace(d_mlp=0)
    params0 = {k: v for k, v in params.items() if ".mlp." not in k}
    k_comp0 = M.composition_scores(params0, cfg0)["K"]
    assert by_name["1.0"]["k_comp_max"] == pytest.approx(np.nanmax(k_comp0[0, :, 1, 0]), abs=1e-12)
    assert main(["analyze", str(run.path), "--out", str(tmp_path / "b"), "--quiet"]) == 0
    out = capsys.readouterr().out
    notes = [line for line in out.splitlines() if "MLPs" in line]
    assert len(notes) == 1 and "ignore them" in notes[0], out


def test_ablate_command_on_a_run_with_mlps(run, tmp_path, capsys):
    # oracle: the run's design (head 1.0 carries the ICL) and the notes: what pattern
    # ablation freezes with MLPs, and the path expansion skipped (it refuses MLPs)
    import json
    from minih.cli import main
    out = tmp_path / "abl"
    assert main(["ablate", str(run.path), "--kind", "all", "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "pattern ablation freezes every attention pattern" in printed
    assert "path expansion skipped: the model has MLPs" in printed
    assert not (out / "paths.json").exists()
    for kind in ("zero", "pattern"):
        result = json.load(open(out / f"ablation_{kind}.json"))
        dicl = np.array(result["dicl"])                         # [K, S]
        assert result["labels"][int(np.argmax(dicl[:4, -1]))] == "L1H0"
