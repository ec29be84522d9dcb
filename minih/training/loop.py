"""The training loop: AdamW on the params dict, with snapshots a student can watch.

    tc = minih.TrainConfig.preset("induction-2l")          # model + data + schedule
    result = minih.train(tc, out="runs/induction-2l")      # writes a run directory
    run = minih.load_run("runs/induction-2l")

Each step: draw a batch from the data source with the run's Generator, compute the
loss and gradients (backend "numpy" or "numba"), stop if the loss or the gradient is
not finite, else take an AdamW step at the scheduled learning rate. At the snapshot
steps (log-spaced and linearly spaced, SnapshotPlan) the params and the per-token
losses of the fixed evaluation set go into the run directory (minih/training/run.py). A
checkpoint (minih/training/checkpoint.py: params, optimizer moments, the Generator's state)
lets `resume=True` continue bit for bit.

Learning rate at step t (0-based, t = number of updates already taken):
    warmup:   lr * (t + 1) / warmup                        for t < warmup
    constant: lr                                           afterwards
    cosine:   lr * (f + (1 - f) * (1 + cos(pi * p)) / 2),  p = (t - warmup) / (steps - warmup),
              f = min_lr_frac

Shape legend: B = batch, T = positions (seq_len), N = evaluation sequences
"""
from __future__ import annotations

import dataclasses
import math
import signal
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .checkpoint import CHECKPOINT, load_checkpoint, save_checkpoint
from ..config import ModelConfig
from ..data import RepeatedTokens, source_from_dict, source_to_dict
from ..model import get_backend, loss_and_grads, per_token_losses
from ..optim import AdamWConfig, adamw_init, adamw_step
from ..params import init_params
from .run import RunWriter, load_run, save_npy

from .config import SCHEDULES, TrainConfig


def learning_rate(tc: TrainConfig, t: int) -> float:
    """The learning rate of update t (0-based), see the module docstring."""
    if t < tc.warmup:
        return tc.lr * (t + 1) / tc.warmup
    if tc.schedule == "constant":
        return tc.lr
    p = min(1.0, (t - tc.warmup) / max(1, tc.steps - tc.warmup))
    return tc.lr * (tc.min_lr_frac + (1 - tc.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * p)))


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


