"""The training loop: AdamW on the params dict, with snapshots a student can watch.

    tc = minih.TrainConfig.preset("induction-2l")          # model + data + optimizer + schedule
    result = minih.train(tc, out="runs/induction-2l")      # writes a run directory
    run = minih.load_run("runs/induction-2l")

Each step is three lines of `train`: draw a batch from the data source with the
run's Generator; `minih.optim.train_step` (loss and gradients, backend "numpy" or
"numba", then an AdamW update at the scheduled learning rate); stop if the loss or
the gradient is not finite. Around them, small helpers keep the record: at the
snapshot steps (log-spaced and linearly spaced, `snapshot_steps`) the params and the
per-token losses of the fixed evaluation set go into the run directory
(minih/training/run.py); a checkpoint (minih/training/checkpoint.py: params, optimizer
moments, the Generator's state) lets `resume=True` continue bit for bit.

One process writes a run directory at a time (a lock file; a second writer gets
RunInUse). Ctrl-C or SIGTERM end a session cleanly: the current step finishes, a
checkpoint is written, train returns with status "interrupted"; more interrupts
meanwhile are noted, not obeyed, so they cannot break the checkpoint.

Learning rate at step t (0-based, t = number of updates already taken):
    warmup:   lr * (t + 1) / warmup                        for t < warmup
    constant: lr                                           afterwards
    cosine:   lr * (f + (1 - f) * (1 + cos(pi * p)) / 2),  p = (t - warmup) / (steps - warmup),
              f = min_lr_frac

Shape legend: B = batch, T = positions (seq_len), N = evaluation sequences
"""
from __future__ import annotations

import dataclasses
import json
import math
import signal
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .memory import kept_freed_memory
from ..model import get_backend, per_token_losses
from ..optim import adamw_init, train_step
from ..params import check_params, init_params
from .checkpoint import load_checkpoint, save_checkpoint
from .config import TrainConfig
from .run import MANIFEST, TRAIN_LOSS, RunWriter, load_run, save_npy, writer_lock


def learning_rate(tc: TrainConfig, t: int) -> float:
    """The learning rate of update t (0-based), see the module docstring."""
    lr = tc.optim.lr
    if t < tc.warmup:
        return lr * (t + 1) / tc.warmup
    if tc.schedule == "constant":
        return lr
    p = min(1.0, (t - tc.warmup) / max(1, tc.steps - tc.warmup))
    return lr * (tc.min_lr_frac + (1 - tc.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * p)))


def snapshot_steps(steps: int, n_log: int, n_linear: int) -> list[int]:
    """Sorted unique steps: 0, `steps`, n_log log-spaced in [1, steps], n_linear evenly spaced.

    Log spacing shows the early steps where much happens fast; linear spacing keeps
    the later part of training from being sampled only sparsely.
    """
    out = {0, steps}
    if n_log:
        out.update(int(round(s)) for s in np.geomspace(1, steps, n_log))
    if n_linear:
        out.update(int(round(s)) for s in np.linspace(0, steps, n_linear + 1))
    return sorted(out)


class TrainingDiverged(RuntimeError):
    """The loss or gradient became NaN/inf; `.step` is the update that failed."""

    def __init__(self, message: str, step: int):
        super().__init__(message)
        self.step = step


@dataclass
class TrainResult:
    path: Path
    step: int                 # updates done
    tokens_seen: int
    final_loss: float         # training loss of the last step
    eval_loss: float          # mean eval loss at the last snapshot
    seconds: float            # wall time of the training steps (all sessions)
    status: str               # "finished", "interrupted", "stopped" (stop_after)

    def summary(self) -> str:
        tps = self.tokens_seen / self.seconds if self.seconds > 0 else float("nan")
        return (f"{self.status}: {self.step} steps, {self.tokens_seen / 1e6:.2f}M tokens in "
                f"{self.seconds:.1f} s ({tps / 1e3:.1f}k tokens/s); last train loss "
                f"{self.final_loss:.4f}, eval loss {self.eval_loss:.4f}; run in {self.path}")


@dataclass
class Snapshot:
    """What train() hands to on_snapshot after storing a snapshot."""
    step: int
    tokens_seen: int
    seconds: float            # training seconds so far
    params: dict              # the live weights: read them during the call only
    eval_tokens: np.ndarray   # [N, T] the run's evaluation set
    losses: np.ndarray        # [N, T-1] its per-token losses at this step


