"""Run directories: what RunWriter writes, load_run reads back exactly; bad files fail loudly.

Oracle: the arrays handed to the writer (round trip must be bit-exact: npz/npy store
the bytes) and minih.per_token_losses for losses computed by hand.
"""
import json

import numpy as np
import pytest

import minih
from minih.training.run import RunWriter

CFG = minih.ModelConfig.preset("tiny")


def _eval_tokens(n=3, T=5, seed=0):
    return np.random.default_rng(seed).integers(0, CFG.d_vocab, size=(n, T))


def _write_run(path, steps=(0, 1, 10)):
    eval_tokens = _eval_tokens()
    writer = RunWriter(path, CFG, {"seed": 7, "data": {"name": "hand-made"}}, eval_tokens)
    written = []
    for i, step in enumerate(steps):
        params = minih.init_params(CFG, seed=i)
        losses = minih.per_token_losses(params, eval_tokens, CFG)
        writer.add_snapshot(step, step * 15, params, losses)
        written.append((params, losses))
    return eval_tokens, written


def test_round_trip(tmp_path):
    eval_tokens, written = _write_run(tmp_path / "r")
    run = minih.load_run(tmp_path / "r")
    assert len(run) == 3 and run.cfg == CFG
    assert run.manifest["seed"] == 7 and run.manifest["data"] == {"name": "hand-made"}
    assert run.steps.dtype == np.int64 and run.steps.tolist() == [0, 1, 10]
    assert run.tokens_seen.tolist() == [0, 15, 150]
    np.testing.assert_array_equal(run.eval_tokens, eval_tokens)
    assert run.losses.shape == (3, 3, 4) and run.losses.dtype == np.float32
    for i, (params, losses) in enumerate(written):
        loaded = run.params(i)
        assert loaded.keys() == params.keys()
        for k in params:
            np.testing.assert_array_equal(loaded[k], params[k])        # bit-exact storage
        np.testing.assert_array_equal(run.losses[i], losses.astype(np.float32))
    assert run.index_of_step(10) == 2
    assert run.params(-1).keys() == written[-1][0].keys()


def test_writer_rejects_bad_input(tmp_path):
    eval_tokens = _eval_tokens()
    writer = RunWriter(tmp_path / "r", CFG, {}, eval_tokens)
    params = minih.init_params(CFG, 0)
    with pytest.raises(ValueError, match="shape"):
        writer.add_snapshot(0, 0, params, np.zeros((3, 5)))                   # T, not T-1
    writer.add_snapshot(5, 0, params, np.zeros((3, 4)))
    with pytest.raises(ValueError, match="increasing step"):
        writer.add_snapshot(5, 0, params, np.zeros((3, 4)))
    with pytest.raises(ValueError, match="missing key"):
        writer.add_snapshot(6, 0, {"embed.W_E": params["embed.W_E"]}, np.zeros((3, 4)))
    with pytest.raises(ValueError, match="already holds a run"):
        RunWriter(tmp_path / "r", CFG, {}, eval_tokens)
    with pytest.raises(ValueError, match="d_vocab"):
        RunWriter(tmp_path / "s", CFG, {}, eval_tokens + CFG.d_vocab)


def test_not_a_run_and_corrupt_files(tmp_path):
    with pytest.raises(ValueError, match="not a directory"):
        minih.load_run(tmp_path / "nothing")
    with pytest.raises(ValueError, match="not a minih run directory"):
        minih.load_run(tmp_path)
    _write_run(tmp_path / "r")
    (tmp_path / "r" / "snapshots.json").write_text("[{\"step\": 0,")          # truncated JSON
    with pytest.raises(ValueError, match="corrupt"):
        minih.load_run(tmp_path / "r")
    _write_run(tmp_path / "q")
    run = minih.load_run(tmp_path / "q")
    f = tmp_path / "q" / run.index[1]["params"]
    f.write_bytes(f.read_bytes()[:50])                                        # truncated npz
    with pytest.raises(ValueError, match="truncated or corrupt"):
        run.params(1)
    g = tmp_path / "q" / run.index[2]["losses"]
    g.write_bytes(g.read_bytes()[:20])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        minih.load_run(tmp_path / "q")


def test_reopen_truncate_and_manifest_update(tmp_path):
    _write_run(tmp_path / "r")
    writer = RunWriter.reopen(tmp_path / "r")
    writer.truncate_after(1)
    writer.update_manifest(timings={"train_seconds": np.float64(1.5)})
    writer.add_snapshot(3, 45, minih.init_params(CFG, 3), np.ones((3, 4)))
    run = minih.load_run(tmp_path / "r")
    assert run.steps.tolist() == [0, 1, 3]
    assert json.loads((tmp_path / "r" / "run.json").read_text())["timings"]["train_seconds"] == 1.5
    np.testing.assert_array_equal(run.losses[2], 1.0)
    assert np.isnan(run.seconds).all() and run.train_loss is None      # not recorded by hand
