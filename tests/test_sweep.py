"""Sweeps (minih/app/sweep.py, `minih sweep`): a grid of runs as independent tasks, on a local
Dask cluster or serially, gives exactly the runs that minih.train gives one by one; a
rerun trains nothing; a killed worker loses no finished run; bad grids get one-line errors.

The Dask tests skip where Dask is not installed (the optional extra "minih[cluster]"); the
serial path, which is what runs then, is tested whatever is installed.
"""
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import minih
from minih.app import sweep as S
from minih.cli import main

# tiny runs: a second or less each on 2 cores
TINY = {"steps": 20, "batch": 8, "n_eval": 8, "log_snapshots": 4, "linear_snapshots": 2,
        "d_model": 16, "d_head": 4, "n_heads": 2}


def tiny_grid(**changes):
    """induction-2l, two lrs x two seeds."""
    return S.grid(["induction-2l"], {"lr": [1e-3, 3e-3]}, seeds=[0, 1], changes={**TINY, **changes})


def assert_same_run(a_dir, b_dir):
    """Two run directories hold the same training, bit for bit."""
    a, b = minih.load_run(a_dir), minih.load_run(b_dir)
    assert a.manifest["status"] == b.manifest["status"] == "finished"
    assert np.array_equal(a.steps, b.steps)
    assert np.array_equal(a.losses, b.losses)
    assert np.array_equal(a.train_loss, b.train_loss)
    for i in range(len(a)):
        pa, pb = a.params(i), b.params(i)
        assert pa.keys() == pb.keys()
        for k in pa:
            assert np.array_equal(pa[k], pb[k]), (a_dir, i, k)


@pytest.fixture(scope="module")
def one_by_one(tmp_path_factory):
    """The reference: every run of tiny_grid() trained by minih.train, one after another."""
    out = tmp_path_factory.mktemp("one_by_one")
    for name, tc in tiny_grid():
        minih.train(tc, out / name, progress=False)
    return out


def read_manifest(out):
    return json.loads((out / "sweep.json").read_text())


# --- the grid and its names ---------------------------------------------------------------------

def test_grid_names_and_configs():
    runs = tiny_grid()
    assert [n for n, _ in runs] == ["induction-2l-lr=0.001-seed0", "induction-2l-lr=0.001-seed1",
                                    "induction-2l-lr=0.003-seed0", "induction-2l-lr=0.003-seed1"]
    (_, first), (_, last) = runs[0], runs[-1]
    assert (first.optim.lr, first.seed, last.optim.lr, last.seed) == (1e-3, 0, 3e-3, 1)
    assert first.model.d_model == 16 and first.steps == 20          # changes reach the model too
    # data.OPTION and model fields as axes
    more = S.grid("induction-1l", {"data.max_len": [8], "n_layers": [1, 2]}, seeds=[3])
    assert [n for n, _ in more] == ["induction-1l-data.max_len=8-n_layers=1-seed3",
                                    "induction-1l-data.max_len=8-n_layers=2-seed3"]
    assert more[1][1].data.max_len == 8 and more[1][1].model.n_layers == 2


def test_command_line_builds_the_same_grid(tmp_path, capsys):
    """`minih sweep --set lr=1e-3,3e-3` names and configures its runs as grid() does."""
    from minih.cli.sweep import build_grid, parse_axes
    sets = ["lr=1e-3,3e-3"] + [f"{k}={v}" for k, v in TINY.items() if k != "steps"]
    cli = build_grid(["induction-2l"], parse_axes(sets), [0, 1], steps=20)
    api = S.grid(["induction-2l"], {"lr": [1e-3, 3e-3], **{k: [v] for k, v in TINY.items() if k != "steps"}},
                 seeds=[0, 1], changes={"steps": 20})
    assert cli == api
    assert main(["sweep", "induction-2l", *sum((["--set", s] for s in sets), []), "--seeds", "0,1",
                 "--steps", "20", "--out", str(tmp_path), "--dry-run"]) == 0
    assert capsys.readouterr().out.count("induction-2l-lr=") == 4
    assert not any(tmp_path.iterdir())                                    # a dry run trains nothing


