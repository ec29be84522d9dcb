"""08 — the whole paper in one call: minih.app.reproduce.

Shows: the Python equivalent of `python -m minih reproduce --quick`: trains the
1/2/3-layer and smeared-key models on repeated tokens and a 2-layer model on the
Argument-4 tasks, measures everything, and writes report.md / report.html with the
figures. Re-running reuses the finished runs and only redoes the analysis.

Takes: about a minute on a 2-core CPU with --quick (the default here); the full size
(--full) adds a text model and trains longer. --tiny checks the pipeline in seconds
(tiny models learn nothing; every verdict will say NOT reproduced).
Prints: progress, then where the report is and one verdict per argument.

    python examples/08_full_reproduction.py [--full | --tiny] [--out DIR]
"""
import argparse

from minih.app.reproduce import reproduce

parser = argparse.ArgumentParser()
size = parser.add_mutually_exclusive_group()
size.add_argument("--full", action="store_true", help="the full size (longer, adds the text model)")
size.add_argument("--tiny", action="store_true", help="pipeline check only (for tests)")
parser.add_argument("--out", default="reproduction", help="output folder")
args = parser.parse_args()

numbers = reproduce(out=args.out, size="full" if args.full else "tiny" if args.tiny else "quick",
                    progress=not args.tiny)
a3 = numbers["argument_3"]
if a3.get("share_removed") is not None:
    print(f"ablating the induction heads {a3['heads']} removed {a3['share_removed']:.0%} of the ICL score")
