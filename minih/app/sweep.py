"""Sweeps: many training runs (configs x seeds), each an independent task, on one machine or many.

    from minih.app.sweep import grid, run_sweep
    runs = grid(["induction-2l"], {"lr": [1e-3, 3e-3]}, seeds=[0, 1], changes={"steps": 200})
    result = run_sweep(runs, "sweeps/lr")                    # a local Dask cluster (or serial)
    result = run_sweep(runs, "sweeps/lr", scheduler="tcp://10.0.0.5:8786")   # any scheduler
    result.run_dirs                                          # name -> Path of its run directory

    python -m minih sweep induction-2l --set lr=1e-3,3e-3 --seeds 0,1 --steps 200 --out sweeps/lr

A sweep is a list of (name, TrainConfig) pairs. Each run is trained by minih.train into
OUT/<name>/, an ordinary run directory (load_run, analyze and the figures read it as
they read any other), and, with analyze=True, analysed there (OUT/<name>/analysis/).
OUT/sweep.json records the grid and, for each run, its status, where it ran (worker
address and host), how many times it was started and how long it took.

Each run is one task. With Dask's distributed scheduler installed (the optional extra:
pip install "minih[cluster]") the tasks go to a local cluster of worker processes or to
a running scheduler given by address; without it they run one after another in this
process. Both give the same bits: a run's weights depend on its TrainConfig (and seed)
alone, never on where it ran or on how many threads it had (minih/kernels/shards.py).

Rerunning a sweep is safe: a finished run is skipped, an interrupted one continues from
its checkpoint (train(..., resume=True), bit for bit), and one that never wrote a
checkpoint starts over. When a worker dies mid-run the scheduler gives its task to
another worker, which resumes the run from the last checkpoint the dead one wrote;
runs already finished are on disk and are not touched. A run that fails (an error,
or a diverged loss) is reported with its name, and the others go on.

Threads: each worker process runs one task at a time, and a task's kernels use
cores // (tasks running at once on that host) threads, so that workers and kernels
together never ask for more threads than the machine has cores (minih/kernels/threads.py says
how minih uses them).
"""
from __future__ import annotations

import dataclasses
import json
import os
import secrets
import socket
import threading
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlparse

from ..config import ModelConfig
from ..training.checkpoint import CHECKPOINT
from ..training.config import OPTIM_FIELDS, TRAIN_PRESETS, TrainConfig
from ..training.loop import TrainingDiverged, train
from ..training.run import MANIFEST, load_run, save_json
from ..version import __version__

SWEEP_MANIFEST = "sweep.json"
FORMAT = "minih-sweep/1"
GET_PARALLELISM = 'for parallel runs install Dask: pip install "minih[cluster]"'
_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._+=-")
_PROGRESS_SECONDS = 1.0     # a running task reports its step and tokens/s this often


# --- the grid -----------------------------------------------------------------------------

