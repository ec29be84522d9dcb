"""`python -m minih train`: train a preset, change any field with --set, watch it, resume it.

    minih train induction-2l                       # -> runs/induction-2l
    minih train induction-2l --set lr=3e-3 --set n_layers=3 --tokens 2e6 --out runs/x
    minih train --resume --out runs/x              # continue a killed or interrupted run
    minih train --list                             # presets

--set KEY=VALUE goes to the first of these that has the field KEY:
    TrainConfig (steps, batch, warmup, ...), its optimizer AdamWConfig (lr, beta1, beta2,
    eps, weight_decay, grad_clip), ModelConfig (n_layers, d_model, init_embed_std, ...);
    `data=NAME` switches the data source, `data.KEY=VALUE` sets one of its options.
The model's d_vocab follows the data's (and the other way round) unless both are set.

One process writes a run directory at a time: a second `train` on the same --out
stops with one line. Ctrl-C or SIGTERM: the current step ends, a checkpoint is
written, and the command exits with code 130.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from pathlib import Path

from . import EXIT_INTERRUPTED, CLIError, parse_overrides   # 130 after Ctrl-C or SIGTERM
from ..config import ModelConfig
from ..data import SOURCES, get_source_class, make_source, source_to_dict

EXIT_DIVERGED = 1


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..training.config import TRAIN_PRESETS
    p.description = __doc__
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("preset", nargs="?", default=None,
                   help=f"training preset: one of {', '.join(sorted(TRAIN_PRESETS))} "
                        f"(default induction-2l; not needed with --resume)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="change a TrainConfig or ModelConfig field, e.g. --set lr=3e-3 --set n_layers=1; "
                        "data=NAME picks the data source (" + ", ".join(sorted(SOURCES)) + "), "
                        "data.KEY=VALUE sets its options, e.g. --set data.max_len=16")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="run directory to write (default runs/PRESET)")
    p.add_argument("--backend", default=None, choices=["numpy", "numba"],
                   help="numba: the compiled twin (default for a new run: the faster here); numpy: the "
                        "readable reference; with --resume, default: the run's own")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--steps", type=int, default=None, help="optimizer steps (default: the preset's)")
    budget.add_argument("--tokens", type=float, default=None,
                        help="training tokens instead of steps, e.g. 2e6 (rounded up to whole steps)")
    p.add_argument("--seed", type=int, default=None, help="seed of the initial weights and the batches "
                                                          "(default: the preset's, 0)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its checkpoint (bit-identical to an "
                        "uninterrupted run); --steps/--tokens may extend it")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a run already in --out (also its analysis/ and ablation/ folders)")
    p.add_argument("--checkpoint-seconds", type=float, default=60.0, metavar="S",
                   help="write a checkpoint at least every S seconds of training (default 60); "
                        "always at the end and on Ctrl-C")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")
    p.add_argument("--list", action="store_true", help="list the presets and exit")


def build_config(preset: str, sets: list[str], steps=None, tokens=None, seed=None):
    """The TrainConfig of a preset with the command line's changes applied."""
    from ..optim import AdamWConfig
    from ..training.config import OPTIM_FIELDS, TrainConfig
    tc = TrainConfig.preset(preset)
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)} - {"model", "data", "optim"}
    model_fields = {f.name for f in dataclasses.fields(ModelConfig)}
    train_pairs, optim_pairs, model_pairs, data_pairs, data_name = [], [], [], [], None
    for pair in sets:
        if "=" not in pair:
            raise CLIError(f"--set expects KEY=VALUE, got {pair!r}")
        key = pair.split("=", 1)[0].strip()
        if key == "data":
            data_name = pair.split("=", 1)[1].strip()
            if data_name not in SOURCES:
                raise CLIError(f"--set data: unknown source {data_name!r}; sources are {sorted(SOURCES)}")
        elif key.startswith("data."):
            data_pairs.append(pair[len("data."):])
        elif key in train_fields:
            train_pairs.append(pair)
        elif key in OPTIM_FIELDS:
            optim_pairs.append(pair)
        elif key in model_fields:
            model_pairs.append(pair)
        else:
            raise CLIError(f"--set: unknown field {key!r}; TrainConfig fields are {sorted(train_fields)}, "
                           f"optimizer fields are {list(OPTIM_FIELDS)}, ModelConfig fields are "
                           f"{sorted(model_fields)}, and data / data.OPTION")
    changes = {**parse_overrides(train_pairs, TrainConfig), **parse_overrides(optim_pairs, AdamWConfig)}
    model_changes = parse_overrides(model_pairs, ModelConfig)
    name = data_name or tc.data.name
    given = parse_overrides(data_pairs, get_source_class(name))
    data_options = dict(given)
    if data_name is None:          # keep the preset's options, change the ones given
        data_options = {**{k: v for k, v in source_to_dict(tc.data).items() if k != "name"}, **given}
    # one vocabulary: the data's d_vocab follows a model d_vocab given alone ...
    if "d_vocab" in model_changes and "d_vocab" not in given and \
            "d_vocab" in {f.name for f in dataclasses.fields(get_source_class(name))}:
        data_options["d_vocab"] = model_changes["d_vocab"]
    data = make_source(name, **data_options)
    # ... and otherwise the model's d_vocab follows the data's
    model_changes.setdefault("d_vocab", data.d_vocab)
    if seed is not None:
        changes["seed"] = seed
    tc = tc.replace(model=tc.model.replace(**model_changes), data=data, **changes)
    return tc if steps is None and tokens is None else tc.replace(steps=budget_steps(tc, steps, tokens))


