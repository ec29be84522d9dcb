"""The training loop: schedules, bit-exact resume, loud failures, a short real run, the CLI.

Oracles: an uninterrupted run with the same config and seed (resume must equal it
bit for bit); the data's own construction (which tokens an induction head can
predict); argparse's exit-code convention (2 for bad input).
"""
import os
import signal

import numpy as np
import pytest

import minih
from minih.cli import main as cli_main
from minih.data import RepeatedTokens
from minih.training.config import TrainConfig
from minih.training.loop import learning_rate, snapshot_steps, train

TINY = TrainConfig(model=minih.ModelConfig(n_layers=2, n_heads=2, d_model=16, d_head=8, n_ctx=24, d_vocab=16),
                   data=RepeatedTokens(d_vocab=16, min_len=4, max_len=10), steps=30, batch=8, n_eval=4,
                   log_snapshots=6, linear_snapshots=3, warmup=5, schedule="cosine",
                   optim=minih.AdamWConfig(lr=3e-3))


def _same_runs(a, b):
    ra, rb = minih.load_run(a), minih.load_run(b)
    np.testing.assert_array_equal(ra.steps, rb.steps)
    np.testing.assert_array_equal(ra.losses, rb.losses)            # every snapshot's eval losses
    for i in range(len(ra)):
        pa, pb = ra.params(i), rb.params(i)
        for k in pa:
            assert np.array_equal(pa[k], pb[k]), f"{k} differs at snapshot {i}"
    np.testing.assert_array_equal(np.load(a / "train_loss.npy"), np.load(b / "train_loss.npy"))


def test_schedule_and_snapshot_steps():
    assert learning_rate(TINY, 0) == pytest.approx(TINY.optim.lr / 5)         # warmup starts at lr/warmup
    assert learning_rate(TINY, 4) == pytest.approx(TINY.optim.lr)              # ... and ends at lr
    assert learning_rate(TINY, 30) == pytest.approx(TINY.optim.lr * TINY.min_lr_frac)   # cosine floor
    assert learning_rate(TINY.replace(schedule="constant"), 29) == TINY.optim.lr
    s = snapshot_steps(1000, 10, 4)
    assert s[0] == 0 and s[-1] == 1000 and s == sorted(set(s))
    assert {1, 250, 500, 750} <= set(s)                                   # log start + linear grid


def test_config_round_trip_and_bad_values():
    assert TrainConfig.from_dict(TINY.to_dict()) == TINY
    # the optimizer's fields live in one place (tc.optim) and may be named directly
    assert TINY.replace(lr=1e-2, beta2=0.99).optim == minih.AdamWConfig(lr=1e-2, beta2=0.99)
    assert TrainConfig.preset("induction-2l", steps=7, lr=1e-3).optim.lr == 1e-3
    flat = {k: v for k, v in TINY.to_dict().items() if k != "optim"}
    assert TrainConfig.from_dict({**flat, **TINY.optim.to_dict()}) == TINY   # older run.json layout
    assert TrainConfig.preset("induction-2l").model.n_layers == 2
    for bad in (dict(lr=0.0), dict(schedule="linear"), dict(steps=0), dict(seq_len=99), dict(beta1=1.0)):
        with pytest.raises(ValueError):
            TINY.replace(**bad)
    with pytest.raises(ValueError, match="d_vocab"):
        TINY.replace(data=RepeatedTokens(d_vocab=32))
    with pytest.raises(ValueError, match="unknown training preset"):
        TrainConfig.preset("nope")


def test_resume_is_bit_identical(tmp_path):
    full = train(TINY, tmp_path / "full", progress=False)
    assert full.status == "finished" and full.step == 30
    run = minih.load_run(tmp_path / "full")
    assert run.train_loss.shape == (30,) and run.seconds[0] == 0 and np.all(np.diff(run.seconds) >= 0)
    assert run.manifest["train"] == TINY.to_dict() and run.manifest["status"] == "finished"
    part = train(TINY, tmp_path / "part", progress=False, stop_after=11)   # a "kill" at step 11
    assert part.status == "stopped" and part.step == 11
    assert minih.load_run(tmp_path / "part").steps.max() <= 11
    train(None, tmp_path / "part", resume=True, progress=False)
    _same_runs(tmp_path / "full", tmp_path / "part")


def test_ctrl_c_checkpoints_then_resume(tmp_path):
    def press_ctrl_c(step, loss):
        if step == 7:
            os.kill(os.getpid(), signal.SIGINT)                        # what Ctrl-C sends
    r = train(TINY, tmp_path / "a", progress=False, on_step=press_ctrl_c)
    assert r.status == "interrupted" and r.step == 7
    assert minih.load_run(tmp_path / "a").manifest["status"] == "interrupted"
    train(None, tmp_path / "a", resume=True, progress=False)
    train(TINY, tmp_path / "b", progress=False)
    _same_runs(tmp_path / "a", tmp_path / "b")


