"""The command line: `python -m minih COMMAND ...` (also the `minih` console script).

Each command is a pair (add_arguments, run) registered in COMMANDS. Bad options or
values print one clear line and exit with code 2 (argparse's convention).
"""
from __future__ import annotations

import argparse
import dataclasses
import sys

from .config import ModelConfig, PRESETS


class CLIError(Exception):
    """A bad option or value: printed as one line, exit code 2."""


def parse_overrides(pairs: list[str], config_class=ModelConfig) -> dict:
    """Turn ["n_layers=3", "layernorm=false"] into typed values for `config_class`'s fields."""
    fields = {f.name: f for f in dataclasses.fields(config_class)}
    out = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise CLIError(f"--set expects key=value, got {pair!r}")
        key, raw = pair.split("=", 1)
        key = key.strip()
        if key not in fields:
            raise CLIError(f"--set: unknown field {key!r}; fields are {sorted(fields)}")
        default = fields[key].default
        try:
            if isinstance(default, bool):
                if raw.lower() not in ("true", "false", "1", "0"):
                    raise ValueError
                value = raw.lower() in ("true", "1")
            elif isinstance(default, int):
                value = int(raw)
            elif isinstance(default, float):
                value = float(raw)
            else:
                value = raw
        except ValueError:
            raise CLIError(f"--set {key}: {raw!r} is not a valid {type(default).__name__}") from None
        out[key] = value
    return out


# --- gradcheck ------------------------------------------------------------------------

def _gradcheck_args(p: argparse.ArgumentParser):
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


def _gradcheck_run(args) -> int:
    from .gradcheck import gradcheck
    cfg = ModelConfig.preset(args.preset, **parse_overrides(args.set))
    report = gradcheck(cfg, seed=args.seed, batch=args.batch, seq_len=args.seq_len,
                       max_entries=args.max_entries, backend=args.backend)
    print(report)
    ok = report.ok(args.tol)
    print(f"{'PASS' if ok else 'FAIL'}: max relative error {report.max_rel_err:.2e} "
          f"{'<' if ok else '>='} tolerance {args.tol:.0e}")
    return 0 if ok else 1


COMMANDS = {
    "gradcheck": ("check the backward pass against finite differences (float64)",
                  _gradcheck_args, _gradcheck_run),
    # code in minih/train_cli.py, imported when used (it imports this module)
    "train": ("train a model, writing snapshots and per-token losses to a run directory",
              lambda p: __import__("minih.train_cli", fromlist=["_"]).add_arguments(p),
              lambda args: __import__("minih.train_cli", fromlist=["_"]).run(args)),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="minih", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (help_text, add_args, _) in COMMANDS.items():
        add_args(sub.add_parser(name, help=help_text, description=help_text))
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command][2](args)
    except (CLIError, ValueError) as e:
        # bad option values and config errors: one line, exit code 2
        print(f"minih {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
