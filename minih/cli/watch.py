"""`python -m minih watch`: train one preset and watch the induction head form, live.

    minih watch text-2l          # plain text (Python source as BPE tokens): minutes
    minih watch induction-2l     # the synthetic task: seconds
    minih watch text-1l          # the 1-layer control: no induction head forms

The progress bar shows the loss, the best head's prefix-matching score and the ICL
score at the latest snapshot; a line is printed when a head passes 0.3 and 0.5. The
run is an ordinary run directory (default runs/PRESET): `minih train --resume --out DIR`
continues it after Ctrl-C, `minih analyze DIR` measures every head afterwards.
"""
from __future__ import annotations

import argparse
import sys

from . import EXIT_INTERRUPTED, CLIError
from .train import EXIT_DIVERGED, build_config, new_run_dir

DEFAULT_PRESET = "text-2l"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..training.config import TRAIN_PRESETS
    p.description = __doc__
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("preset", nargs="?", default=DEFAULT_PRESET,
                   help=f"training preset: one of {', '.join(sorted(TRAIN_PRESETS))} "
                        f"(default {DEFAULT_PRESET})")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="change a field, as in `minih train` (e.g. --set lr=3e-3)")
    p.add_argument("--out", default=None, metavar="DIR", help="run directory (default runs/PRESET)")
    p.add_argument("--seed", type=int, default=None, help="seed of the weights and batches (default 0)")
    p.add_argument("--steps", type=int, default=None, help="optimizer steps (default: the preset's)")
    p.add_argument("--backend", default=None, choices=["numpy", "numba"],
                   help="numba (default: the faster) or numpy (the readable reference)")
    p.add_argument("--overwrite", action="store_true", help="replace a run already in --out")


def run(args) -> int:
    from tqdm.auto import tqdm

    from ..app.watch import Watcher
    from ..training.config import TRAIN_PRESETS
    from ..training.loop import TrainingDiverged, train
    if args.preset not in TRAIN_PRESETS:
        raise CLIError(f"unknown preset {args.preset!r}; presets are {sorted(TRAIN_PRESETS)}")
    tc = build_config(args.preset, args.set, args.steps, None, args.seed)
    out = new_run_dir(args.out, args.preset, args.overwrite)
    try:
        watcher = Watcher(tc, backend=args.backend or "numba")   # refuses a too-short context
    except ValueError as e:
        raise CLIError(f"cannot watch this config: {e}") from None
    m = tc.model
    print(f"{args.preset}: {m.n_layers} layer(s) x {m.n_heads} heads, d_model {m.d_model}"
          f"{f', MLP width {m.d_mlp}' if m.d_mlp else ''}; data {tc.data.name}; {tc.steps:,} steps "
          f"of {tc.batch} x {tc.T} tokens; run in {out}")
    bar = None       # drawn at the first step, so that an error before it leaves no bar behind

    def say(line):
        (bar.write if bar is not None else print)(line)

    def on_step(step, loss, refresh=False):
        nonlocal bar
        if bar is None:
            bar = tqdm(total=tc.steps, unit="step", dynamic_ncols=True, desc=args.preset, smoothing=0.1)
        bar.update(step - bar.n)
        bar.set_postfix_str(f"loss {loss:.3f}" + "".join(f", {k} {v}" for k, v in watcher.latest.items()),
                            refresh=refresh)

    watcher.say = say
    try:
        result = train(tc, out, backend=args.backend, overwrite=args.overwrite, progress=False,
                       on_step=on_step, on_snapshot=watcher)
        on_step(result.step, result.final_loss, refresh=True)     # the last snapshot's scores
    except TrainingDiverged as e:
        if bar is not None:
            bar.close()                  # the error line below the bar's last state, not above
        print(f"minih watch: {e}", file=sys.stderr)
        return EXIT_DIVERGED
    finally:
        if bar is not None:
            bar.close()                  # also when train raises (a run in use, a full disk)
    print(watcher.summary())
    print(result.summary())
    if result.status == "interrupted":
        print(f"checkpoint saved; continue with: python -m minih train --resume --out {out}")
        return EXIT_INTERRUPTED
    print(f"next: python -m minih analyze {out}   (every head at every snapshot)")
    return 0