def _value_text(v) -> str:
    """A grid value as it appears in a run's name: short, and never two values alike."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        short = f"{v:g}"
        return short if float(short) == v else repr(v)     # 0.001, but 0.0012345678 in full
    return str(v)


def run_name(preset: str, changes, seed: int) -> str:
    """The name (and folder) of one grid point: PRESET[-KEY=VALUE...]-seedK, e.g.
    induction-2l-lr=0.003-seed1. Characters a file name should not hold become '_'."""
    parts = [preset, *(f"{k}={_value_text(v)}" for k, v in changes), f"seed{seed}"]
    return "".join(c if c in _NAME_CHARS else "_" for c in "-".join(parts))


def _apply(tc: TrainConfig, key: str, value) -> TrainConfig:
    """tc with one field changed: a TrainConfig field, a ModelConfig field, or data.OPTION."""
    train_fields = ({f.name for f in dataclasses.fields(TrainConfig)} - {"model", "data", "optim"}
                    | set(OPTIM_FIELDS))             # the optimizer's fields by name: lr, beta1, ...
    model_fields = {f.name for f in dataclasses.fields(ModelConfig)}
    if key in train_fields:
        return tc.replace(**{key: value})
    if key in model_fields:
        return tc.replace(model=tc.model.replace(**{key: value}))
    if key.startswith("data."):
        option = key[len("data."):]
        if option not in {f.name for f in dataclasses.fields(tc.data)}:
            raise ValueError(f"grid: the data source {tc.data.name!r} has no option {option!r}; "
                             f"options are {sorted(f.name for f in dataclasses.fields(tc.data))}")
        return tc.replace(data=dataclasses.replace(tc.data, **{option: value}))
    raise ValueError(f"grid: unknown field {key!r}; fields are TrainConfig's {sorted(train_fields)}, "
                     f"ModelConfig's {sorted(model_fields)}, and data.OPTION")


def grid(presets, axes: dict | None = None, seeds=(0,), changes: dict | None = None):
    """The (name, TrainConfig) pairs of presets x axes x seeds, in that order.

    presets: preset names (minih/training/presets.py), e.g. ["induction-2l", "induction-1l"].
    axes: field -> list of values, e.g. {"lr": [1e-3, 3e-3], "n_layers": [2, 3]}; every
        combination is one grid point, and each axis appears in the runs' names.
        A field is a TrainConfig field, a ModelConfig field, or data.OPTION.
    seeds: the seeds of every grid point (TrainConfig.seed).
    changes: fields set the same in every run (e.g. {"steps": 200}); not in the names.
    """
    if isinstance(presets, str):
        presets = [presets]
    if not isinstance(presets, (list, tuple)):
        raise ValueError(f"grid: presets must be a preset name or a list of them, got {presets!r}")
    presets = list(presets)
    if not presets:
        raise ValueError("grid: presets is empty; give at least one of " + ", ".join(sorted(TRAIN_PRESETS)))
    for p in presets:
        if p not in TRAIN_PRESETS:
            raise ValueError(f"grid: unknown preset {p!r}; presets are {sorted(TRAIN_PRESETS)}")
    if not isinstance(axes, (dict, type(None))) or not isinstance(changes, (dict, type(None))):
        raise ValueError(f"grid: axes and changes must be dicts (field -> values, field -> value), "
                         f"got {type(axes).__name__} and {type(changes).__name__}")
    axes = dict(axes or {})
    for key, values in axes.items():
        if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
            raise ValueError(f"grid: axis {key!r} must be a list of values, got {values!r}")
        axes[key] = list(values)
        if not axes[key]:
            raise ValueError(f"grid: axis {key!r} has no values")
        if len(set(map(_value_text, axes[key]))) < len(axes[key]):
            raise ValueError(f"grid: axis {key!r} lists a value twice: {axes[key]}")
    given, seeds = seeds, list(seeds) if isinstance(seeds, (list, tuple, range)) else [None]
    if not seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
        raise ValueError(f"grid: seeds must be a non-empty list of ints >= 0, got {given!r}")
    if len(set(seeds)) < len(seeds):
        raise ValueError(f"grid: seeds lists a seed twice: {seeds}")
    points = [[]]
    for key, values in axes.items():
        points = [p + [(key, v)] for p in points for v in values]
    out = []
    for preset in presets:
        base = TrainConfig.preset(preset)
        for key, value in (changes or {}).items():
            base = _apply(base, key, value)
        for point in points:
            for seed in seeds:
                name = run_name(preset, point, seed)
                tc = base
                try:
                    for key, value in point:
                        tc = _apply(tc, key, value)
                    tc = tc.replace(seed=seed)
                except (TypeError, ValueError) as e:     # a value the config refuses
                    raise ValueError(f"grid: run {name}: {e}") from None
                out.append((name, tc))
    return out


def check_runs(runs) -> list[tuple[str, TrainConfig]]:
    """runs as a list of (name, TrainConfig) pairs (a dict name -> TrainConfig is accepted),
    with one-line errors for anything that cannot be a sweep: names must be unique folder names."""
    items = list(runs.items()) if isinstance(runs, dict) else list(runs)
    if not items:
        raise ValueError("run_sweep: runs is empty; give (name, TrainConfig) pairs, e.g. from grid()")
    seen = set()
    for i, item in enumerate(items):
        if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], TrainConfig)):
            raise ValueError(f"run_sweep: runs[{i}] must be a (name, TrainConfig) pair, got {item!r:.80}")
        name = item[0]
        if not isinstance(name, str) or not name or name.startswith(".") or set(name) - _NAME_CHARS:
            raise ValueError(f"run_sweep: runs[{i}] has the name {name!r}; a name is a folder name "
                             f"of letters, digits and . _ + = - (not starting with '.')")
        if name in seen:
            raise ValueError(f"run_sweep: the name {name!r} is given twice")
        seen.add(name)
    return items


class RunInterrupted(RuntimeError):
    """A run's training stopped before its last step (Ctrl-C): its checkpoint is saved."""