BAD_GRIDS = [
    (lambda: S.grid([], {}), "presets is empty"),
    (lambda: S.grid(["induction-9l"]), "unknown preset 'induction-9l'"),
    (lambda: S.grid(["induction-2l"], {"lr": 3e-3}), "axis 'lr' must be a list of values, got 0.003"),
    (lambda: S.grid(["induction-2l"], {"lr": []}), "axis 'lr' has no values"),
    (lambda: S.grid(["induction-2l"], {"lrr": [1e-3]}), "unknown field 'lrr'"),
    (lambda: S.grid(["induction-2l"], {"data.foo": [1]}), "has no option 'foo'"),
    (lambda: S.grid(["induction-2l"], {"lr": [-1.0]}), "run induction-2l-lr=-1-seed0: AdamWConfig.lr must be >= 0"),
    (lambda: S.grid(["induction-2l"], seeds=[0, -1]), "seeds must be a non-empty list of ints >= 0"),
    (lambda: S.grid(["induction-2l"], seeds=[1, 1]), "lists a seed twice"),
    (lambda: S.grid(["induction-2l"], seeds=3), "seeds must be a non-empty list of ints >= 0, got 3"),
    (lambda: S.grid(None), "presets must be a preset name or a list of them, got None"),
    (lambda: S.grid(["induction-2l"], [("lr", [1e-3])]), "axes and changes must be dicts"),
    (lambda: S.run_sweep([], "x"), "runs is empty"),
    (lambda: S.run_sweep([("a", 3)], "x"), "runs[0] must be a (name, TrainConfig) pair"),
    (lambda: S.run_sweep([("../a", minih.TrainConfig())], "x"), "has the name '../a'"),
    (lambda: S.run_sweep([("a", minih.TrainConfig())] * 2, "x"), "the name 'a' is given twice"),
    (lambda: S.run_sweep(tiny_grid(), "x", scheduler="fast"), "scheduler must be None, 'serial', 'local'"),
    (lambda: S.run_sweep(tiny_grid(), "x", workers=0), "workers must be an int >= 1, got 0"),
    (lambda: S.run_sweep(tiny_grid(), "x", "serial", workers=2), "workers sets the size of a local cluster"),
    (lambda: S.run_sweep(tiny_grid(), "x", backend="torch"), "torch"),
]


@pytest.mark.parametrize("make, message", BAD_GRIDS, ids=[m for _, m in BAD_GRIDS])
def test_bad_grid_input_is_one_line(make, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError) as e:
        make()
    assert message in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "x").exists()                   # refused before anything was written


