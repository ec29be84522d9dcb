"""A run directory: the record of one training run, written as it trains, read back whole.

The paper's evidence is about *when* things happen, so a run keeps snapshots of the
weights and of the per-token losses on one fixed evaluation set, at many steps.

    run = minih.load_run("runs/induction-2l")
    run.cfg, run.manifest              # ModelConfig, dict (run.json)
    run.steps, run.tokens_seen         # [S] int64: optimizer step / tokens seen per snapshot
    run.eval_tokens                    # [n_eval, T] int64: the same examples at every snapshot
    run.losses                         # [S, n_eval, T-1] float32: per-token losses per snapshot
    run.params(i)                      # dict of arrays: the weights of snapshot i
    run.seconds                        # [S] training wall time at each snapshot (NaN if unknown)
    run.train_loss                     # [steps] training loss of every update, or None

Layout on disk (every file written to a temporary name of its own process, then
renamed into place, so a killed process leaves either the old file or the new one,
never half of one):

    run.json                      manifest: {"format", "model": ModelConfig fields, ...
                                  whatever the writer adds: train config, data, seed,
                                  schedule, version, timings}
    eval_tokens.npy               [n_eval, T] int64
    snapshots.json                [{"step", "tokens_seen", "params", "losses", "seconds"}, ...]
                                  in step order ("seconds" optional)
    snapshots/step_{step:09d}.npz         the params of one snapshot (keys as in params.py)
    snapshots/step_{step:09d}.losses.npy  [n_eval, T-1] float32
    checkpoint.npz                (minih.train only: optimizer and RNG state for --resume)
    train_loss.npy                (minih.train only: [steps] float32 training loss per update)
    .lock                         (minih.train only: held by the one process writing the run)

Shape legend: S = snapshots, N = n_eval (evaluation sequences), T = positions
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np

from ..config import ModelConfig
from ..params import check_params

FORMAT = "minih-run/1"
MANIFEST = "run.json"
EVAL_TOKENS = "eval_tokens.npy"
INDEX = "snapshots.json"
SNAPSHOT_DIR = "snapshots"
CHECKPOINT = "checkpoint.npz"
TRAIN_LOSS = "train_loss.npy"
LOCK = ".lock"
# what belongs to a run: its own files, and the folders that `analyze` and `ablate`
# write into it by default (an overwritten run must leave no stale results behind)
RUN_FILES = (MANIFEST, EVAL_TOKENS, INDEX, SNAPSHOT_DIR, CHECKPOINT, TRAIN_LOSS)
DERIVED = ("analysis", "ablation")

try:                                        # POSIX: an advisory lock on an open file
    import fcntl
except ImportError:                         # Windows: a lock on the file's first byte
    fcntl = None
    import msvcrt


# --- atomic writes ----------------------------------------------------------------------

def atomic_write(path: Path, write) -> None:
    """Call write(file) on a temporary file next to `path`, then rename it to `path`.

    os.replace is atomic on POSIX and Windows within one filesystem, so readers see
    the old content or the new, never a partial file.
    """
    path = Path(path)
    # the process id in the name: two processes never write the same temporary file
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def save_json(path: Path, obj) -> None:
    atomic_write(path, lambda f: f.write((json.dumps(obj, indent=1, sort_keys=False) + "\n").encode()))


def save_npz(path: Path, arrays: dict) -> None:
    atomic_write(path, lambda f: np.savez(f, **arrays))


def save_npy(path: Path, array: np.ndarray) -> None:
    atomic_write(path, lambda f: np.save(f, array))


def _read_json(path: Path, what: str):
    try:
        with open(path, "rb") as f:
            return json.loads(f.read().decode())
    except FileNotFoundError:
        raise ValueError(f"{path} is missing: not a minih run directory (no {what})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is corrupt ({what} is not valid JSON: {e})") from None


def load_npz(path: Path, what: str) -> dict[str, np.ndarray]:
    """Every array of an .npz file, read fully now; ValueError naming the file if it is bad."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise ValueError(f"{what} {path} is missing") from None
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, KeyError) as e:
        raise ValueError(f"{what} {path} is truncated or corrupt ({type(e).__name__}: {e})") from None


def _load_npy(path: Path, what: str) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise ValueError(f"{what} {path} is missing") from None
    except (OSError, ValueError, EOFError) as e:
        raise ValueError(f"{what} {path} is truncated or corrupt ({type(e).__name__}: {e})") from None


def _snapshot_names(step: int) -> tuple[str, str]:
    stem = f"{SNAPSHOT_DIR}/step_{step:09d}"
    return stem + ".npz", stem + ".losses.npy"