# --- one run: the task, on a worker or in this process ----------------------------------------

def _train_json(d) -> str:
    """A train config as canonical JSON, to compare a saved run with a requested one."""
    return json.dumps(json.loads(json.dumps(d, default=str)), sort_keys=True)


def _run_state(run_dir: Path, tc: TrainConfig) -> str:
    """What a run directory holds for `tc`: "new" (nothing, or no readable run), "finished",
    "diverged", "resumable" (stopped early), or a one-line reason why the sweep cannot use
    it (a run of another config). A run of other `steps` counts as another config: extending
    it would not give the run that training with those steps gives (the snapshot steps,
    and a cosine schedule, follow the total), and a sweep promises exactly that run."""
    if not (run_dir / MANIFEST).exists():
        return "new"
    try:
        manifest = load_run(run_dir).manifest
    except ValueError:
        return "new"                     # a start that never completed: train it afresh
    saved = manifest.get("train") or {}
    try:     # through TrainConfig: a run written before a field existed records its default
        saved = TrainConfig.from_dict(saved).to_dict()
    except ValueError:
        pass                             # not a config: it differs from every config below
    if _train_json(saved) != _train_json(tc.to_dict()):
        if {**saved, "steps": tc.steps} == json.loads(_train_json(tc.to_dict())):
            return (f"{run_dir} holds a run of {saved.get('steps')} steps, not {tc.steps}; extend it "
                    f"with `minih train --resume --steps {tc.steps} --out {run_dir}`, or sweep into "
                    f"another folder")
        return (f"{run_dir} holds a run of a different config; move it away or sweep into "
                f"another folder")
    status = manifest.get("status")
    if status in ("finished", "diverged"):
        return status
    return "resumable"


def _analysis_done(run_dir: Path) -> bool:
    try:
        json.loads((run_dir / "analysis" / "analysis.json").read_text())
        return True
    except (OSError, ValueError):
        return False


def _where() -> dict:
    """Where this task runs: the Dask worker's address (or "local") and the host name."""
    try:
        from distributed import get_worker
        address = get_worker().address
    except (ImportError, ValueError):
        address = "local"
    return {"worker": address, "host": socket.gethostname()}


def _set_threads(n: int) -> int:
    """Let minih's kernels use n threads in this task (minih/kernels/threads.py asks numba how many).
    numba.set_num_threads holds for the calling thread, the one the task runs on, and
    cannot exceed NUMBA_NUM_THREADS, read when numba started."""
    import numba
    n = max(1, min(int(n), numba.config.NUMBA_NUM_THREADS))
    numba.set_num_threads(n)
    return n


def _log_event(topic: str | None, msg: dict) -> None:
    """Send a progress message to the client of the sweep (Dask's event log)."""
    if topic is None:
        return
    from distributed import get_worker
    get_worker().log_event(topic, msg)