@pytest.mark.parametrize("argv, message", [
    (["nope"], "unknown preset 'nope'"),
    (["induction-2l", "--seeds", "0,x"], "--seeds expects comma-separated ints"),
    (["induction-2l", "--set", "lr"], "--set expects KEY=VALUE or KEY=V1,V2"),
    (["induction-2l", "--set", "lr=1,abc"], "--set lr: 'abc' is not a valid float"),
    (["induction-2l", "--set", "lr=1", "--set", "lr=2"], "--set lr is given twice"),
    (["induction-2l", "--workers", "0"], "--workers must be >= 1, got 0"),
    (["induction-2l", "--workers", "2", "--scheduler", "serial"], "--workers sets the size of a local cluster"),
    (["induction-2l", "--scheduler", "fast"], "--scheduler expects an address like tcp://HOST:8786"),
])
def test_bad_command_line_is_one_line(argv, message, capsys, tmp_path):
    assert main(["sweep", *argv, "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


# --- the serial path (what runs without Dask) ---------------------------------------------------

def test_without_dask_the_serial_path_gives_the_same_runs(one_by_one, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(S, "dask_available", lambda: False)          # as if the extra were missing
    result = S.run_sweep(tiny_grid(), tmp_path, progress=False)
    said = capsys.readouterr().out
    assert 'Dask is not installed' in said and 'pip install "minih[cluster]"' in said
    assert result.failed == [] and set(result.run_dirs) == {n for n, _ in tiny_grid()}
    for name, run_dir in result.run_dirs.items():
        assert_same_run(run_dir, one_by_one / name)
    m = read_manifest(tmp_path)
    assert m["scheduler"] == "this process"
    for name, tc in tiny_grid():
        run = m["runs"][name]
        assert (run["status"], run["action"], run["worker"], run["attempts"]) == ("finished", "trained", "local", 1)
        assert run["seconds"] > 0 and run["tokens_per_second"] > 0
        assert m["grid"][name] == json.loads(json.dumps(tc.to_dict()))
    # the scheduler is only needed with Dask, and says so
    with pytest.raises(ValueError, match=r'scheduler=.tcp://h:1. needs Dask; .*pip install'):
        S.run_sweep(tiny_grid(), tmp_path, scheduler="tcp://h:1")


def test_rerun_of_a_finished_sweep_trains_nothing(tmp_path, monkeypatch):
    runs = tiny_grid()[:2]
    S.run_sweep(runs, tmp_path, scheduler="serial", progress=False)
    files = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.name != "sweep.json"}

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    def no_cluster(*args, **kwargs):
        raise AssertionError("a cluster was started with nothing to run")

    monkeypatch.setattr(S, "train", no_training)
    monkeypatch.setattr(S, "local_cluster", no_cluster)
    result = S.run_sweep(runs, tmp_path, scheduler=None, progress=False)   # Dask or not
    assert result.failed == []
    assert [r["action"] for r in result.records.values()] == ["skipped", "skipped"]
    assert {p: p.stat().st_mtime_ns for p in files} == files                # not a file rewritten
    assert read_manifest(tmp_path)["runs"][runs[0][0]]["worker"] == "local" # where it ran, kept
    # other steps are another run (its snapshot steps differ): refused, not extended
    longer = [(name, tc.replace(steps=30)) for name, tc in runs]
    result = S.run_sweep(longer, tmp_path, scheduler="serial", progress=False)
    assert result.failed == [name for name, _ in runs]
    assert "holds a run of 20 steps, not 30; extend it with `minih train --resume --steps 30" \
        in result.records[runs[0][0]]["error"]


def test_analyze_adds_the_analysis_once(tmp_path, monkeypatch):
    """--analyze on a finished sweep analyses its runs without training them; again, nothing."""
    runs = tiny_grid()[:1]
    [name] = [n for n, _ in runs]
    S.run_sweep(runs, tmp_path, scheduler="serial", progress=False)
    assert not (tmp_path / name / "analysis").exists()
    monkeypatch.setattr(S, "train", lambda *a, **k: pytest.fail("a finished run was trained again"))
    record = S.run_sweep(runs, tmp_path, scheduler="serial", analyze=True, progress=False).records[name]
    assert record["action"] == "skipped" and record["analysis_seconds"] > 0
    written = tmp_path / name / "analysis" / "analysis.json"
    assert len(json.loads(written.read_text())["snapshots"]) == len(minih.load_run(tmp_path / name))
    when = written.stat().st_mtime_ns
    S.run_sweep(runs, tmp_path, scheduler="serial", analyze=True, progress=False)
    assert written.stat().st_mtime_ns == when                    # already there: not redone


def test_interrupted_runs_are_resumed_or_restarted(one_by_one, tmp_path):
    """A run stopped with a checkpoint continues from it; one stopped before its first
    checkpoint starts over; both end as if trained in one go."""
    (a, tc_a), (b, tc_b) = tiny_grid()[:2]
    minih.train(tc_a, tmp_path / a, stop_after=7, progress=False)
    minih.train(tc_b, tmp_path / b, stop_after=7, progress=False)
    (tmp_path / b / "checkpoint.npz").unlink()
    result = S.run_sweep([(a, tc_a), (b, tc_b)], tmp_path, scheduler="serial", progress=False)
    assert result.records[a]["action"] == "resumed" and result.records[b]["action"] == "trained"
    assert_same_run(tmp_path / a, one_by_one / a)
    assert_same_run(tmp_path / b, one_by_one / b)


def test_a_failed_run_is_named_and_the_others_go_on(tmp_path, monkeypatch, capsys):
    (a, tc_a), (b, tc_b), (c, tc_c) = tiny_grid()[:3]
    minih.train(tc_c.replace(seed=9), tmp_path / c, progress=False)       # c's folder: another run
    real_train = S.train

    def train_failing_a(tc, out, **kwargs):
        if out.name == a:
            raise RuntimeError("the disk is full")
        return real_train(tc, out, **kwargs)

    monkeypatch.setattr(S, "train", train_failing_a)
    result = S.run_sweep([(a, tc_a), (b, tc_b), (c, tc_c)], tmp_path, scheduler="serial", progress=False)
    assert result.failed == [a, c]
    assert result.records[b]["status"] == "finished"
    said = capsys.readouterr().out
    assert f"{a}: FAILED on" in said and "RuntimeError: the disk is full" in said
    assert f"{c}: FAILED: ValueError: {tmp_path / c} holds a run of a different config" in said
    m = read_manifest(tmp_path)
    assert m["runs"][a]["status"] == "failed" and "the disk is full" in m["runs"][a]["traceback"]
    assert minih.load_run(tmp_path / c).manifest["seed"] == 9               # left as it was
    # the command line: exit code 1, and the failures listed by name
    from minih.cli.sweep import build_grid, parse_axes
    sets = [f"{k}={v}" for k, v in TINY.items() if k != "steps"]
    [(name, tc)] = build_grid(["induction-2l"], parse_axes(sets), [0], steps=20)
    minih.train(tc.replace(lr=0.01), tmp_path / "cli" / name, progress=False)
    assert main(["sweep", "induction-2l", *sum((["--set", s] for s in sets), []), "--steps", "20",
                 "--scheduler", "serial", "--out", str(tmp_path / "cli"), "--no-progress"]) == 1
    assert f"  {name}: failed: ValueError: {tmp_path / 'cli' / name} holds a run of a different config" \
        in capsys.readouterr().out


def test_a_diverged_run_is_a_result_not_retried(tmp_path, capsys):
    runs = S.grid(["induction-2l"], {"lr": [1e30]}, seeds=[0], changes=TINY)   # NaN at step 2
    [name] = [n for n, _ in runs]
    for action in ("trained", "skipped"):                # a rerun does not train it again
        result = S.run_sweep(runs, tmp_path, scheduler="serial", progress=False)
        assert result.failed == [name]
        record = result.records[name]
        assert (record["status"], record["action"]) == ("diverged", action)
        assert record["error"].startswith("training diverged at step 2: loss is nan")
        assert f"{name}: DIVERGED on" in capsys.readouterr().out


# --- on Dask ------------------------------------------------------------------------------------

def test_local_cluster_equals_one_by_one(one_by_one, tmp_path):
    pytest.importorskip("distributed", reason="Dask is not installed (pip install \"minih[cluster]\"); "
                                              "the serial path is tested above")
    result = S.run_sweep(tiny_grid(), tmp_path, workers=2, progress=False)
    assert result.failed == []
    for name, run_dir in result.run_dirs.items():
        assert_same_run(run_dir, one_by_one / name)
    m = read_manifest(tmp_path)
    assert m["scheduler"] == "local cluster of 2 worker processes"
    for run in m["runs"].values():
        assert run["worker"].startswith("tcp://") and run["attempts"] == 1
        assert run["threads"] == max(1, S._cores() // 2)      # the cores shared by the two workers


def test_a_local_cluster_leaves_this_process_as_it_was(tmp_path):
    # Dask's nanny sets its workers' NUMBA_NUM_THREADS in the process it runs in; left there,
    # the next Numba compile in this process re-read it and failed ("Cannot set
    # NUMBA_NUM_THREADS to a different value once the threads have been launched"), which
    # stopped `reproduce --seeds 3` after training. Run in a fresh process, so that Numba's
    # threads start here, before the sweep, as they did in the reproduction.
    pytest.importorskip("distributed", reason="Dask is not installed (pip install \"minih[cluster]\"); "
                                              "the serial path is tested above")
    script = f"""
import os, numba
from minih.app import sweep as S
TINY = {TINY!r}
grid = S.grid(["induction-2l"], {{"lr": [1e-3, 3e-3]}}, seeds=[0, 1], changes=TINY)
before = dict(os.environ)
n = numba.get_num_threads()                 # Numba's threads start now
result = S.run_sweep(grid, {str(tmp_path)!r}, workers=2, progress=False)
assert result.failed == [], result.failed
assert dict(os.environ) == before, set(os.environ.items()) ^ set(before.items())
f = numba.njit(lambda x: x + 1)             # a compile re-reads Numba's settings
assert f(1) == 2 and numba.get_num_threads() == n
print("ok")
"""
    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    env["PYTHONPATH"] = str(root) + os.pathsep + env.get("PYTHONPATH", "")
    res = subprocess.run([sys.executable, "-c", script], cwd=root, env=env, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0 and res.stdout.strip().endswith("ok"), res.stderr[-2000:]


@pytest.mark.slow
def test_a_killed_worker_loses_nothing(tmp_path, tmp_path_factory):
    """SIGKILL the worker of a run after its first checkpoint: the scheduler gives the task to
    another worker, which resumes the run; every run ends equal to one trained in one go."""
    pytest.importorskip("distributed", reason="Dask is not installed (pip install \"minih[cluster]\"); "
                                              "the serial path is tested above")
    from distributed import Client
    (long, tc_long), (short, tc_short) = tiny_grid(steps=300)[0], tiny_grid()[1]
    cluster = S.local_cluster(2)
    client = Client(cluster)
    try:
        pids = client.run(os.getpid)
        # the workers import this minih, and start with their share of the cores for minih's
        # threads and BLAS's, and no Dask profiler (where this process has not set the variables)
        assert set(client.run(lambda: __import__("minih").__file__).values()) == {minih.__file__}
        share = str(max(1, S._cores() // 2))
        expected = {"NUMBA_NUM_THREADS": share, "OPENBLAS_NUM_THREADS": share}
        expected = {k: os.environ.get(k, v) for k, v in expected.items()}
        env = client.run(lambda: ({k: os.environ.get(k) for k in expected},
                                  __import__("dask").config.get("distributed.worker.profile.enabled")))
        assert list(env.values()) == [(expected, False)] * 2
        done = {}
        sweep = threading.Thread(target=lambda: done.update(result=S.run_sweep(
            [(long, tc_long), (short, tc_short)], tmp_path, scheduler=cluster.scheduler_address,
            checkpoint_every=10, progress=False)))
        sweep.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if (tmp_path / long / "checkpoint.npz").exists():
                worker = read_manifest(tmp_path)["runs"][long].get("worker")
                if worker in pids:
                    break
            time.sleep(0.02)
        else:
            pytest.fail("the long run never wrote a checkpoint")
        os.kill(pids[worker], signal.SIGKILL)
        sweep.join(120)
        assert not sweep.is_alive()
    finally:
        client.close()
        cluster.close()
    result = done["result"]
    assert result.failed == []
    record = result.records[long]
    assert record["attempts"] == 2 and record["action"] == "resumed"
    reference = tmp_path_factory.mktemp("reference")
    for name, tc in ((long, tc_long), (short, tc_short)):
        minih.train(tc, reference / name, progress=False)
        assert_same_run(tmp_path / name, reference / name)


def test_a_run_written_before_a_config_field_existed_counts_as_the_same(tmp_path):
    # minih 0.1.0's run.json has no d_mlp (nor the MLP init scales): the run holds the
    # config with those fields at their defaults, so the sweep keeps it
    [(a, tc_a)] = tiny_grid()[:1]
    minih.train(tc_a, tmp_path / a, progress=False)
    manifest = json.loads((tmp_path / a / "run.json").read_text())
    for key in ("d_mlp", "init_mlp_in_std", "init_mlp_out_std"):
        del manifest["train"]["model"][key]
    (tmp_path / a / "run.json").write_text(json.dumps(manifest))
    result = S.run_sweep([(a, tc_a)], tmp_path, scheduler="serial", progress=False)
    assert result.records[a]["action"] == "skipped" and not result.failed
    # a real difference still counts
    result = S.run_sweep([(a, tc_a.replace(model=tc_a.model.replace(d_mlp=4)))], tmp_path,
                         scheduler="serial", progress=False)
    assert result.failed == [a]