@dataclass
class TrainState:
    """Everything a checkpoint holds: with the TrainConfig, enough to continue bit for bit."""
    params: dict
    opt_state: dict                       # AdamW moments and step count (minih.optim)
    rng: np.random.Generator              # draws the training batches
    step: int = 0                         # updates done
    tokens_seen: int = 0
    train_loss: list = field(default_factory=list)   # the loss of every update
    seconds: float = 0.0                  # wall time of the training steps, all sessions

    @classmethod
    def fresh(cls, tc: TrainConfig) -> "TrainState":
        params = init_params(tc.model, tc.seed)
        # the batches' Generator: its own stream, spawned from the seed, so the weights'
        # init (seed) and the data order are independent but both fixed by `seed`
        return cls(params, adamw_init(params), np.random.default_rng([tc.seed, 1]))

    def advance(self, loss: float, tokens: int, seconds: float) -> None:
        """Count one update that reached `loss` on `tokens` tokens in `seconds`."""
        self.step += 1
        self.tokens_seen += tokens
        self.train_loss.append(loss)
        self.seconds += seconds


# the backend a new run trains on: the fast twin (the numpy reference is always selectable)
DEFAULT_BACKEND = "numba"


def train(tc: TrainConfig | None = None, out=None, *, resume: bool = False, backend: str | None = None,
          overwrite: bool = False, progress: bool = True, checkpoint_every: int | None = None,
          checkpoint_seconds: float = 60.0, stop_after: int | None = None, on_step=None,
          on_snapshot=None) -> TrainResult:
    """Train `tc` and record it in the run directory `out`; return a TrainResult.

    resume: continue the run in `out` from its checkpoint (tc may be None: the run's own
        config is used; a given tc may only differ in `steps`). The weights at every step
        equal those of an uninterrupted run with the same config and seed, bit for bit.
    backend: "numba" (the default for a new run: the fast twin) or "numpy" (the readable
        reference); None when resuming means the backend the run was trained on, so that
        the bits stay those of an uninterrupted run.
    overwrite: start over in `out` even if it holds a run (its files, and the analyze and
        ablate results written into it, are deleted first).
    checkpoint_every / checkpoint_seconds: write a checkpoint every that many steps (if
        given) and whenever that many seconds have passed; always at the end and on
        Ctrl-C or SIGTERM.
    stop_after: end this session after that many steps (as if interrupted) - for tests.
    on_step(step, loss): called after every update.
    on_snapshot(snapshot): called after every snapshot is stored, with a Snapshot (step,
        tokens seen, training seconds, the params - live: read them, do not keep or change
        them - the eval tokens and their per-token losses [N, T-1]); `minih watch` scores
        prefix matching and the ICL score from it as the run goes.
    Raises TrainingDiverged (after saving the last good weights as a snapshot) if the
    loss or gradient stops being finite, RunInUse if another process writes `out`.
    """
    if backend is None:
        backend = _recorded_backend(out) if resume else DEFAULT_BACKEND
    out = _check_session(out, backend, checkpoint_every, checkpoint_seconds, stop_after)
    with writer_lock(out), _Interrupts() as interrupts:
        tc, state, writer = _resume(out, tc) if resume else _start(out, tc, backend, overwrite)
        record = _Recorder(writer, tc, backend, checkpoint_every, checkpoint_seconds, state.step,
                           on_snapshot)
        record.snapshot(state)
        end = tc.steps if stop_after is None else min(tc.steps, state.step + stop_after)
        check_params(state.params, tc.model)      # once: after this only our updates change them
        # the numba backend keeps the weights in its whole-step kernel's layout between
        # steps (training/fused.py: the same bits as train_step); fused.sync writes them
        # back into state.params before anything reads them
        fused = None
        if backend == "numba":            # (imported here: the numpy backend never loads Numba)
            from .fused import FusedTraining
            if FusedTraining.applies(tc.batch, tc.T):
                fused = FusedTraining(state.params, state.opt_state, tc.model)
        # kept_freed_memory: each step reuses the memory the last one freed (training/memory.py)
        with _Progress(progress, tc.steps, state.step, out.name) as bar, kept_freed_memory():
            while state.step < end and not interrupts.received:
                t0 = time.perf_counter()
                tokens = tc.data.sample(state.rng, tc.batch, tc.T)                      # [B,T]
                lr = learning_rate(tc, state.step)
                if fused is None:
                    loss, norm = train_step(state.params, state.opt_state, tokens, tc.model,
                                            tc.optim, lr=lr, backend=backend, check=False)
                else:
                    loss, norm = fused.step(tokens, tc.optim, lr=lr)
                if not (math.isfinite(loss) and math.isfinite(norm)):
                    if fused is not None:                     # (unchanged by this step)
                        fused.sync(state.params, state.opt_state)
                    record.diverged(state, loss, lr)                                    # raises
                state.advance(loss, tc.tokens_per_step, time.perf_counter() - t0)
                bar.update(loss, tc.tokens_per_step)
                if on_step is not None:
                    on_step(state.step, loss)
                checkpoint = record.checkpoint_due(state)
                if fused is not None and (checkpoint or record.snapshot_due(state)):
                    fused.sync(state.params, state.opt_state)
                record.snapshot(state)
                if checkpoint:
                    record.checkpoint(state, "running")
        if fused is not None:
            fused.sync(state.params, state.opt_state)
        status = ("finished" if state.step == tc.steps else
                  "interrupted" if interrupts.received else "stopped")
        record.checkpoint(state, status)
        return record.result(state, status)