def run_one(name: str, train_dict: dict, run_dir: str, *, backend: str | None = None,
            analyze: bool = False, checkpoint_every: int | None = None,
            checkpoint_seconds: float = 60.0, threads_by_host: dict | None = None,
            topic: str | None = None, report=None) -> dict:
    """Train (or skip, or resume) one run of a sweep and, if asked, analyse it.

    This is the task: it runs on a Dask worker (topic names the event log that carries
    its progress to the client) or in this process (report(msg) is called instead).
    Returns a record for sweep.json: status ("finished" or "diverged"), action
    ("trained", "resumed", "skipped"), where it ran, seconds, tokens/s. Any other
    error is raised, and the sweep records it as the run's failure.
    """
    t0 = time.perf_counter()
    where = _where()
    send = report if report is not None else (lambda msg: _log_event(topic, msg))
    if threads_by_host is not None:
        host = urlparse(where["worker"]).hostname
        # a worker that joined after the sweep started is not counted: one thread cannot
        # oversubscribe its machine
        where["threads"] = _set_threads(threads_by_host.get(host, 1))
    tc = TrainConfig.from_dict(train_dict)
    run_dir = Path(run_dir)
    send({"name": name, "event": "start", **where})
    state = _run_state(run_dir, tc)
    if state not in ("new", "finished", "diverged", "resumable"):
        raise ValueError(state)
    last = {"t": time.perf_counter(), "step": None}

    def on_step(step, loss):
        now = time.perf_counter()
        if last["step"] is None:
            last.update(t=now, step=step)
        elif now - last["t"] >= _PROGRESS_SECONDS:
            tps = (step - last["step"]) * tc.tokens_per_step / (now - last["t"])
            send({"name": name, "event": "progress", "step": step, "steps": tc.steps,
                  "tokens_per_second": tps})
            last.update(t=now, step=step)

    options = dict(backend=backend, progress=False, checkpoint_seconds=checkpoint_seconds,
                   checkpoint_every=checkpoint_every, on_step=on_step)
    action, diverged = "skipped", None
    try:
        if state == "resumable" and (run_dir / CHECKPOINT).exists():
            action = "resumed"
            result = train(tc, run_dir, resume=True, **options)
        elif state in ("new", "resumable"):             # no checkpoint yet: start over
            action = "trained"
            result = train(tc, run_dir, overwrite=True, **options)
        else:
            result = None
    except TrainingDiverged as e:
        # a result of the sweep, not an error of the task: its run directory keeps the last
        # good weights and says so, and a retry would only diverge again
        result, diverged = None, str(e)
    if result is not None and result.status != "finished":         # Ctrl-C in this process
        raise RunInterrupted(f"training stopped early ({result.status}) at step {result.step}; "
                             f"run the sweep again to continue it")
    run = load_run(run_dir)
    status = "diverged" if run.manifest.get("status") == "diverged" else "finished"
    train_seconds = float(run.manifest.get("timings", {}).get("train_seconds", 0.0))
    steps_done = 0 if run.train_loss is None else len(run.train_loss)
    record = {"status": status, "action": action, **where, "train_seconds": round(train_seconds, 3),
              "tokens_per_second": round(steps_done * tc.tokens_per_step / train_seconds, 1)
              if train_seconds > 0 else None}
    if status == "diverged":
        record["error"] = diverged or f"the loss diverged at step {steps_done + 1} (in an earlier session)"
    if analyze and status == "finished" and (action != "skipped" or not _analysis_done(run_dir)):
        from ..interp.analysis import analyze as analyze_run
        t = time.perf_counter()
        analyze_run(run_dir, backend=backend or "numpy", progress=False)
        record["analysis_seconds"] = round(time.perf_counter() - t, 3)
    record["seconds"] = round(time.perf_counter() - t0, 3)
    return record


# --- the sweep: its record (sweep.json) and its progress bar ------------------------------------

def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