def _to_jsonable(obj):
    """Manifest values as plain JSON (numpy scalars and arrays, tuples, Paths)."""
    if isinstance(obj, dict):
        return {str(k): _to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    return obj


# --- one writer at a time -----------------------------------------------------------------

class RunInUse(RuntimeError):
    """Another process is writing this run directory."""


@contextlib.contextmanager
def writer_lock(path):
    """Hold the run directory's lock while the block runs; RunInUse if another process has it.

    The lock is the operating system's lock on the open file `.lock`: it is released
    when the file is closed, also when the process dies, so a crashed writer never
    leaves the directory locked. The file itself stays (removing it would let two
    processes lock two different files).
    """
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        f = open(path / LOCK, "a+")
    except OSError as e:
        raise ValueError(f"cannot write the run directory {path}: {e.strerror or e}") from None
    with f:
        try:
            _lock(f)
        except OSError:
            holder = _read_holder(f)
            raise RunInUse(f"{path} is being written by another process ({holder or 'unknown pid'}); "
                           f"wait for it to end, or choose another output directory") from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()}\n")            # for the message of a refused second writer
        f.flush()
        _remove_stale_temporaries(path)
        yield


def _lock(f) -> None:
    """Take the lock without waiting; OSError if another process holds it."""
    if fcntl is not None:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    else:
        f.seek(0)
        msvcrt.locking(f.fileno(), msvcrt.LK_NBLCK, 1)


def _read_holder(f) -> str:
    """What the lock holder wrote into the lock file ("pid N"), or "" if unreadable."""
    try:
        f.seek(0)
        return f.read().strip()
    except OSError:                        # Windows: the holder's locked byte cannot be read
        return ""


def _remove_stale_temporaries(path: Path) -> None:
    """Temporary files (NAME.PID.tmp, see atomic_write) of writers that were killed
    mid-write; only the lock holder may do this."""
    for folder in (path, path / SNAPSHOT_DIR):
        for tmp in folder.glob("*.*.tmp"):
            if tmp.name.rsplit(".", 2)[1].isdigit():
                tmp.unlink(missing_ok=True)


def remove_run(path) -> None:
    """Delete a run's files from `path`, and the analyze/ablate results written into it;
    anything else in the folder is left alone."""
    path = Path(path)
    for name in RUN_FILES + DERIVED:
        target = path / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)


# --- writing ----------------------------------------------------------------------------