# --- around the step: the run directory, interrupts, progress ------------------------------

class _Recorder:
    """The run directory's side of training: snapshots at the planned steps, checkpoints
    when due (every `every` steps if given, and every `seconds` of wall time) and at the end."""

    def __init__(self, writer: RunWriter, tc: TrainConfig, backend: str, every: int | None,
                 seconds: float, step: int, on_snapshot=None):
        self.writer, self.tc, self.backend, self.on_snapshot = writer, tc, backend, on_snapshot
        self.plan = set(snapshot_steps(tc.steps, tc.log_snapshots, tc.linear_snapshots))
        self.every, self.seconds = every, seconds
        self.last_step, self.last_time = step, time.perf_counter()
        self.eval_seconds = float(writer.manifest.get("timings", {}).get("eval_seconds", 0.0))

    @property
    def out(self) -> Path:
        return self.writer.path

    def snapshot(self, s: TrainState, planned_only: bool = True) -> None:
        """Store the params and the eval set's per-token losses at this step (once)."""
        if (planned_only and s.step not in self.plan) or s.step in self.writer.steps:
            return
        t0 = time.perf_counter()
        with np.errstate(over="ignore", invalid="ignore"):       # huge weights: losses, not warnings
            losses = per_token_losses(s.params, self.writer.eval_tokens, self.tc.model,
                                      backend=self.backend)      # [N,T-1]
        self.writer.add_snapshot(s.step, s.tokens_seen, s.params, losses, seconds=s.seconds)
        self.eval_seconds += time.perf_counter() - t0
        if self.on_snapshot is not None:
            self.on_snapshot(Snapshot(s.step, s.tokens_seen, s.seconds, s.params,
                                      self.writer.eval_tokens, losses))

    def checkpoint(self, s: TrainState, status: str) -> None:
        save_checkpoint(self.out, s.params, s.opt_state, s.rng, s.step, s.tokens_seen, s.train_loss,
                        s.seconds, self.tc)
        save_npy(self.out / TRAIN_LOSS, np.asarray(s.train_loss, dtype=np.float32))
        timings = {**self.writer.manifest.get("timings", {}), "train_seconds": round(s.seconds, 3),
                   "eval_seconds": round(self.eval_seconds, 3), "updated": _now()}
        if status == "finished":
            timings["finished"] = _now()
        self.writer.update_manifest(status=status, timings=timings)
        self.last_step, self.last_time = s.step, time.perf_counter()

    def snapshot_due(self, s: TrainState) -> bool:
        """Whether snapshot(s) would store one now."""
        return s.step in self.plan and s.step not in self.writer.steps

    def checkpoint_due(self, s: TrainState) -> bool:
        """Every `every` steps (if given) and every `seconds` of wall time."""
        by_steps = self.every is not None and s.step - self.last_step >= self.every
        return by_steps or time.perf_counter() - self.last_time >= self.seconds

    def diverged(self, s: TrainState, loss: float, lr: float):
        """Keep the last good weights (the params were not updated), mark the run, raise."""
        self.snapshot(s, planned_only=False)
        self.checkpoint(s, "diverged")
        what = f"loss is {loss}" if not math.isfinite(loss) else "a gradient is not finite"
        raise TrainingDiverged(
            f"training diverged at step {s.step + 1}: {what} (lr={lr:.3g}); the last good weights "
            f"(step {s.step}) are kept as a snapshot in {self.out}; try a smaller lr", s.step + 1)

    def result(self, s: TrainState, status: str) -> TrainResult:
        eval_loss = float(load_run(self.out).losses[-1].mean()) if self.writer.index else float("nan")
        final_loss = float(s.train_loss[-1]) if s.train_loss else float("nan")
        return TrainResult(self.out, s.step, s.tokens_seen, final_loss, eval_loss, s.seconds, status)