class _Ledger:
    """sweep.json and the progress bar, updated from the tasks' messages and results.

    Dask calls on_message from its own thread while the main thread collects the results,
    so every change holds the lock; sweep.json is rewritten (atomically) on every change
    of a run's status, so a killed client leaves a record that is at most one event old.
    """

    def __init__(self, out: Path, items, where: str, options: dict, progress: bool):
        self.out, self.lock = out, threading.Lock()
        self.path = out / SWEEP_MANIFEST
        old = {}
        if self.path.exists():
            try:
                old = json.loads(self.path.read_text())
            except ValueError:
                old = {}                              # unreadable: the run directories are the truth
        self.previous = old.get("runs", {})            # the records of an earlier invocation
        runs = {name: {"status": "pending"} for name, _ in items}
        self.manifest = {"format": FORMAT, "version": __version__,
                         "grid": {**old.get("grid", {}), **{n: tc.to_dict() for n, tc in items}},
                         "scheduler": where, "options": options, "started": _now(),
                         "runs": {**old.get("runs", {}), **runs}}
        self.names = [name for name, _ in items]
        self.done, self.rates = set(), {}
        self.bar = None
        if progress:
            from tqdm.auto import tqdm
            self.bar = tqdm(total=len(items), desc="sweep", unit="run", dynamic_ncols=True)
        self.save()

    def save(self):
        self.manifest["updated"] = _now()
        save_json(self.path, self.manifest)

    def _say(self, line: str):
        (self.bar.write if self.bar is not None else print)(line)

    def _refresh(self):
        if self.bar is None:
            return
        states = [self.manifest["runs"][n]["status"] for n in self.names]
        running = [n for n in self.names if self.manifest["runs"][n]["status"] == "running"]
        failed = states.count("failed") + states.count("diverged")
        rates = ", ".join(f"{n} {self.rates[n] / 1e3:.1f}k tok/s" for n in running if n in self.rates)
        self.bar.set_postfix_str(f"done {states.count('finished')}, running {len(running)}, "
                                 f"failed {failed}" + (f" | {rates}" if rates else ""))

    def on_message(self, msg: dict):
        """A task's message: {"name", "event": "start" | "progress", ...}."""
        name = msg.get("name")
        with self.lock:
            if name not in self.manifest["runs"] or name in self.done:
                return                                   # late news of a finished task
            if msg["event"] == "start":
                run = self.manifest["runs"][name]
                run.update(status="running", worker=msg["worker"], host=msg["host"],
                           attempts=run.get("attempts", 0) + 1)
                if "threads" in msg:
                    run["threads"] = msg["threads"]
                self.save()
            elif msg["event"] == "progress":
                self.rates[name] = msg["tokens_per_second"]
            self._refresh()

    def on_dask_event(self, event):
        self.on_message(event[1])                        # Dask sends (timestamp, message)

    def finish(self, name: str, record: dict):
        with self.lock:
            run = self.manifest["runs"][name]
            run.pop("error", None)
            run.pop("traceback", None)
            run.update(record)
            self.done.add(name)
            self.save()
            rate = record.get("tokens_per_second")
            what = {"skipped": "already finished", "resumed": "resumed and finished",
                    "trained": "finished"}[record.get("action", "skipped")]
            if record["status"] == "diverged":
                self._say(f"{name}: DIVERGED on {record.get('host', '?')}: {record.get('error')}")
            else:
                self._say(f"{name}: {what}" + ("" if record.get("action") == "skipped" else
                          f" on {record['host']} in {record['seconds']:.1f} s")
                          + (f", {rate / 1e3:.1f}k tokens/s" if rate else ""))
            self._refresh()
            if self.bar is not None:
                self.bar.update(1)

    def fail(self, name: str, error: BaseException):
        with self.lock:
            run = self.manifest["runs"][name]
            run.update(status="failed", error=_one_line(error),
                       traceback="".join(traceback.format_exception(type(error), error,
                                                                    error.__traceback__)))
            self.done.add(name)
            self.save()
            self._say(f"{name}: FAILED" + (f" on {run['host']}" if "host" in run else "")
                      + f": {_one_line(error)}")
            self._refresh()
            if self.bar is not None:
                self.bar.update(1)

    def interrupted(self):
        with self.lock:
            for name in self.names:
                if name not in self.done:
                    self.manifest["runs"][name]["status"] = "interrupted"
            self.save()

    def close(self):
        with self.lock:
            self.manifest["ended"] = _now()
            self.save()
            if self.bar is not None:
                self.bar.close()


@dataclass
class SweepResult:
    """What run_sweep did: out/sweep.json's records, name -> record."""
    out: Path
    records: dict = field(default_factory=dict)

    @property
    def run_dirs(self) -> dict:
        """name -> the run's directory (finished or not: see .failed)."""
        return {name: self.out / name for name in self.records}

    @property
    def failed(self) -> list:
        """The runs that failed or diverged."""
        return [n for n, r in self.records.items() if r["status"] != "finished"]

    def summary(self) -> str:
        n = len(self.records)
        skipped = sum(r.get("action") == "skipped" for r in self.records.values())
        return (f"sweep: {n - len(self.failed)} of {n} runs finished ({skipped} already were), "
                f"{len(self.failed)} failed; runs in {self.out}, record in {self.out / SWEEP_MANIFEST}")


# --- where the tasks run ------------------------------------------------------------------------

def dask_available() -> bool:
    """Whether Dask's distributed scheduler is installed (the extra "minih[cluster]")."""
    try:
        import distributed  # noqa: F401
        return True
    except ImportError:
        return False


