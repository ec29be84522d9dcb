"""`python -m minih sweep`: train presets x settings x seeds, each run a task, on one machine or many.

    minih sweep induction-2l --seeds 0,1,2 --out sweeps/seeds        # a local cluster (or serial)
    minih sweep induction-2l induction-1l --set lr=1e-3,3e-3 --seeds 0,1 --steps 200
    minih sweep induction-2l --seeds 0,1 --scheduler tcp://HOST:8786 # workers on other machines
    minih sweep ... --dry-run                                        # list the runs, train nothing

Every combination of the presets, each --set's values and the seeds is one run, trained
into OUT/<preset>-<key=value...>-seed<k>/ (an ordinary run directory, as `minih train`
writes it). OUT/sweep.json records each run's status, where it ran and how long it took.
Run the same command again to skip the finished runs and continue the interrupted ones.

--set KEY=V1,V2,... takes the same keys as `minih train --set` (TrainConfig and ModelConfig
fields, data=NAME, data.KEY); each comma-separated value is one point of that axis.
Without Dask (pip install "minih[cluster]") the runs go one after another in this process,
with the same results. docs/08_sweeps.md: starting a scheduler and workers on several machines.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import CLIError

EXIT_FAILED = 1
EXIT_INTERRUPTED = 130


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..training.config import TRAIN_PRESETS
    p.description = __doc__
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("presets", nargs="+", metavar="PRESET",
                   help=f"training presets: any of {', '.join(sorted(TRAIN_PRESETS))}")
    p.add_argument("--set", action="append", default=[], metavar="KEY=V1,V2",
                   help="an axis of the grid: a field and its values, e.g. --set lr=1e-3,3e-3 "
                        "(keys as for `minih train --set`); a single value changes every run")
    p.add_argument("--seeds", default="0", metavar="K,K,...",
                   help="the seeds of every grid point, comma-separated (default 0)")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--steps", type=int, default=None, help="optimizer steps of every run "
                                                                "(default: each preset's)")
    budget.add_argument("--tokens", type=float, default=None,
                        help="training tokens of every run instead of steps, e.g. 2e6")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="the sweep folder (default sweeps/PRESET); with --scheduler it must be a "
                        "folder every worker sees at the same path")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="a running Dask scheduler, e.g. tcp://HOST:8786; 'local' for a cluster on "
                        "this machine (the default when Dask is installed); 'serial' for one run "
                        "after another in this process (the default without Dask)")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="worker processes of the local cluster (default: min(runs, cores))")
    p.add_argument("--analyze", action="store_true",
                   help="also analyse each run (as `minih analyze`, into RUN/analysis/)")
    p.add_argument("--backend", default=None, choices=["numpy", "numba"],
                   help="numba: the compiled twin (default for a new run); numpy: the readable "
                        "reference; a run being resumed keeps its own by default")
    p.add_argument("--checkpoint-seconds", type=float, default=60.0, metavar="S",
                   help="each run writes a checkpoint at least every S seconds (default 60): what a "
                        "killed worker loses at most")
    p.add_argument("--dry-run", action="store_true", help="list the runs of the grid and exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",")]
    except ValueError:
        raise CLIError(f"--seeds expects comma-separated ints >= 0, e.g. 0,1,2; got {text!r}") from None
    if any(s < 0 for s in seeds) or len(set(seeds)) < len(seeds):
        raise CLIError(f"--seeds expects distinct ints >= 0, got {text!r}")
    return seeds


def parse_axes(sets: list[str]) -> list[tuple[str, list[str]]]:
    """["lr=1e-3,3e-3", "n_layers=3"] -> [("lr", ["1e-3", "3e-3"]), ("n_layers", ["3"])]."""
    axes = []
    for pair in sets:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        values = [v.strip() for v in raw.split(",")]
        if not sep or not key or not all(values):
            raise CLIError(f"--set expects KEY=VALUE or KEY=V1,V2,..., got {pair!r}")
        if key in (k for k, _ in axes):
            raise CLIError(f"--set {key} is given twice; list its values in one --set {key}=V1,V2")
        if len(set(values)) < len(values):
            raise CLIError(f"--set {key}: a value is listed twice in {raw!r}")
        axes.append((key, values))
    return axes


def _field_value(tc, key: str):
    """The value `key` (as --set names it) took in the built config: its name in the run's folder."""
    if key == "data":
        return tc.data.name
    if key.startswith("data."):
        return getattr(tc.data, key[len("data."):])
    for part in (tc, tc.optim, tc.model):              # TrainConfig, then optimizer, then model
        if hasattr(part, key):
            return getattr(part, key)
    raise ValueError(f"--set: unknown field {key!r}")


def build_grid(presets, axes, seeds, steps=None, tokens=None):
    """(name, TrainConfig) of every preset x axis value x seed, built as `minih train` builds one."""
    from ..app.sweep import run_name
    from ..training.config import TRAIN_PRESETS
    from .train import build_config
    for preset in presets:
        if preset not in TRAIN_PRESETS:
            raise CLIError(f"unknown preset {preset!r}; presets are {sorted(TRAIN_PRESETS)}")
    points = [[]]
    for key, values in axes:
        points = [p + [f"{key}={v}"] for p in points for v in values]
    runs = []
    for preset in presets:
        for point in points:
            for seed in seeds:
                tc = build_config(preset, point, steps, tokens, seed)
                changes = [(key, _field_value(tc, key)) for key, _ in axes]
                runs.append((run_name(preset, changes, seed), tc))
    return runs


def run(args) -> int:
    from ..app.sweep import check_runs, run_sweep
    if args.workers is not None and args.workers < 1:
        raise CLIError(f"--workers must be >= 1, got {args.workers}")
    if args.workers is not None and args.scheduler not in (None, "local"):
        raise CLIError(f"--workers sets the size of a local cluster; with --scheduler "
                       f"{args.scheduler} it has no effect, so leave it out")
    if not args.checkpoint_seconds > 0:
        raise CLIError(f"--checkpoint-seconds must be > 0, got {args.checkpoint_seconds}")
    if args.scheduler is not None and args.scheduler not in ("local", "serial") and ":" not in args.scheduler:
        raise CLIError(f"--scheduler expects an address like tcp://HOST:8786, 'local' or 'serial'; "
                       f"got {args.scheduler!r}")
    runs = build_grid(args.presets, parse_axes(args.set), parse_seeds(args.seeds), args.steps, args.tokens)
    names = [name for name, _ in runs]
    if len(set(names)) < len(names):
        raise CLIError("two runs of the grid get the same name: list each value of a --set once")
    check_runs(runs)
    out = Path(args.out or Path("sweeps") / args.presets[0])
    if args.dry_run:
        for name, tc in runs:
            print(f"{out / name}  ({tc.steps} steps x {tc.tokens_per_step} tokens)")
        print(f"{len(runs)} runs")
        return 0
    try:
        result = run_sweep(runs, out, scheduler=args.scheduler, workers=args.workers,
                           backend=args.backend, analyze=args.analyze,
                           checkpoint_seconds=args.checkpoint_seconds, progress=not args.no_progress)
    except KeyboardInterrupt:
        print("interrupted: every finished run and each run's last checkpoint are kept; run the "
              "same command again to continue", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(result.summary())
    for name in result.failed:
        print(f"  {name}: {result.records[name]['status']}: {result.records[name].get('error', '')}")
    return EXIT_FAILED if result.failed else 0