class RunWriter:
    """Create a run directory and add snapshots to it.

        writer = RunWriter(path, cfg, manifest, eval_tokens)
        writer.add_snapshot(step, tokens_seen, params, losses)   # losses [n_eval, T-1]
        writer.update_manifest(timings={...})

    `manifest` is any JSON-able dict (train config, data description, seed, ...); the
    writer adds "format" and "model" (cfg's fields). The directory must not already
    hold a run unless `exist_ok=True` (which starts it over) - use RunWriter.reopen to
    continue one.
    """

    def __init__(self, path, cfg: ModelConfig, manifest: dict | None, eval_tokens,
                 exist_ok: bool = False):
        if not isinstance(cfg, ModelConfig):
            raise ValueError(f"cfg must be a minih.ModelConfig, got {type(cfg).__name__}")
        self.path = Path(path)
        self.cfg = cfg
        eval_tokens = np.asarray(eval_tokens)
        if eval_tokens.ndim != 2 or eval_tokens.shape[1] < 2 or not np.issubdtype(eval_tokens.dtype, np.integer):
            raise ValueError(f"eval_tokens must be integers of shape [n_eval, T] with T >= 2, "
                             f"got {eval_tokens.dtype} {eval_tokens.shape}")
        if eval_tokens.shape[1] > cfg.n_ctx or eval_tokens.min() < 0 or eval_tokens.max() >= cfg.d_vocab:
            raise ValueError(f"eval_tokens must have T <= n_ctx={cfg.n_ctx} and values in "
                             f"[0, d_vocab) = [0, {cfg.d_vocab}); got T={eval_tokens.shape[1]}, values "
                             f"{eval_tokens.min()}..{eval_tokens.max()}")
        if (self.path / MANIFEST).exists() and not exist_ok:
            raise ValueError(f"{self.path} already holds a run; choose another directory, "
                             f"resume it, or pass exist_ok=True to start it over")
        if (self.path / MANIFEST).exists():
            remove_run(self.path)                  # nothing of the earlier run survives
        for name in (CHECKPOINT, TRAIN_LOSS):      # a start killed before run.json may leave these
            (self.path / name).unlink(missing_ok=True)
        self.eval_tokens = eval_tokens.astype(np.int64)
        (self.path / SNAPSHOT_DIR).mkdir(parents=True, exist_ok=True)
        self.manifest = {"format": FORMAT, "model": cfg.to_dict(), **_to_jsonable(dict(manifest or {}))}
        self.index: list[dict] = []
        save_npy(self.path / EVAL_TOKENS, self.eval_tokens)
        save_json(self.path / INDEX, self.index)
        save_json(self.path / MANIFEST, self.manifest)   # last: run.json marks a complete start

    @classmethod
    def reopen(cls, path) -> "RunWriter":
        """A writer that continues the run already in `path` (used by --resume)."""
        run = load_run(path)
        self = cls.__new__(cls)
        self.path, self.cfg, self.manifest = run.path, run.cfg, run.manifest
        self.eval_tokens = run.eval_tokens
        self.index = list(run.index)
        return self

    @property
    def steps(self) -> list[int]:
        return [entry["step"] for entry in self.index]

    def add_snapshot(self, step: int, tokens_seen: int, params: dict, losses,
                     seconds: float | None = None) -> None:
        """Store the params and the per-token eval losses [n_eval, T-1] reached at `step`
        (and, optionally, the training wall time in seconds spent to get there)."""
        step, tokens_seen = int(step), int(tokens_seen)
        if step < 0 or tokens_seen < 0:
            raise ValueError(f"step and tokens_seen must be >= 0, got {step}, {tokens_seen}")
        if self.index and step <= self.index[-1]["step"]:
            raise ValueError(f"snapshots must come in increasing step order: step {step} after "
                             f"step {self.index[-1]['step']}")
        check_params(params, self.cfg)
        losses = np.asarray(losses, dtype=np.float32)
        expected = (self.eval_tokens.shape[0], self.eval_tokens.shape[1] - 1)
        if losses.shape != expected:
            raise ValueError(f"losses must have shape [n_eval, T-1] = {list(expected)}, got {list(losses.shape)}")
        params_name, losses_name = _snapshot_names(step)
        save_npz(self.path / params_name, params)
        save_npy(self.path / losses_name, losses)
        entry = {"step": step, "tokens_seen": tokens_seen, "params": params_name, "losses": losses_name}
        if seconds is not None:
            entry["seconds"] = round(float(seconds), 3)
        self.index.append(entry)
        save_json(self.path / INDEX, self.index)          # the snapshot exists once it is indexed

    def truncate_after(self, step: int) -> None:
        """Forget snapshots with a step above `step` (a resumed run re-creates them)."""
        keep = [e for e in self.index if e["step"] <= step]
        if len(keep) != len(self.index):
            self.index = keep
            save_json(self.path / INDEX, self.index)

    def update_manifest(self, **fields) -> None:
        """Set top-level manifest fields (e.g. timings) and rewrite run.json atomically."""
        self.manifest.update(_to_jsonable(fields))
        save_json(self.path / MANIFEST, self.manifest)


# --- reading ----------------------------------------------------------------------------

class Run:
    """A finished (or running) run directory, read back. See the module docstring."""

    def __init__(self, path, cfg: ModelConfig, manifest: dict, index: list[dict],
                 eval_tokens: np.ndarray, losses: np.ndarray):
        self.path = Path(path)
        self.cfg = cfg
        self.manifest = manifest
        self.index = index
        self.eval_tokens = eval_tokens                                      # [N,T] int64
        self.steps = np.array([e["step"] for e in index], dtype=np.int64)   # [S]
        self.tokens_seen = np.array([e["tokens_seen"] for e in index], dtype=np.int64)  # [S]
        self.losses = losses                                                # [S,N,T-1] float32
        # training wall time at each snapshot (NaN where the writer did not record it)
        self.seconds = np.array([e.get("seconds", np.nan) for e in index], dtype=np.float64)  # [S]

    @property
    def train_loss(self) -> np.ndarray | None:
        """Training loss of every update [steps] (minih.train writes it), or None."""
        path = self.path / "train_loss.npy"
        return _load_npy(path, "training losses") if path.exists() else None

    def __len__(self) -> int:
        return len(self.index)

    def __repr__(self) -> str:
        last = f", last step {int(self.steps[-1])}" if len(self) else ""
        return f"<minih Run {str(self.path)!r}: {len(self)} snapshots{last}>"

    def params(self, i: int) -> dict[str, np.ndarray]:
        """The params of snapshot i (negative i counts from the end), checked against cfg."""
        if not -len(self) <= i < len(self):
            raise ValueError(f"snapshot index {i} out of range for a run with {len(self)} snapshots")
        entry = self.index[i]
        file = self.path / entry["params"]
        params = load_npz(file, f"snapshot at step {entry['step']}")
        # minih never stores non-finite weights (a diverging run keeps its last good ones)
        bad = [k for k, v in params.items()
               if np.issubdtype(np.asarray(v).dtype, np.number) and not np.isfinite(v).all()]
        if bad:
            raise ValueError(f"snapshot {file} is damaged: NaN or inf weights in {bad}")
        try:
            check_params(params, self.cfg)
        except ValueError as e:
            raise ValueError(f"snapshot {file} does not match run.json: {e}") from None
        return params

    def index_of_step(self, step: int) -> int:
        """The snapshot index whose step is exactly `step`."""
        hits = np.flatnonzero(self.steps == step)
        if not len(hits):
            raise ValueError(f"no snapshot at step {step}; steps are {self.steps.tolist()}")
        return int(hits[0])


