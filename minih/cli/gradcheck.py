"""`python -m minih gradcheck`: the finite-difference check of minih/gradcheck.py."""
from __future__ import annotations

import argparse

from . import parse_overrides
from ..config import PRESETS, ModelConfig


def add_arguments(p: argparse.ArgumentParser):
    p.add_argument("--preset", default="tiny", choices=sorted(PRESETS),
                   help="model shape to check (default: tiny, checks every entry in ~1 s)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a ModelConfig field, e.g. --set n_layers=3 --set smeared_keys=true")
    p.add_argument("--batch", type=int, default=2, help="sequences in the test batch (default 2)")
    p.add_argument("--seq-len", type=int, default=None, help="positions (default: n_ctx)")
    p.add_argument("--max-entries", type=int, default=None,
                   help="check a random sample of this many entries per parameter (default: all)")
    p.add_argument("--backend", default="numpy", choices=["numpy", "numba"])
    p.add_argument("--tol", type=float, default=1e-6, help="pass if every relative error is below this")
    p.add_argument("--seed", type=int, default=0)


def run(args) -> int:
    from ..gradcheck import gradcheck
    cfg = ModelConfig.preset(args.preset, **parse_overrides(args.set))
    report = gradcheck(cfg, seed=args.seed, batch=args.batch, seq_len=args.seq_len,
                       max_entries=args.max_entries, backend=args.backend)
    print(report)
    ok = report.ok(args.tol)
    print(f"{'PASS' if ok else 'FAIL'}: max relative error {report.max_rel_err:.2e} "
          f"{'<' if ok else '>='} tolerance {args.tol:.0e}")
    return 0 if ok else 1