class _Interrupts:
    """Ctrl-C (SIGINT) and SIGTERM only set `.received`: the loop ends after the current
    step and writes a checkpoint. Further interrupts change nothing, so none can cut the
    checkpoint short (kill -9 still stops the process; the last checkpoint stays whole)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.received = None                  # the first signal's number
        self._previous = {}

    def __enter__(self):
        for sig in self.SIGNALS:
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:                # not the main thread: Python allows no handler
                pass
        return self

    def _handle(self, signum, frame):
        self.received = self.received or signum

    def __exit__(self, *exc):
        for sig, previous in self._previous.items():
            if previous is not None:          # None: a handler not set from Python, left alone
                signal.signal(sig, previous)


class _Progress:
    """A tqdm bar of steps showing the loss and tokens/s, or nothing (progress=False)."""

    def __init__(self, enabled: bool, total: int, initial: int, name: str):
        self.bar, self.last = None, time.perf_counter()
        if enabled:
            from tqdm import tqdm
            self.bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, desc=name,
                            smoothing=0.1)

    def update(self, loss: float, tokens: int) -> None:
        now = time.perf_counter()
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{tokens / (now - self.last):,.0f}",
                                 refresh=False)
        self.last = now

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.close()


# --- starting and resuming ------------------------------------------------------------

def _recorded_backend(out) -> str:
    """The backend run.json says the run in `out` was trained on ("numpy" for runs from
    before it was recorded, the default then); DEFAULT_BACKEND where there is none to read
    (resuming will then say what is missing)."""
    try:
        with open(Path(out) / "run.json", encoding="utf-8") as f:
            recorded = json.load(f).get("backend", "numpy")
    except (OSError, ValueError, AttributeError, TypeError):
        return DEFAULT_BACKEND
    return recorded if recorded in ("numpy", "numba") else DEFAULT_BACKEND


def _check_session(out, backend, checkpoint_every, checkpoint_seconds, stop_after) -> Path:
    """The run directory as a Path, after checking train()'s session options."""
    get_backend(backend)                                     # fail early on a bad name
    if out is None or not str(out).strip():
        raise ValueError(f"train needs an output directory: out=PATH, got {out!r}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out={str(out)!r} is a file, not a directory; choose a directory for the run")
    for name, value in (("checkpoint_every", checkpoint_every), ("stop_after", stop_after)):
        low = 1 if name == "checkpoint_every" else 0
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
            raise ValueError(f"{name} must be None or an int >= {low}, got {value!r}")
    if isinstance(checkpoint_seconds, bool) or not isinstance(checkpoint_seconds, (int, float)) \
            or not math.isfinite(checkpoint_seconds) or checkpoint_seconds <= 0:
        raise ValueError(f"checkpoint_seconds must be a finite number > 0, got {checkpoint_seconds!r}")
    return out


def _start(out: Path, tc: TrainConfig | None, backend: str, overwrite: bool):
    """A new run in `out`: (tc with absolute data paths, fresh TrainState, RunWriter)."""
    if tc is None:
        raise ValueError("train needs a TrainConfig (or resume=True)")
    if (out / MANIFEST).exists() and not overwrite:
        raise ValueError(f"{out} already holds a run; resume it, overwrite it, or choose another directory")
    tc = tc.replace(data=absolute_data(tc.data))
    eval_tokens = tc.data.eval_set(tc.n_eval, tc.T, tc.eval_seed)                       # [N,T]
    manifest = {"train": tc.to_dict(), "data": tc.data.describe(), "seed": tc.seed,
                "schedule": {"schedule": tc.schedule, "lr": tc.optim.lr, "warmup": tc.warmup,
                             "min_lr_frac": tc.min_lr_frac, "steps": tc.steps,
                             "snapshot_steps": snapshot_steps(tc.steps, tc.log_snapshots,
                                                              tc.linear_snapshots)},
                "version": _version(), "backend": backend, "status": "running",
                "timings": {"started": _now()}}
    if hasattr(tc.data, "fingerprint"):          # text read from files: note which bytes
        manifest["data_fingerprint"] = tc.data.fingerprint()
    writer = RunWriter(out, tc.model, manifest, eval_tokens, exist_ok=overwrite)
    return tc, TrainState.fresh(tc), writer


