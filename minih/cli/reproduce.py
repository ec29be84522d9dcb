"""`python -m minih reproduce [--quick] [--out DIR]`: the one command of the README."""
from __future__ import annotations

import argparse
import os
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true",
                   help="the short version: the synthetic-task families only (about two minutes on 2 "
                        "cores); without it, longer runs and 1-3 layer models on plain text")
    p.add_argument("--size", choices=["tiny", "quick", "full"], default=None,
                   help="explicit size (tiny = a pipeline check in seconds, no science); "
                        "overrides --quick")
    p.add_argument("--out", default="reproduction", help="output folder (default: ./reproduction)")
    p.add_argument("--seed", type=int, default=0, help="seed of every model and data set (default 0)")
    p.add_argument("--backend", choices=["numpy", "numba"], default="numba",
                   help="numba (default: the fast twin, docs/04_numba.md) or numpy (the readable "
                        "reference; the same verdicts, slower)")
    p.add_argument("--seeds", type=int, default=None, metavar="N",
                   help="train the family with N seeds (--seed .. --seed + N - 1; the others through "
                        "`minih sweep`) and report every seed's verdicts and the spread (default: 3 "
                        "for the full size, 1 for --quick and tiny)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="with --seeds: 'serial', 'local' (a Dask cluster here, the default when Dask "
                        "is installed) or a scheduler's address tcp://HOST:8786")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="models trained side by side, one process each (default: one per core; "
                        "1 = one after another, with a bar per model)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args) -> int:
    from ..app.reproduce import reproduce
    from . import CLIError, output_dir
    if args.seed < 0:
        raise CLIError(f"--seed must be >= 0, got {args.seed}")
    if args.seeds is not None and args.seeds < 1:
        raise CLIError(f"--seeds must be >= 1, got {args.seeds}")
    if args.workers is not None and args.workers < 1:
        raise CLIError(f"--workers must be >= 1, got {args.workers}")
    output_dir(args.out)
    size = args.size or ("quick" if args.quick else "full")
    workers = args.workers or os.cpu_count() or 1          # one model per core
    try:
        reproduce(out=args.out, size=size, seed=args.seed, backend=args.backend,
                  progress=not args.no_progress, seeds=args.seeds, scheduler=args.scheduler,
                  workers=workers)
    except KeyboardInterrupt:
        print("interrupted: every finished run and the last checkpoint are kept", file=sys.stderr)
        return 130
    return 0
