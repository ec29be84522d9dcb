"""The plain-text presets are ordinary language-model training, and their pipeline runs.

Oracles: the training split's own tokens (every training window must be a contiguous
slice of them: nothing repeated, reordered or mixed in) and the presets' fields. The
phase change itself is not timed here: `python -m minih watch text-2l` shows it and
prints the steps, tokens and seconds (docs/real_text_experiments.md has the runs).
"""
import dataclasses

import numpy as np
import pytest

import minih
from minih.cli import main as cli_main
from minih.training.config import TRAIN_PRESETS

TEXT_PRESETS = [name for name in TRAIN_PRESETS if name.startswith("text-")]


def test_every_family_member_has_a_preset():
    assert {f"text-{n}l{m}" for n in (1, 2, 3) for m in ("", "-mlp")} <= set(TEXT_PRESETS)


@pytest.mark.parametrize("name", TEXT_PRESETS)
def test_a_text_preset_is_plain_training(name):
    tc = TRAIN_PRESETS[name]
    assert tc.data.name == "bpe" and tc.data.path == "" and tc.data.corpus == "stdlib+tests"
    # no repeated windows, no curriculum: the source has no such option, the schedule is the
    # usual warm-up then a constant learning rate
    assert not [f.name for f in dataclasses.fields(tc.data) if "repeat" in f.name or "curric" in f.name]
    assert tc.schedule == "constant" and tc.warmup == 200
    assert tc.model.d_vocab == tc.data.vocab_size == 1024


@pytest.mark.slow
def test_text_windows_are_slices_of_the_training_text_and_the_preset_trains(tmp_path, capsys):
    # the first use trains the BPE on the stdlib with its tests (~30-50 s) and caches it
    tc = TRAIN_PRESETS["text-2l"]
    train_tokens = tc.data._data()[2]
    batch = tc.data.sample(np.random.default_rng(0), 4, tc.T)             # [4, 256]
    for row in batch:
        starts = np.flatnonzero(train_tokens[: len(train_tokens) - tc.T + 1] == row[0])
        assert any(np.array_equal(train_tokens[s: s + tc.T], row) for s in starts)
    # the preset end to end through the newcomer's command, a few steps
    out = tmp_path / "run"
    assert cli_main(["watch", "text-2l", "--steps", "20", "--set", "n_eval=8",
                     "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert "finished: 20 steps" in said and "ICL score" in said
    run = minih.load_run(out)
    assert run.manifest["data"]["files"] > 100 and run.manifest["train"]["data"]["path"] == ""
    assert np.isfinite(run.losses).all()


@pytest.mark.parametrize("name", ["induction-2l", "text-2l"])
def test_the_bench_measures_the_shapes_reproduce_trains(name):
    # `minih bench --configs induction-2l,text-2l`: the same model shape and batch as the preset
    from minih.app.bench import CONFIGS
    overrides, batch = CONFIGS[name]
    tc = TRAIN_PRESETS[name]
    assert {k: getattr(tc.model, k) for k in overrides} == overrides and batch == tc.batch