def load_run(path) -> Run:
    """Read a run directory: config, manifest, eval set, every snapshot's losses.

    Params stay on disk until run.params(i). Raises ValueError naming the file when the
    path is not a run directory or a file is missing, truncated or inconsistent.
    """
    path = Path(path)
    if not path.is_dir():
        raise ValueError(f"{path} is not a directory (expected a minih run directory)")
    manifest = _read_json(path / MANIFEST, "run.json manifest")
    cfg = _check_manifest(path / MANIFEST, manifest)
    eval_tokens = _load_npy(path / EVAL_TOKENS, "evaluation set")
    if eval_tokens.ndim != 2 or eval_tokens.shape[1] < 2 or not np.issubdtype(eval_tokens.dtype, np.integer):
        raise ValueError(f"{path / EVAL_TOKENS} must hold integer tokens [n_eval, T] with T >= 2, "
                         f"got {eval_tokens.dtype} {eval_tokens.shape}")
    index = _read_json(path / INDEX, "snapshot index")
    _check_index(path / INDEX, index)
    expected = (eval_tokens.shape[0], eval_tokens.shape[1] - 1)
    losses = np.zeros((len(index),) + expected, dtype=np.float32)           # [S,N,T-1]
    for s, entry in enumerate(index):
        losses_s = _load_npy(path / entry["losses"], f"losses of the snapshot at step {entry['step']}")
        if losses_s.shape != expected:
            raise ValueError(f"{path / entry['losses']} has shape {losses_s.shape}, expected {expected}")
        losses[s] = losses_s
    return Run(path, cfg, manifest, index, eval_tokens.astype(np.int64, copy=False), losses)


def _check_manifest(file: Path, manifest) -> ModelConfig:
    """The ModelConfig of a run.json, or ValueError naming the file and what is wrong."""
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or "model" not in manifest:
        raise ValueError(f"{file} is not a minih run manifest "
                         f"(expected format {FORMAT!r} and a 'model' entry)")
    if not isinstance(manifest["model"], dict):
        raise ValueError(f"{file} is corrupt: 'model' must be a dict of ModelConfig fields, "
                         f"got {manifest['model']!r}")
    try:
        return ModelConfig.from_dict(manifest["model"])
    except (ValueError, TypeError) as e:
        raise ValueError(f"{file} is corrupt: its model entry is not a valid ModelConfig ({e})") from None


def _check_index(file: Path, index) -> None:
    """ValueError naming snapshots.json and the first bad entry, if any."""
    if not isinstance(index, list):
        raise ValueError(f"{file} is corrupt: expected a list of snapshot entries, got {type(index).__name__}")
    previous = -1
    for i, entry in enumerate(index):
        problem = _entry_problem(entry, previous)
        if problem:
            raise ValueError(f"{file} is corrupt: entry {i} {problem}")
        previous = entry["step"]


def _entry_problem(entry, previous_step: int) -> str | None:
    """What is wrong with one snapshots.json entry (None if nothing)."""
    keys = ("step", "tokens_seen", "params", "losses")
    if not isinstance(entry, dict):
        return f"is a {type(entry).__name__}, expected a dict with {list(keys)}"
    missing = [k for k in keys if k not in entry]
    if missing:
        return f"lacks {missing}"
    for k in ("step", "tokens_seen"):
        if isinstance(entry[k], bool) or not isinstance(entry[k], int) or entry[k] < 0:
            return f"has {k}={entry[k]!r}, expected an int >= 0"
    for k in ("params", "losses"):
        name = entry[k]
        if not isinstance(name, str) or not name.startswith(SNAPSHOT_DIR + "/") or ".." in name:
            return f"has {k}={name!r}, expected a file name under {SNAPSHOT_DIR}/"
    seconds = entry.get("seconds", 0.0)
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds):
        return f"has seconds={seconds!r}, expected a number"
    if entry["step"] <= previous_step:
        return f"has step {entry['step']} after step {previous_step} (steps must increase)"
    return None
