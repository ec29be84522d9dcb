"""`python -m minih reproduce [--quick] [--out DIR]`: the one command of the README."""
from __future__ import annotations

import argparse
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true",
                   help="the short version: the induction-task family and the Argument-4 model only "
                        "(a few minutes on 2 cores); without it, the full run also trains a text model")
    p.add_argument("--size", choices=["tiny", "quick", "full"], default=None,
                   help="explicit size (tiny = a pipeline check in seconds, no science); "
                        "overrides --quick")
    p.add_argument("--out", default="reproduction", help="output folder (default: ./reproduction)")
    p.add_argument("--seed", type=int, default=0, help="seed of every model and data set (default 0)")
    p.add_argument("--backend", choices=["numpy", "numba"], default="numba",
                   help="numba (default: the fast twin, docs/04_numba.md) or numpy (the readable "
                        "reference; the same verdicts, slower)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args) -> int:
    from ..app.reproduce import reproduce
    from . import CLIError, output_dir
    if args.seed < 0:
        raise CLIError(f"--seed must be >= 0, got {args.seed}")
    output_dir(args.out)
    size = args.size or ("quick" if args.quick else "full")
    try:
        reproduce(out=args.out, size=size, seed=args.seed, backend=args.backend,
                  progress=not args.no_progress)
    except KeyboardInterrupt:
        print("interrupted: every finished run and the last checkpoint are kept", file=sys.stderr)
        return 130
    return 0
