"""The default backends are the ones the docs state (README, docs/03, docs/04): a new run
trains on numba, a resumed run keeps the backend it was trained on, reproduce runs numba,
analyze and ablate the numpy reference (faster for the small runs they read)."""
import argparse
import inspect
import json

import minih
from minih.training.config import TrainConfig
from minih.training.loop import DEFAULT_BACKEND, train

TINY = TrainConfig(model=minih.ModelConfig(n_layers=1, n_heads=2, d_model=16, d_head=8, n_ctx=16, d_vocab=16),
                   data=minih.data.RepeatedTokens(d_vocab=16, min_len=4, max_len=6), steps=6, batch=2,
                   n_eval=2, log_snapshots=2, linear_snapshots=1)


def recorded(run_dir) -> str:
    return json.loads((run_dir / "run.json").read_text())["backend"]


def test_a_new_run_trains_on_numba_and_a_resumed_run_keeps_its_own(tmp_path):
    assert DEFAULT_BACKEND == "numba"
    train(TINY, tmp_path / "new", progress=False)
    assert recorded(tmp_path / "new") == "numba"
    train(TINY, tmp_path / "ref", backend="numpy", progress=False, stop_after=3)
    train(None, tmp_path / "ref", resume=True, progress=False)
    assert recorded(tmp_path / "ref") == "numpy"
    # and the resumed numpy run equals an uninterrupted numpy run, bit for bit
    train(TINY, tmp_path / "whole", backend="numpy", progress=False)
    a, b = minih.load_run(tmp_path / "ref"), minih.load_run(tmp_path / "whole")
    assert all((a.params(len(a) - 1)[k] == b.params(len(b) - 1)[k]).all() for k in a.params(0))


def cli_default(command: str) -> str:
    from minih.cli import COMMANDS
    import importlib
    p = argparse.ArgumentParser()
    importlib.import_module(COMMANDS[command][1]).add_arguments(p)
    return p.get_default("backend")


def test_command_line_defaults():
    from minih.app.reproduce import reproduce
    assert cli_default("reproduce") == "numba"
    assert inspect.signature(reproduce).parameters["backend"].default == "numba"
    assert cli_default("train") is None and cli_default("sweep") is None   # minih.train decides
    assert cli_default("analyze") == "numpy" and cli_default("ablate") == "numpy"