def test_damaged_checkpoint_is_an_error_not_a_restart(tmp_path):
    train(TINY, tmp_path / "r", progress=False, stop_after=5)
    ck = tmp_path / "r" / "checkpoint.npz"
    good = ck.read_bytes()
    steps_before = minih.load_run(tmp_path / "r").steps.tolist()
    ck.write_bytes(good[: len(good) // 2])                                  # truncated
    with pytest.raises(ValueError, match="truncated or corrupt"):
        train(None, tmp_path / "r", resume=True, progress=False)
    bad = bytearray(good)
    bad[len(bad) // 3] ^= 0xFF                                              # one flipped byte
    ck.write_bytes(bytes(bad))
    with pytest.raises(ValueError, match="corrupt"):
        train(None, tmp_path / "r", resume=True, progress=False)
    ck.unlink()
    with pytest.raises(ValueError, match="does not exist"):
        train(None, tmp_path / "r", resume=True, progress=False)
    assert minih.load_run(tmp_path / "r").steps.tolist() == steps_before   # nothing was restarted
    with pytest.raises(ValueError, match="different config"):
        ck.write_bytes(good)
        train(TINY.replace(lr=1e-2), tmp_path / "r", resume=True, progress=False)


def test_divergence_stops_with_the_step_and_keeps_good_weights(tmp_path):
    # lr 1e30: the first update moves every weight by ~1e30, the next forward overflows float32
    tc = TINY.replace(lr=1e30, warmup=0, schedule="constant", grad_clip=0.0)
    with pytest.raises(minih.TrainingDiverged, match="diverged at step 2") as info:
        train(tc, tmp_path / "d", progress=False)
    assert info.value.step == 2
    run = minih.load_run(tmp_path / "d")
    assert run.manifest["status"] == "diverged"
    assert run.steps[-1] == 1                                              # last good weights kept
    assert np.isfinite(run.losses[0]).all()


@pytest.mark.slow
def test_short_induction_run_predicts_repeats(tmp_path):
    """induction-2l, 400 steps (0.4M tokens; the induction head forms near step 170; 5-35 s
    on 2 cores): repeated tokens become predictable, fresh ones stay at chance."""
    tc = TrainConfig.preset("induction-2l", steps=400, log_snapshots=0, linear_snapshots=1)
    train(tc, tmp_path / "ih", progress=False)
    params = minih.load_run(tmp_path / "ih").params(-1)
    tokens, mask = tc.data.sample_with_mask(np.random.default_rng(5), 64, tc.T)
    losses = minih.per_token_losses(params, tokens, tc.model)                # [B,T-1], predicts t[1:]
    repeated, fresh = losses[mask[:, 1:]].mean(), losses[~mask[:, 1:]].mean()
    # fresh tokens are uniform over 32: chance is ln 32 = 3.47 nats, and nothing in context
    # predicts them. Before the induction head forms, repeated tokens are near chance too;
    # after it, they drop by more than 2 nats.
    assert fresh > 3.0
    assert repeated < fresh - 2.0, (repeated, fresh)


def test_cli_help_bad_values_and_a_tiny_run(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        cli_main(["train", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for option in ("--set", "--out", "--backend", "--steps", "--tokens", "--seed", "--resume", "--overwrite"):
        assert option in out
    for argv in (["train", "--set", "lr=abc"], ["train", "--set", "nope=1"], ["train", "--steps", "0"],
                 ["train", "bad-preset"], ["train", "--set", "data=nope"], ["train", "--resume"]):
        assert cli_main(argv + ["--out", str(tmp_path / "x")]) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "error" in err, err
    with pytest.raises(SystemExit) as e:
        cli_main(["train", "--backend", "jax"])
    assert e.value.code == 2
    argv = ["train", "induction-2l", "--out", str(tmp_path / "run"), "--steps", "6", "--no-progress",
            "--set", "n_ctx=16", "--set", "d_model=16", "--set", "batch=4", "--set", "n_eval=3",
            "--set", "data.max_len=6", "--set", "data.min_len=3", "--set", "d_vocab=12", "--seed", "3",
            "--set", "lr=2e-3", "--set", "weight_decay=0"]                   # optimizer fields by name
    assert cli_main(argv) == 0
    assert "finished: 6 steps" in capsys.readouterr().out
    run = minih.load_run(tmp_path / "run")
    assert run.cfg.n_ctx == 16 and run.cfg.d_vocab == 12 and run.manifest["seed"] == 3
    assert run.manifest["data"]["d_vocab"] == 12                         # vocabulary followed the model
    assert run.manifest["train"]["optim"]["lr"] == 2e-3 and run.manifest["train"]["optim"]["weight_decay"] == 0
    assert run.steps[-1] == 6 and run.losses.shape[1:] == (3, 15)
    assert cli_main(argv) == 2                                            # exists: needs --resume/--overwrite
    assert "--resume" in capsys.readouterr().err
    assert cli_main(["train", "--resume", "--out", str(tmp_path / "run"), "--steps", "9", "--no-progress"]) == 0
    run = minih.load_run(tmp_path / "run")
    assert run.steps[-1] == 9 and run.manifest["schedule"]["steps"] == 9 and run.manifest["train"]["steps"] == 9
