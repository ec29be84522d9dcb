"""`minih watch`: the live scores are the run's own, milestones are announced once, and the
command behaves like `minih train` (one-line errors, a run directory, a summary).

Oracles: the run directory read back and scored with minih.metrics directly; the
hand-built induction model (minih.handbuilt), whose head 1.0 is an induction head by
construction."""
import numpy as np
import pytest

import minih
from minih import metrics
from minih.app.watch import Watcher
from minih.cli import main as cli_main
from minih.interp.handbuilt import induction_model
from minih.training.loop import Snapshot

SMALL = ["--set", "n_ctx=16", "--set", "d_model=16", "--set", "batch=4", "--set", "n_eval=3",
         "--set", "data.max_len=6", "--set", "data.min_len=3", "--set", "d_vocab=12"]


def test_the_scores_shown_are_the_runs_own(tmp_path):
    tc = minih.TrainConfig.preset("induction-2l", steps=12, batch=4, n_eval=3, log_snapshots=3,
                                  linear_snapshots=2)
    tc = tc.replace(model=tc.model.replace(n_ctx=16, d_model=16, d_vocab=12),
                    data=tc.data.__class__(d_vocab=12, mode="dense", min_len=3, max_len=6))
    said = []
    watcher = Watcher(tc, say=said.append)
    minih.train(tc, tmp_path / "run", progress=False, on_snapshot=watcher)
    run = minih.load_run(tmp_path / "run")
    assert [row[0] for row in watcher.history] == run.steps.tolist()
    early, late = metrics.icl_indices(run.eval_tokens.shape[1])
    tokens, queries = metrics.prefix_matching_tokens(12, 16)
    for i, (step, seen, _, score, (l, h), icl) in enumerate(watcher.history):
        assert seen == run.tokens_seen[i]
        scores = metrics.prefix_matching_scores(run.params(i), run.cfg, tokens, queries)
        assert l >= 1 and score == pytest.approx(scores[1:].max(), abs=1e-6)  # layers >= 1 only
        assert icl == pytest.approx(float(metrics.icl_score(run.losses[i], early, late)), abs=1e-6)
    assert said == [] or all("passes prefix matching" in s for s in said)


def test_a_milestone_is_announced_once():
    cfg, params = induction_model(d_vocab=16, n_ctx=40)
    tc = minih.TrainConfig(model=cfg, data=minih.data.make_source("repeated", d_vocab=16))
    tokens = np.random.default_rng(0).integers(0, 16, (2, 40))
    losses = minih.per_token_losses(params, tokens, cfg)
    said = []
    watcher = Watcher(tc, say=said.append)
    zero = {k: np.zeros_like(v) for k, v in params.items()}
    for step, p in ((0, params), (5, zero), (10, params), (15, params)):
        watcher(Snapshot(step, step * 80, float(step), p, tokens, losses))
    # step 0 (the initial weights) is never announced; step 10 passes both levels, once
    assert len(said) == 2 and all(s.startswith("step 10 ") for s in said), said
    assert "head 1.0 passes prefix matching 0.3" in said[0] and "0.5" in said[1]
    assert "passed 0.5 at step 10" in watcher.summary()


def test_cli_watch_trains_and_sums_up(tmp_path, capsys):
    argv = ["watch", "induction-2l", "--out", str(tmp_path / "run"), "--steps", "8", *SMALL]
    assert cli_main(argv) == 0
    out = capsys.readouterr().out
    assert "finished: 8 steps" in out and "prefix matching (best head of layers >= 1)" in out
    assert len(minih.load_run(tmp_path / "run")) > 1
    # the run is there: a second watch into it stops with one line, as train does
    assert cli_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "already holds a run" in err
    for bad in (["watch", "no-such-preset"], ["watch", "induction-2l", "--set", "nope=1"],
                ["watch", "induction-2l", "--steps", "0"]):
        assert cli_main(bad + ["--out", str(tmp_path / "x")]) == 2, bad
        assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_a_one_layer_control_says_it_is_one(tmp_path):
    tc = minih.TrainConfig.preset("induction-1l", steps=3, batch=2, n_eval=2)
    watcher = Watcher(tc, say=lambda s: None)
    minih.train(tc, tmp_path / "run", progress=False, on_snapshot=watcher)
    assert "this is the control" in watcher.summary()


def test_too_short_a_context_is_refused_before_training(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli_main(["watch", "induction-2l", "--out", str(out), "--set", "n_ctx=8"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot watch" in err
    assert not (out / "run.json").exists()                   # nothing trained, nothing to clean up


def test_on_text_the_test_tokens_skip_the_most_frequent(tmp_path):
    # the paper's prefix-matching test leaves out the most and least common tokens: on text
    # the watcher counts them on the held-out evaluation set, as `minih analyze` does
    data = minih.data.make_source("bpe", corpus="prose", vocab_size=300)
    model = minih.ModelConfig(n_layers=2, n_heads=2, d_model=16, d_head=4, n_ctx=64, d_vocab=300)
    tc = minih.TrainConfig(model=model, data=data, steps=2, batch=2, n_eval=96)
    watcher = Watcher(tc, say=lambda s: None)
    minih.train(tc, tmp_path / "run", progress=False, on_snapshot=watcher)
    run = minih.load_run(tmp_path / "run")
    counts = np.bincount(run.eval_tokens.ravel(), minlength=300)
    seen = int((counts > 0).sum())
    k = seen // 10 - 2                      # inside the 10% most frequent of the seen tokens
    common = np.argsort(-counts)[:k]
    assert k >= 10 and counts[common[-1]] > np.sort(counts)[-(seen // 10 + 1)]   # no tie at the cut
    # without the exclusion, 10 x 15 random draws from ~300 tokens would hit these k ~ 10 times
    tokens, _ = watcher._prefix
    assert not np.isin(tokens[:, 1:], common).any()
