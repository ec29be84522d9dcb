"""minih.analyze: every metric for every snapshot of a run, as tidy tables on disk.

Oracle: a run written by hand (RunWriter, no training) whose snapshots are the
hand-built induction model with the induction head's QK circuit scaled from 0 (off)
to 1 (fully on); the tables must agree with direct calls of the metric functions
and with the losses stored in the run.
"""
import csv
import json

import numpy as np
import pytest

import minih
from minih.interp import metrics as M
from minih.interp.handbuilt import induction_model, repeated_random_tokens
from minih.training.run import RunWriter

SCALES = [0.0, 0.05, 0.1, 0.2, 0.4, 0.7, 1.0]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("run")
    cfg, params = induction_model(d_vocab=16, n_ctx=48, n_heads=2)
    eval_tokens = repeated_random_tokens(16, 8, n_repeats=6, batch=6, seed=0)     # [6, 48]
    writer = RunWriter(path, cfg, {"data": {"name": "handbuilt"}}, eval_tokens)
    for s, scale in enumerate(SCALES):
        p = {k: v.copy() for k, v in params.items()}
        p["blocks.1.attn.W_Q"][0] *= np.sqrt(scale)     # score scales by scale: sqrt on Q and K
        p["blocks.1.attn.W_K"][0] *= np.sqrt(scale)
        losses = minih.per_token_losses(p, eval_tokens, cfg)
        writer.add_snapshot(step=10 * (s + 1), tokens_seen=1000 * 2 ** s, params=p, losses=losses)
    return path


@pytest.fixture(scope="module")
def result(run_dir):
    return minih.analyze(run_dir, progress=False)


def test_tables_have_a_row_per_snapshot_and_head(result):
    n_heads_total = 2 * 2
    assert len(result.heads["snapshot"]) == len(SCALES) * n_heads_total
    assert len(result.composition["snapshot"]) == len(SCALES) * 2 * 2   # layer0 x layer1 pairs
    assert len(result.snapshots["step"]) == len(SCALES)
    assert result.heads["name"][:4] == ["0.0", "0.1", "1.0", "1.1"]


def test_values_equal_direct_metric_calls(run_dir, result):
    run = minih.load_run(run_dir)
    last = len(run) - 1
    params = run.params(last)
    rows = [r for r in result.rows("heads") if r["snapshot"] == last]
    tokens, queries = M.prefix_matching_tokens(run.cfg.d_vocab, run.cfg.n_ctx, seed=0)
    pm = M.prefix_matching_scores(params, run.cfg, tokens, queries)
    eig = M.eigenvalue_copying_scores(params, run.cfg)
    comp = M.composition_scores(params, run.cfg)
    for r in rows:
        l, h = r["layer"], r["head"]
        assert r["prefix_matching"] == pytest.approx(pm[l, h], abs=1e-12)
        if np.isnan(eig[l, h]):
            assert r["copying_eigen"] is None                          # NaN -> None in rows
        else:
            assert r["copying_eigen"] == pytest.approx(eig[l, h], abs=1e-12)
    r10 = next(r for r in rows if r["name"] == "1.0")
    assert r10["k_comp_max"] == pytest.approx(comp["K"][0, 0, 1, 0]) and r10["k_comp_from"] == "0.0"
    baseline = result.settings["composition_baseline"]
    assert r10["k_comp_max_minus_baseline"] == pytest.approx(comp["K"][0, 0, 1, 0] - baseline)
    # snapshot table: from the stored losses
    np.testing.assert_allclose(result.snapshots["icl_score"], M.icl_score(run.losses))
    np.testing.assert_allclose(result.snapshots["loss"], run.losses.mean(axis=(1, 2)))


def test_induction_head_forms_across_snapshots(result):
    rows = [r for r in result.rows("heads") if r["name"] == "1.0"]
    pm = [r["prefix_matching"] for r in rows]
    assert pm[0] < 0.2 and pm[-1] > 0.99                 # QK off -> uniform; on -> induction
    assert all(b >= a - 1e-9 for a, b in zip(pm, pm[1:]))  # a larger QK scale only sharpens it
    icl = result.snapshots["icl_score"]
    assert icl[-1] < icl[0] - 1.0                        # in-context learning appears
    w = result.phase_change
    assert w is not None and 1000 <= w["start_tokens"] < w["end_tokens"] <= 1000 * 2 ** 6


def test_files_on_disk(run_dir, result):
    out = run_dir / "analysis"
    with open(out / "heads.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(result.heads["snapshot"])
    assert float(rows[-2]["prefix_matching"]) == pytest.approx(result.heads["prefix_matching"][-2])
    doc = json.loads((out / "analysis.json").read_text())           # strict JSON: no NaN
    assert set(doc) >= {"settings", "phase_change", "snapshots", "heads", "composition"}
    assert doc["heads"] == json.loads(json.dumps(result.rows("heads")))


def test_cli(run_dir, tmp_path, capsys):
    from minih.cli import main
    if "analyze" not in __import__("minih.cli", fromlist=["_"]).COMMANDS:
        pytest.fail("the analyze command is not registered in minih.cli.COMMANDS")
    assert main(["analyze", str(run_dir), "--out", str(tmp_path / "a"), "--quiet"]) == 0
    assert (tmp_path / "a" / "heads.csv").exists()
    assert "strongest prefix matching" in capsys.readouterr().out


def test_bad_run_dir(tmp_path):
    with pytest.raises(ValueError, match="not a directory|not a minih run"):
        minih.analyze(tmp_path / "nope", progress=False)


def test_snapshot_pca_and_heatmap(run_dir, result):
    run = minih.load_run(run_dir)
    pca = M.loss_pca(run.losses, n_components=2, seed=0)
    np.testing.assert_allclose(result.snapshots["pca_1"], pca.trajectories[0][:, 0])
    np.testing.assert_allclose(result.loss_by_position, run.losses.mean(axis=1))
    doc = json.loads((run_dir / "analysis" / "analysis.json").read_text())
    assert np.array(doc["loss_by_position"]).shape == (len(SCALES), 47)


def test_one_layer_and_zero_layer_runs(tmp_path):
    cfg = minih.ModelConfig(n_layers=1, n_heads=2, d_model=8, d_head=4, n_ctx=16, d_vocab=12)
    eval_tokens = np.random.default_rng(0).integers(0, 12, size=(3, 16))
    writer = RunWriter(tmp_path / "one", cfg, {}, eval_tokens)
    for s in range(3):
        p = minih.init_params(cfg, s)
        writer.add_snapshot(s, 100 * (s + 1), p, minih.per_token_losses(p, eval_tokens, cfg))
    res = minih.analyze(tmp_path / "one", progress=False)
    assert len(res.heads["name"]) == 6 and res.composition == {}   # no later layer to compose into
    assert (tmp_path / "one" / "analysis" / "composition.csv").read_text() == ""
    cfg0 = cfg.replace(n_layers=0)
    writer = RunWriter(tmp_path / "zero", cfg0, {}, eval_tokens)
    p = minih.init_params(cfg0, 0)
    writer.add_snapshot(0, 100, p, minih.per_token_losses(p, eval_tokens, cfg0))
    with pytest.raises(ValueError, match="no heads"):
        minih.analyze(tmp_path / "zero", progress=False)
