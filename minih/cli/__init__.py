"""The command line: `python -m minih COMMAND ...` (also the `minih` console script).

Each command is a pair (add_arguments, run) registered in COMMANDS. Bad options or
values print one clear line and exit with code 2 (argparse's convention); a run
directory that another process is writing, exit code 1; Ctrl-C before a command
has its own handling, code 130. No traceback reaches the terminal for any of them.
"""
from __future__ import annotations

import argparse
import importlib
import dataclasses
import sys

from ..config import ModelConfig, PRESETS
from ..training.run import RunInUse

EXIT_BUSY = 1              # the run directory is being written by another process
EXIT_INTERRUPTED = 130     # the shell's convention for "stopped by Ctrl-C"


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


# command -> (one-line help, module). Each module has add_arguments(parser) and
# run(args) -> exit code; it is imported only when its command runs, so
# `minih gradcheck` never pays for matplotlib or Numba. Register a command here.
COMMANDS = {
    "reproduce": ("train the model family, measure everything, write the report (the main job)",
                  "minih.cli.reproduce"),
    "train": ("train a model, writing snapshots and per-token losses to a run directory",
              "minih.cli.train"),
    "ablate": ("ablate every head at every snapshot of a run: dICL, phase-change attribution, paths",
               "minih.cli.ablate"),
    "gradcheck": ("check the backward pass against finite differences (float64)",
                  "minih.cli.gradcheck"),
    "analyze": ("every head metric and circuit for every snapshot of a run, as CSV/JSON tables",
                "minih.cli.analyze"),
    "sweep": ("train presets x settings x seeds as independent tasks, on a Dask cluster or serially",
              "minih.cli.sweep"),
    "bench": ("training speed: numpy and numba backends beside PyTorch, GFLOP/s, start times",
              "minih.cli.bench"),
}


# commands that must see minih exactly as a library does (they time it)
MEASURES_AS_A_LIBRARY = ("bench",)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="minih", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    argv = sys.argv[1:] if argv is None else argv
    for name, (help_text, module) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name in argv:                      # only the chosen command's module is imported
            importlib.import_module(module).add_arguments(p)
    args = parser.parse_args(argv)
    try:
        command = importlib.import_module(COMMANDS[args.command][1])
        if args.command in MEASURES_AS_A_LIBRARY:
            return command.run(args)
        # BLAS on one thread of its own: the commands' models are small, and on a shared
        # machine BLAS's busy-waiting threads made them several times slower
        from ..kernels.blas_threads import single_threaded_blas
        with single_threaded_blas():
            return command.run(args)
    except (CLIError, ValueError) as e:
        # bad option values and config errors: one line, exit code 2
        print(f"minih {args.command}: error: {e}", file=sys.stderr)
        return 2
    except RunInUse as e:
        print(f"minih {args.command}: error: {e}", file=sys.stderr)
        return EXIT_BUSY
    except KeyboardInterrupt:
        print(f"minih {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