def _cores() -> int:
    """The cores this process may use (its CPU affinity where the system says)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:                            # macOS, Windows
        return os.cpu_count() or 1


@contextmanager
def kept_environ():
    """Give this process's environment back as it was when the block began.

    Dask's nanny sets its pre-spawn variables in os.environ of the process it runs in (its
    docs: "even if this means poisoning the process running the Nanny"), which for a local
    cluster is this one. NUMBA_NUM_THREADS=1 left behind broke the reproduction: the next
    Numba compile here re-read it, and Numba refuses a thread count that differs from the
    one its threads started with ("Cannot set NUMBA_NUM_THREADS to a different value once
    the threads have been launched")."""
    before = dict(os.environ)
    try:
        yield
    finally:
        for k in set(os.environ) - set(before):
            del os.environ[k]
        os.environ.update({k: v for k, v in before.items() if os.environ.get(k) != v})


def local_cluster(n_workers: int):
    """A Dask cluster on this machine: n_workers processes of one task each, started with
    NUMBA_NUM_THREADS and OPENBLAS_NUM_THREADS = cores // n_workers (each worker's share
    of the cores, for minih's threads and for BLAS's alike), where you have not set those
    variables yourself, and without Dask's statistical profiler. The variables are set
    before each worker process starts, since OpenBLAS and Numba read them then; this
    process's own environment is given back unchanged (kept_environ), also after the
    cluster restarts a worker, as long as the sweep runs in run_sweep."""
    import logging
    import dask
    from distributed import LocalCluster
    share = str(max(1, _cores() // n_workers))
    env = {"NUMBA_NUM_THREADS": share, "OPENBLAS_NUM_THREADS": share}
    key = "distributed.nanny.pre-spawn-environ"
    # Dask's own defaults go first; then ours; a variable of this process wins over both
    environ = {**dask.config.get(key, default={}), **env, **{k: os.environ[k] for k in env if k in os.environ}}
    # Dask's profiler samples each worker's stack every 10 ms: measured here, 0.5 s of CPU in
    # a worker's other threads while its task's 60 training steps took 2.9 s of CPU; without
    # it, 0.1 s and 1.6 s
    with dask.config.set({key: environ, "distributed.worker.profile.enabled": False}), kept_environ():
        return LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                            dashboard_address=None, silence_logs=logging.ERROR)


def _worker_facts(out: str, token: str) -> dict:
    """Run on every worker before the sweep: what it is, and whether it sees OUT."""
    import numpy
    import minih
    try:
        sees_out = (Path(out) / ".sweep-token").read_text() == token
    except OSError:
        sees_out = False
    return {"host": socket.gethostname(), "cores": _cores(), "minih": minih.__file__,
            "version": __version__, "numpy": numpy.__version__, "sees_out": sees_out}


def _check_workers(client, out: Path) -> dict:
    """Check that the scheduler and every worker can run the tasks (same minih, the workers
    see OUT); return the kernel
    threads of a task on each host: cores // the tasks that host runs at once."""
    import numpy
    import minih
    try:
        # the scheduler unpickles every task it is given, so it needs minih too
        client.run_on_scheduler(_worker_facts, str(out.resolve()), "")
    except Exception as e:
        raise ValueError(f"the scheduler cannot read minih's tasks ({_one_line(e)}); install this "
                         f"minih (with the cluster extra) where the scheduler runs too") from None
    token = secrets.token_hex(8)
    (out / ".sweep-token").write_text(token)
    try:
        facts = client.run(_worker_facts, str(out.resolve()), token)
    except Exception as e:
        raise ValueError(f"the workers cannot run minih's tasks ({_one_line(e)}); install this "
                         f"minih (with the cluster extra) on every worker") from None
    finally:
        (out / ".sweep-token").unlink(missing_ok=True)
    here = socket.gethostname()
    for address, f in facts.items():
        if not f["sees_out"]:
            raise ValueError(f"worker {address} (host {f['host']}) does not see the sweep folder "
                             f"{out.resolve()}: the run directories need a folder that this machine "
                             f"and every worker share, at the same path")
        if f["version"] != __version__ or f["numpy"] != numpy.__version__:
            print(f"warning: worker {address} runs minih {f['version']} with numpy {f['numpy']}, "
                  f"this process minih {__version__} with numpy {numpy.__version__}: its runs may "
                  f"differ in the last bits")
        elif f["host"] == here and f["minih"] != minih.__file__:
            print(f"warning: worker {address} imports minih from {f['minih']}, this process from "
                  f"{minih.__file__}")
    workers = client.scheduler_info()["workers"]
    tasks_on = {}
    for address, w in workers.items():
        host = urlparse(address).hostname
        tasks_on[host] = tasks_on.get(host, 0) + w.get("nthreads", 1)
    cores = {urlparse(a).hostname: f["cores"] for a, f in facts.items()}
    return {host: max(1, cores.get(host, 1) // n) for host, n in tasks_on.items()}


# --- the sweep ------------------------------------------------------------------------------------

def check_scheduler(scheduler) -> None:
    """Refuse a scheduler run_sweep cannot use, before any work: None, "serial", "local", an
    address like tcp://HOST:8786, or a distributed.Client."""
    if isinstance(scheduler, str) and scheduler not in ("serial", "local") and ":" not in scheduler:
        raise ValueError(f"run_sweep: scheduler must be None, 'serial', 'local' or an address like "
                         f"tcp://HOST:8786, got {scheduler!r}")


def run_sweep(runs, out, scheduler=None, *, workers: int | None = None, backend: str | None = None,
              analyze: bool = False, checkpoint_every: int | None = None,
              checkpoint_seconds: float = 60.0, progress: bool = True,
              worker_wait_seconds: float = 60.0) -> SweepResult:
    """Train every run of `runs` (and analyse it, with analyze=True) into out/<name>/.

    runs: (name, TrainConfig) pairs, e.g. from grid() (a dict name -> TrainConfig also works).
    scheduler: None: a local Dask cluster if Dask is installed, else one run after another
        in this process; "local": a local cluster (Dask needed); "serial": in this process;
        an address ("tcp://HOST:8786"): that running scheduler and its workers;
        or a distributed.Client.
    workers: the local cluster's worker processes (default: min(runs, cores)).
    backend, checkpoint_every, checkpoint_seconds: as for minih.train.
    worker_wait_seconds: how long to wait for a scheduler's first worker.
    Returns a SweepResult (also written to out/sweep.json); a failed run does not stop the
    others, and is in result.failed. Ctrl-C stops the sweep (KeyboardInterrupt): running it
    again continues every run from its checkpoint.
    """
    from ..model import get_backend
    items = check_runs(runs)
    if backend is not None:
        get_backend(backend)                         # None: as minih.train chooses
    check_scheduler(scheduler)
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ValueError(f"run_sweep: workers must be an int >= 1, got {workers!r}")
    if workers is not None and scheduler not in (None, "local"):
        raise ValueError(f"run_sweep: workers sets the size of a local cluster; with "
                         f"scheduler={scheduler!r} it has no effect, so leave it out")
    if checkpoint_every is not None and (not isinstance(checkpoint_every, int) or checkpoint_every < 1):
        raise ValueError(f"run_sweep: checkpoint_every must be an int >= 1 or None, got {checkpoint_every!r}")
    if not checkpoint_seconds > 0:
        raise ValueError(f"run_sweep: checkpoint_seconds must be > 0, got {checkpoint_seconds!r}")
    if scheduler is None and not dask_available():
        print(f"Dask is not installed: the {len(items)} runs go one after another in this process; "
              + GET_PARALLELISM)
        scheduler = "serial"
    if scheduler not in (None, "serial") and not dask_available():
        raise ValueError(f"run_sweep: scheduler={scheduler!r} needs Dask; " + GET_PARALLELISM)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    task_options = dict(backend=backend, analyze=analyze, checkpoint_every=checkpoint_every,
                        checkpoint_seconds=checkpoint_seconds)

    # the client sorts out what is done already, so a rerun of a finished sweep starts no task
    todo, known = [], {}
    for name, tc in items:
        state = _run_state(out / name, tc)
        if state in ("finished", "diverged") and (not analyze or state == "diverged"
                                                  or _analysis_done(out / name)):
            known[name] = state
        elif state not in ("new", "finished", "resumable"):
            known[name] = ValueError(state)
        else:
            todo.append((name, tc))

    with kept_environ():       # a local cluster's nanny sets its workers' variables here too
        return _run_sweep(items, todo, known, out, scheduler, workers, worker_wait_seconds,
                          task_options, progress)


def _run_sweep(items, todo, known, out: Path, scheduler, workers, worker_wait_seconds: float,
               task_options: dict, progress: bool) -> SweepResult:
    """run_sweep's work, once the runs are sorted into todo (to train) and known (finished,
    diverged, or unusable)."""
    client = cluster = None
    if scheduler == "serial" or not todo:
        where = "this process" if todo else "nothing to run"
    else:
        from distributed import Client
        if scheduler is None or scheduler == "local":
            n = workers or max(1, min(len(todo), _cores()))
            cluster = local_cluster(n)
            client, where = Client(cluster), f"local cluster of {n} worker processes"
        elif isinstance(scheduler, str):
            try:
                client = Client(scheduler, timeout="20s")
            except (OSError, TimeoutError) as e:
                raise ValueError(f"run_sweep: cannot reach the scheduler at {scheduler} "
                                 f"({_one_line(e)}); start one with `dask scheduler`") from None
            where = scheduler
        else:
            client, where = scheduler, str(scheduler.scheduler.address)
    ledger = None
    try:
        if client is not None:
            try:
                client.wait_for_workers(1, timeout=worker_wait_seconds)
            except TimeoutError:
                raise ValueError(f"run_sweep: no worker joined the scheduler at {where} in "
                                 f"{worker_wait_seconds:g} s; start some with `dask worker {where}`") from None
            threads_by_host = _check_workers(client, out)
        ledger = _Ledger(out, items, where, {**task_options, "scheduler": str(scheduler)}, progress)
        for name, state in known.items():
            if isinstance(state, Exception):
                ledger.fail(name, state)
            else:
                old = ledger.previous.get(name, {})
                ledger.finish(name, {**{k: v for k, v in old.items() if k not in ("status", "action")},
                                     "status": state, "action": "skipped",
                                     **({"error": old.get("error", "the loss diverged")}
                                        if state == "diverged" else {})})
        if client is None:
            _serial(todo, out, task_options, ledger)
        else:
            _on_dask(todo, out, task_options, ledger, client, threads_by_host)
    except KeyboardInterrupt:
        if ledger is not None:
            ledger.interrupted()
        raise
    finally:
        if ledger is not None:
            ledger.close()
        if cluster is not None:
            client.close()
            cluster.close()
        elif client is not None and isinstance(scheduler, str):
            client.close()
    return SweepResult(out, {name: dict(ledger.manifest["runs"][name]) for name, _ in items})


def _serial(todo, out: Path, options: dict, ledger: _Ledger) -> None:
    """Each run in this process, one after another (the path without Dask)."""
    for name, tc in todo:
        try:
            record = run_one(name, tc.to_dict(), str(out / name), report=ledger.on_message, **options)
        except RunInterrupted:
            raise KeyboardInterrupt from None
        except Exception as e:                          # the run's own failure: the others go on
            ledger.fail(name, e)
        else:
            ledger.finish(name, record)


def _on_dask(todo, out: Path, options: dict, ledger: _Ledger, client, threads_by_host: dict) -> None:
    """Each run as one task on the Dask cluster of `client`, results as they come.

    A task whose worker dies is given to another worker by the scheduler (up to Dask's
    distributed.scheduler.allowed-failures times); it resumes the run from its checkpoint."""
    from distributed import as_completed
    token = secrets.token_hex(4)
    topic = f"minih-sweep-{token}"                   # this sweep's messages only
    client.subscribe_topic(topic, ledger.on_dask_event)
    futures = {}
    try:
        for name, tc in todo:
            f = client.submit(run_one, name, tc.to_dict(), str((out / name).resolve()),
                              threads_by_host=threads_by_host, topic=topic, key=f"{name}-{token}",
                              pure=False, **options)
            futures[f] = name
        for f in as_completed(futures):
            try:
                record = f.result()
            except Exception as e:                      # includes a task whose workers kept dying
                ledger.fail(futures[f], e)
            else:
                ledger.finish(futures[f], record)
    finally:
        client.cancel(list(futures))
        client.unsubscribe_topic(topic)