class _SigintFlag:
    """First Ctrl-C sets .set (the loop then checkpoints and exits); a second one aborts."""

    def __init__(self):
        self.set = False
        self._previous = None

    def __enter__(self):
        try:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:                                   # not the main thread: no handler
            self._previous = None
        return self

    def _handle(self, signum, frame):
        if self.set:
            raise KeyboardInterrupt
        self.set = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def train(tc: TrainConfig | None = None, out=None, *, resume: bool = False, backend: str = "numpy",
          overwrite: bool = False, progress: bool = True, checkpoint_every: int | None = None,
          checkpoint_seconds: float = 60.0, stop_after: int | None = None, on_step=None) -> TrainResult:
    """Train `tc` and record it in the run directory `out`; return a TrainResult.

    resume: continue the run in `out` from its checkpoint (tc may be None: the run's own
        config is used; a given tc may only differ in `steps`). The weights at every step
        equal those of an uninterrupted run with the same config and seed, bit for bit.
    checkpoint_every / checkpoint_seconds: write a checkpoint every that many steps (if
        given) and whenever that many seconds have passed; always at the end and on Ctrl-C.
    stop_after: end this session after that many steps (as if interrupted) - for tests.
    on_step(step, loss): called after every update.
    Raises TrainingDiverged (after saving the last good weights as a snapshot) if the
    loss or gradient stops being finite.
    """
    get_backend(backend)                                     # fail early on a bad name
    if out is None:
        raise ValueError("train needs an output directory: out=PATH")
    out = Path(out)
    if resume:
        writer, tc, params, opt_state, rng, step, tokens_seen, train_loss, seconds = \
            _resume(out, tc)
    else:
        if tc is None:
            raise ValueError("train needs a TrainConfig (or resume=True)")
        eval_tokens = tc.data.eval_set(tc.n_eval, tc.T, tc.eval_seed)     # [N,T]
        manifest = {"train": tc.to_dict(), "data": tc.data.describe(), "seed": tc.seed,
                    "schedule": {"schedule": tc.schedule, "lr": tc.lr, "warmup": tc.warmup,
                                 "min_lr_frac": tc.min_lr_frac, "steps": tc.steps,
                                 "snapshot_steps": snapshot_steps(tc.steps, tc.log_snapshots,
                                                                  tc.linear_snapshots)},
                    "version": _version(), "backend": backend, "status": "running",
                    "timings": {"started": _now()}}
        writer = RunWriter(out, tc.model, manifest, eval_tokens, exist_ok=overwrite)
        for stale in (out / CHECKPOINT, out / "train_loss.npy"):
            stale.unlink(missing_ok=True)                    # from an overwritten run
        params = init_params(tc.model, tc.seed)
        opt_state = adamw_init(params)
        # the batches' Generator: its own stream, spawned from the seed, so the weights'
        # init (seed) and the data order are independent but both fixed by `seed`
        rng = np.random.default_rng([tc.seed, 1])
        step, tokens_seen, seconds = 0, 0, 0.0
        train_loss = []
    opt = tc.adamw()
    plan = [s for s in snapshot_steps(tc.steps, tc.log_snapshots, tc.linear_snapshots)]
    done_snapshots = set(writer.steps)
    eval_tokens = writer.eval_tokens
    eval_seconds = float(writer.manifest.get("timings", {}).get("eval_seconds", 0.0))

    def snapshot():
        nonlocal eval_seconds
        if step in done_snapshots:
            return
        t0 = time.perf_counter()
        with np.errstate(over="ignore", invalid="ignore"):                  # see the step below
            losses = per_token_losses(params, eval_tokens, tc.model, backend=backend)   # [N,T-1]
        writer.add_snapshot(step, tokens_seen, params, losses, seconds=seconds)
        done_snapshots.add(step)
        eval_seconds += time.perf_counter() - t0
        return float(losses.mean())

    def checkpoint(status):
        save_checkpoint(out, params, opt_state, rng, step, tokens_seen, train_loss, seconds, tc)
        save_npy(out / "train_loss.npy", np.asarray(train_loss, dtype=np.float32))
        writer.update_manifest(status=status, timings={**writer.manifest.get("timings", {}),
                               "train_seconds": round(seconds, 3), "eval_seconds": round(eval_seconds, 3),
                               "updated": _now()})

    if step in plan:
        snapshot()
    status = "finished"
    last_ckpt_step, last_ckpt_time = step, time.perf_counter()
    session_start = step
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=tc.steps, initial=step, unit="step", dynamic_ncols=True,
                   desc=out.name, smoothing=0.1)
    try:
        with _SigintFlag() as sigint:
            while step < tc.steps:
                t0 = time.perf_counter()
                tokens = tc.data.sample(rng, tc.batch, tc.T)                    # [B,T]
                # overflow warnings are silenced: a non-finite loss or gradient is caught
                # just below and stops the run with one clear message instead
                with np.errstate(over="ignore", invalid="ignore"):
                    loss, grads = loss_and_grads(params, tokens, tc.model, backend=backend)
                if not np.isfinite(loss) or not all(np.isfinite(g).all() for g in grads.values()):
                    snapshot()                               # the last good weights, at `step`
                    checkpoint("diverged")
                    what = f"loss is {loss}" if not np.isfinite(loss) else "a gradient is not finite"
                    raise TrainingDiverged(
                        f"training diverged at step {step + 1}: {what} (lr={learning_rate(tc, step):.3g}); "
                        f"the last good weights (step {step}) are kept as a snapshot in {out}; "
                        f"try a smaller lr", step + 1)
                adamw_step(params, grads, opt_state, opt, lr=learning_rate(tc, step), backend=backend)
                step += 1
                tokens_seen += tc.tokens_per_step
                train_loss.append(loss)
                dt = time.perf_counter() - t0
                seconds += dt
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{tc.tokens_per_step / dt:,.0f}", refresh=False)
                if on_step is not None:
                    on_step(step, loss)
                if step in plan:
                    snapshot()
                stopping = sigint.set or (stop_after is not None and step - session_start >= stop_after)
                due = (checkpoint_every and step - last_ckpt_step >= checkpoint_every) or \
                      time.perf_counter() - last_ckpt_time >= checkpoint_seconds
                if stopping or due:
                    checkpoint("running")
                    last_ckpt_step, last_ckpt_time = step, time.perf_counter()
                if stopping:
                    status = "interrupted" if sigint.set else "stopped"
                    break
    finally:
        if bar is not None:
            bar.close()
    checkpoint(status)
    if status == "finished":
        writer.update_manifest(timings={**writer.manifest["timings"], "finished": _now()})
    eval_loss = float(load_run(out).losses[-1].mean()) if writer.index else float("nan")
    return TrainResult(out, step, tokens_seen, float(train_loss[-1]) if train_loss else float("nan"),
                       eval_loss, seconds, status)


def _resume(out: Path, tc: TrainConfig | None):
    """Reopen a run and its checkpoint; check that `tc` (if given) only changes `steps`."""
    if not (out / "run.json").exists():
        raise ValueError(f"cannot resume: {out} holds no run (no run.json)")
    writer = RunWriter.reopen(out)
    saved = TrainConfig.from_dict(writer.manifest["train"])
    if tc is not None:
        differ = [f.name for f in dataclasses.fields(tc)
                  if f.name != "steps" and getattr(tc, f.name) != getattr(saved, f.name)]
        if differ:
            raise ValueError(f"cannot resume {out} with a different config (fields {differ} differ); "
                             f"only steps may change")
        saved = saved.replace(steps=tc.steps)
    ck = load_checkpoint(out, saved)
    if ck["step"] > saved.steps:
        raise ValueError(f"cannot resume {out} to {saved.steps} steps: its checkpoint is already at "
                         f"step {ck['step']}")
    writer.truncate_after(ck["step"])          # snapshots written after the checkpoint come again
    if saved.steps != TrainConfig.from_dict(writer.manifest["train"]).steps:   # extended
        writer.update_manifest(train=saved.to_dict(), schedule={
            **writer.manifest.get("schedule", {}), "steps": saved.steps,
            "snapshot_steps": snapshot_steps(saved.steps, saved.log_snapshots, saved.linear_snapshots)})
    return (writer, saved, ck["params"], ck["opt_state"], ck["rng"], ck["step"], ck["tokens_seen"],
            ck["train_loss"], ck["seconds"])


def _version() -> str:
    from ..version import __version__
    return __version__