def _resume(out: Path, tc: TrainConfig | None):
    """Reopen a run and its checkpoint: (its TrainConfig, TrainState, RunWriter).
    A given `tc` may only change `steps`; the data must be the bytes the run started on."""
    if not (out / MANIFEST).exists():
        raise ValueError(f"cannot resume: {out} holds no run (no {MANIFEST})")
    writer = RunWriter.reopen(out)
    saved = saved_config(writer.manifest, out)
    if tc is not None:
        tc = tc.replace(data=absolute_data(tc.data))
        differ = [f.name for f in dataclasses.fields(tc)
                  if f.name != "steps" and getattr(tc, f.name) != getattr(saved, f.name)]
        if differ:
            raise ValueError(f"cannot resume {out} with a different config (fields {differ} differ); "
                             f"only steps may change")
        saved = saved.replace(steps=tc.steps)
    _check_same_data(out, writer.manifest, saved)
    ck = load_checkpoint(out, saved)
    if ck["step"] > saved.steps:
        raise ValueError(f"cannot resume {out} to {saved.steps} steps: its checkpoint is already at "
                         f"step {ck['step']}")
    writer.truncate_after(ck["step"])          # snapshots written after the checkpoint come again
    if saved.steps != TrainConfig.from_dict(writer.manifest["train"]).steps:   # extended
        writer.update_manifest(train=saved.to_dict(), schedule={
            **writer.manifest.get("schedule", {}), "steps": saved.steps,
            "snapshot_steps": snapshot_steps(saved.steps, saved.log_snapshots, saved.linear_snapshots)})
    state = TrainState(ck["params"], ck["opt_state"], ck["rng"], ck["step"], ck["tokens_seen"],
                       ck["train_loss"], ck["seconds"])
    return saved, state, writer


def saved_config(manifest: dict, out) -> TrainConfig:
    """The TrainConfig a run directory recorded (run.json's "train"), or a ValueError
    naming run.json and what is wrong with it."""
    where = Path(out) / MANIFEST
    if "train" not in manifest:
        raise ValueError(f"{where} has no 'train' entry: the run was not written by minih.train, "
                         f"so it cannot be resumed")
    try:
        return TrainConfig.from_dict(manifest["train"])
    except ValueError as e:
        raise ValueError(f"{where}: its 'train' entry is not a valid TrainConfig ({e})") from None


def absolute_data(data):
    """`data` with its file path made absolute, for sources that read a `path` (text):
    the run records where its bytes are, so a resume from another folder finds them.
    An empty path stays empty: it means the source's own corpus (bpe: the stdlib), and
    resolving it would turn it into the current folder."""
    if dataclasses.is_dataclass(data) and "path" in {f.name for f in dataclasses.fields(data)} \
            and data.path:
        return dataclasses.replace(data, path=str(Path(data.path).resolve()))
    return data


def _check_same_data(out: Path, manifest: dict, tc: TrainConfig) -> None:
    """Refuse to resume a text run whose files changed since it started (size or hash)."""
    if not hasattr(tc.data, "fingerprint"):
        return                         # data drawn from a seed: rebuilt exactly from the config
    recorded = manifest.get("data_fingerprint")
    if recorded is None:               # a run from before fingerprints: compare the sizes it noted
        _check_same_sizes(out, manifest.get("data"), tc.data.describe())
        return
    now = tc.data.fingerprint()
    if now == recorded:
        return
    if isinstance(recorded, dict) and (recorded.get("files"), recorded.get("bytes")) == (now["files"], now["bytes"]):
        change = "same sizes, other bytes"
    else:
        was = f"{recorded.get('files')} files, {recorded.get('bytes')} bytes" if isinstance(recorded, dict) \
            else repr(recorded)
        change = f"was {was}, now {now['files']} files, {now['bytes']} bytes"
    raise ValueError(f"cannot resume {out}: its training text under {now['root']} changed since the "
                     f"run started ({change}); resuming would train on other data")


def _check_same_sizes(out: Path, recorded, now: dict) -> None:
    """The weaker check for runs recorded without a fingerprint: file count and split sizes."""
    keys = ("files", "train_bytes", "validation_bytes")
    if not isinstance(recorded, dict) or not all(k in recorded for k in keys):
        return
    was, found = ([d[k] for k in keys] for d in (recorded, now))
    if was != found:
        raise ValueError(f"cannot resume {out}: its training text under {now['root']} changed since the "
                         f"run started (files, training bytes, validation bytes were {was}, now {found}); "
                         f"resuming would train on other data")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _version() -> str:
    from ..version import __version__
    return __version__
