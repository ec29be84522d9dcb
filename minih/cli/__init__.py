"""The command line: `python -m minih COMMAND ...` (also the `minih` console script).

Each command is a pair (add_arguments, run) registered in COMMANDS. Bad options or
values print one clear line and exit with code 2 (argparse's convention). What the
user's machine refuses (a file that cannot be read or written, memory that runs out)
prints one line and exits with code 1, and so does a run directory that another process
is writing; Ctrl-C prints one line and exits with 130. Any other exception is a bug in
minih and keeps its traceback.
"""
from __future__ import annotations

import argparse
import importlib
import dataclasses
import os
import sys
from pathlib import Path

from ..config import ModelConfig, PRESETS
from ..training.run import RunInUse

EXIT_BUSY = 1              # the run directory is being written by another process
EXIT_INTERRUPTED = 130     # the shell's convention for "stopped by Ctrl-C"


class CLIError(Exception):
    """A bad option or value: printed as one line, exit code 2."""


def output_dir(path, option: str = "--out") -> Path:
    """Create the output folder `path` (and its parents) or raise CLIError saying why not."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise CLIError(f"{option} {path}: is a file, not a folder; choose a folder")
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            raise CLIError(f"{option} {path}: {parent} is a file, so no folder can be made in it")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CLIError(f"{option} {path}: cannot create the folder ({e.strerror})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise CLIError(f"{option} {path}: the folder is not writable; choose another with {option}")
    return path


def output_file(path, option: str = "--out") -> Path:
    """Check that the file `path` can be written (its folder is created) or raise CLIError."""
    path = Path(path)
    if path.is_dir():
        raise CLIError(f"{option} {path}: is a folder; give a file name, e.g. {path / 'out.json'}")
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            raise CLIError(f"{option} {path}: {parent} is a file, so nothing can be written in it")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CLIError(f"{option} {path}: cannot create its folder ({e.strerror})") from None
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise CLIError(f"{option} {path}: its folder {path.parent} is not writable")
    if path.exists() and not os.access(path, os.W_OK):
        raise CLIError(f"{option} {path}: the file is not writable")
    return path


def os_error_line(e: OSError) -> str:
    """One line for an error of the file system: what failed, on which file."""
    what = e.strerror or str(e) or type(e).__name__
    name = f"{e.filename}: " if e.filename is not None else ""
    return f"{name}{what}" + (f" -> {e.filename2}" if getattr(e, "filename2", None) else "")


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
    "watch": ("train one preset with a live prefix-matching and ICL score: watch the head form",
              "minih.cli.watch"),
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
    prefix = f"minih {args.command}"
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
        # bad option values, config errors, damaged input files: one line, exit code 2
        print(f"{prefix}: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except RunInUse as e:
        print(f"{prefix}: error: {e}", file=sys.stderr)
        return EXIT_BUSY
    except BrokenPipeError:
        # the reader of our output went away (e.g. `minih gradcheck | head -1`): not an error
        # to report; point stdout at /dev/null so the interpreter's final flush stays quiet
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):          # stdout is not a real file (e.g. captured)
            pass
        return 141
    except OSError as e:
        # the file system said no: a missing, unreadable or unwritable file, a full disk
        print(f"{prefix}: error: {os_error_line(e)}", file=sys.stderr)
        return 1
    except MemoryError:
        print(f"{prefix}: error: out of memory; make the model, batch or evaluation set smaller",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prefix}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _one_line(e: Exception) -> str:
    """The message of `e` on one line (messages with hints may span several)."""
    return " ".join(part.strip() for part in str(e).splitlines() if part.strip()) or type(e).__name__


if __name__ == "__main__":
    sys.exit(main())
