"""`python -m minih gradcheck`: the finite-difference check of minih/gradcheck.py."""
from __future__ import annotations

import argparse
import math
import os
import sys
import time

import numpy as np

from . import CLIError, parse_overrides
from ..config import PRESETS, ModelConfig

STENCIL = 4          # forward passes per checked entry (the fourth-order central stencil)


def add_arguments(p: argparse.ArgumentParser):
    p.add_argument("--preset", default="tiny", choices=sorted(PRESETS),
                   help="model shape to check (default: tiny, checks every entry in ~1 s)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a ModelConfig field, e.g. --set n_layers=3 --set smeared_keys=true")
    p.add_argument("--batch", type=int, default=2, help="sequences in the test batch (default 2)")
    p.add_argument("--seq-len", type=int, default=None, help="positions, 2..n_ctx (default: n_ctx)")
    p.add_argument("--max-entries", type=int, default=None,
                   help="check a random sample of this many entries per parameter (default: all)")
    p.add_argument("--backend", default="numpy", choices=["numpy", "numba"])
    p.add_argument("--tol", type=float, default=1e-6, help="pass if every relative error is below this")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _bytes(n: float) -> str:
    return f"{n / 2**30:.1f} GB" if n >= 2**30 else f"{n / 2**20:.0f} MB"


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.0f} days"


def memory_estimate(cfg: ModelConfig, batch: int, T: int) -> float:
    """Bytes a float64 gradcheck of `cfg` needs, roughly: parameters three times (the
    values, their gradients, a copy) and the activations of one forward and backward."""
    from ..params import param_shapes
    n_params = sum(math.prod(s) for s in param_shapes(cfg).values())
    H, D, E, V, L = cfg.n_heads, cfg.d_model, cfg.d_head, cfg.d_vocab, cfg.n_layers
    per_position = 3 * V + L * (3 * H * T + H * D + 6 * D + 4 * H * E) + 4 * D
    return 8.0 * (3 * n_params + 2 * batch * T * per_position)


def free_memory() -> float | None:
    """Bytes of memory available now (None where the system does not say)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return float(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def run(args) -> int:
    from ..gradcheck import gradcheck
    from ..model import loss_fn
    from ..params import init_params, param_shapes
    if not (math.isfinite(args.tol) and args.tol > 0):
        raise CLIError(f"--tol must be a finite number > 0, got {args.tol}")
    if args.batch < 1:
        raise CLIError(f"--batch must be >= 1, got {args.batch}")
    if args.max_entries is not None and args.max_entries < 1:
        raise CLIError(f"--max-entries must be >= 1, got {args.max_entries}")
    if args.seed < 0:
        raise CLIError(f"--seed must be >= 0, got {args.seed}")
    cfg = ModelConfig.preset(args.preset, **parse_overrides(args.set)).replace(dtype="float64")
    T = cfg.n_ctx if args.seq_len is None else args.seq_len
    if not 2 <= T <= cfg.n_ctx:
        raise CLIError(f"--seq-len must be in [2, n_ctx={cfg.n_ctx}] (the loss needs a next "
                       f"token to predict), got {args.seq_len}")
    need, free = memory_estimate(cfg, args.batch, T), free_memory()
    if free is not None and need > free:
        raise CLIError(f"this check needs about {_bytes(need)} of memory and {_bytes(free)} is "
                       f"free; reduce d_model, d_vocab, n_ctx, --seq-len or --batch")
    sizes = [math.prod(s) for s in param_shapes(cfg).values()]
    n_entries = sum(n if args.max_entries is None else min(n, args.max_entries) for n in sizes)

    # time one forward on the checked shapes to say how long the check will take
    params = init_params(cfg, args.seed)           # what gradcheck draws from the same seed
    tokens = np.random.default_rng(args.seed).integers(0, cfg.d_vocab, size=(args.batch, T))
    per_forward = math.inf
    for _ in range(2):                      # the first may include Numba's compilation
        t0 = time.perf_counter()
        loss_fn(params, tokens, cfg, backend=args.backend)
        per_forward = min(per_forward, time.perf_counter() - t0)
    print(f"checking {n_entries:,} entries of {len(sizes)} parameters ({STENCIL} forward passes "
          f"each, {per_forward * 1e3:.2g} ms per forward): about "
          f"{_duration(STENCIL * n_entries * per_forward)}"
          + ("" if args.max_entries is not None or n_entries < 10**5 else
             "; --max-entries N checks a sample of N entries per parameter"), flush=True)

    from tqdm.auto import tqdm
    with tqdm(total=n_entries, desc="gradcheck", unit="entry", file=sys.stderr,
              disable=args.quiet) as bar:
        report = gradcheck(cfg, seed=args.seed, batch=args.batch, seq_len=T,
                           max_entries=args.max_entries, backend=args.backend,
                           progress=bar.update)
    print(report)
    ok = report.ok(args.tol)
    print(f"{'PASS' if ok else 'FAIL'}: max relative error {report.max_rel_err:.2e} "
          f"{'<' if ok else '>='} tolerance {args.tol:.0e}")
    return 0 if ok else 1