def new_run_dir(out: str | None, preset: str, overwrite: bool) -> Path:
    """The directory a new run goes to (--out, default runs/PRESET), or CLIError if it is a
    file or already holds a run that --overwrite does not allow replacing."""
    if out is not None and not out.strip():
        raise CLIError(f"--out must name a directory, got {out!r}")
    out = Path(out or Path("runs") / preset)
    if out.exists() and not out.is_dir():
        raise CLIError(f"--out {out} is a file, not a directory: choose a directory for the run")
    if (out / "run.json").exists() and not overwrite:
        raise CLIError(f"{out} already holds a run: continue it with `minih train --resume --out "
                       f"{out}`, replace it with --overwrite, or choose another --out")
    return out


def budget_steps(tc, steps, tokens) -> int:
    if steps is not None:
        if steps < 1:
            raise CLIError(f"--steps must be >= 1, got {steps}")
        return steps
    if not tokens > 0 or math.isinf(tokens):
        raise CLIError(f"--tokens must be a positive number, got {tokens}")
    return math.ceil(tokens / tc.tokens_per_step)


def run(args) -> int:
    from ..training.config import TRAIN_PRESETS
    from ..training.loop import TrainingDiverged, saved_config, train
    if args.list:
        for name, tc in TRAIN_PRESETS.items():
            m = tc.model
            print(f"{name:14s} {m.n_layers} layer(s), {m.n_heads} heads, d_model {m.d_model}, n_ctx {m.n_ctx}"
                  f"{', smeared keys' if m.smeared_keys else ''}; data {tc.data.name}; {tc.steps} steps "
                  f"x {tc.tokens_per_step} tokens; lr {tc.optim.lr:g}")
        return 0
    if args.out is not None and not args.out.strip():
        raise CLIError(f"--out must name a directory, got {args.out!r}")
    if args.resume:
        if args.out is None:
            raise CLIError("--resume needs --out DIR (the run to continue)")
        if args.set or args.seed is not None or args.overwrite:
            raise CLIError("--resume continues a run with its own config: --set, --seed and "
                           "--overwrite cannot be combined with it")
        from ..training.run import load_run
        saved = saved_config(load_run(args.out).manifest, args.out)
        tc = None if args.steps is None and args.tokens is None else \
            saved.replace(steps=budget_steps(saved, args.steps, args.tokens))
        out = Path(args.out)
    else:
        preset = args.preset or "induction-2l"
        if preset not in TRAIN_PRESETS:
            raise CLIError(f"unknown preset {preset!r}; presets are {sorted(TRAIN_PRESETS)}")
        tc = build_config(preset, args.set, args.steps, args.tokens, args.seed)
        out = new_run_dir(args.out, preset, args.overwrite)
    if not math.isfinite(args.checkpoint_seconds) or args.checkpoint_seconds <= 0:
        raise CLIError(f"--checkpoint-seconds must be a finite number > 0, got {args.checkpoint_seconds}")
    try:
        result = train(tc, out, resume=args.resume, backend=args.backend, overwrite=args.overwrite,
                       progress=not args.no_progress, checkpoint_seconds=args.checkpoint_seconds)
    except TrainingDiverged as e:
        print(f"minih train: {e}", file=sys.stderr)
        return EXIT_DIVERGED
    print(result.summary())
    if result.status == "interrupted":
        print(f"checkpoint saved; continue with: python -m minih train --resume --out {out}")
        return EXIT_INTERRUPTED
    return 0
