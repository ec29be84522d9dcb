"""python -m minih.exercises {list, start N [--out DIR], check N [--file PATH | --solution]}"""
import argparse
import shutil
import sys
from pathlib import Path

from .registry import EXERCISES, ExerciseFailed, check_file, get_exercise


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m minih.exercises",
                                     description="Classroom exercises: fill in a function, then check it.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("list", help="list the exercises")
    start = sub.add_parser("start", help="copy exercise N's blank file into the current folder")
    start.add_argument("number", type=int)
    start.add_argument("--out", type=Path, default=None, metavar="DIR",
                       help="folder to write the file into (default: the current folder)")
    check = sub.add_parser("check", help="check your solution of exercise N")
    check.add_argument("number", type=int)
    check.add_argument("--file", type=Path, default=None,
                       help="your file (default: ./exNN_name.py in the current folder)")
    check.add_argument("--solution", action="store_true", help="check the worked solution instead")
    args = parser.parse_args(argv)
    try:
        return _run(args)
    except OSError as e:            # a folder that cannot be written, a file that cannot be read
        what = e.strerror or type(e).__name__
        print(f"error: {e.filename}: {what}" if e.filename else f"error: {what}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _run(args) -> int:
    if args.command == "list":
        for ex in EXERCISES:
            print(f"{ex.number:>2}  {ex.title:<40} {ex.filename}")
        return 0
    try:
        ex = get_exercise(args.number)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.command == "start":
        folder = Path.cwd() if args.out is None else args.out
        if folder.exists() and not folder.is_dir():
            print(f"error: --out {folder}: is a file, not a folder", file=sys.stderr)
            return 2
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            print(f"error: --out {folder}: cannot create the folder ({e.strerror})", file=sys.stderr)
            return 2
        target = folder / ex.filename
        if target.exists():
            print(f"{target} already exists; not overwriting your work")
            return 1
        shutil.copyfile(ex.skeleton(), target)
        print(f"wrote {target}: fill in {ex.function}, then run "
              f"`python -m minih.exercises check {ex.number}`"
              + ("" if args.out is None else f" --file {target}"))
        return 0
    path = ex.solution() if args.solution else (args.file or Path.cwd() / ex.filename)
    try:
        passed = check_file(ex.number, path)
    except ExerciseFailed as e:
        print(f"exercise {ex.number} ({ex.title}): NOT YET\n  {e}")
        return 1
    print(f"exercise {ex.number} ({ex.title}): PASSED ({', '.join(passed)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
