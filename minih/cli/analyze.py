"""`python -m minih analyze RUN`: every head metric and circuit for every snapshot of a run."""
from __future__ import annotations

from pathlib import Path

from . import CLIError, output_dir
from ..interp.analysis import analyze
from ..training.run import load_run

TEXT_LEN = 256


def add_arguments(p) -> None:
    p.add_argument("run", help="run directory (written by `minih train`)")
    p.add_argument("--out", default=None, help="output folder (default: RUN/analysis)")
    p.add_argument("--backend", default="numpy", choices=["numpy", "numba"],
                   help="numpy (default: on the small models of the presets it is the faster one, "
                        "since each forward is short and Numba's first calls cost more) or numba")
    p.add_argument("--n-text", type=int, default=4, help="evaluation examples for the text scores (default 4)")
    p.add_argument("--text-len", type=int, default=TEXT_LEN, help="tokens of each (default 256)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random test sequences")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args) -> int:
    if args.n_text < 1:
        raise CLIError(f"--n-text must be >= 1, got {args.n_text}")
    if args.text_len < 2:
        raise CLIError(f"--text-len must be >= 2 (the previous-token score needs two positions), "
                       f"got {args.text_len}")
    if args.seed < 0:
        raise CLIError(f"--seed must be >= 0, got {args.seed}")
    if args.out is not None:
        load_run(args.run)              # a bad run is reported before any folder is made
        output_dir(args.out)
    result = analyze(args.run, out_dir=args.out, backend=args.backend, n_text=args.n_text,
                     text_len=args.text_len, seed=args.seed, progress=not args.quiet)
    out = Path(args.out) if args.out else Path(args.run) / "analysis"
    n_snap = len(result.snapshots["step"])
    used = result.settings
    if used["n_text"] < args.n_text or (args.text_len != TEXT_LEN and used["text_len"] < args.text_len):
        print(f"note: the run's evaluation set holds {used['n_text']} examples of "
              f"{used['text_len']} tokens; used those (asked for --n-text {args.n_text}, "
              f"--text-len {args.text_len})")
    print(f"analysed {n_snap} snapshots in {result.settings['seconds']:.1f} s -> "
          f"{out}/heads.csv, composition.csv, snapshots.csv, analysis.json")
    last = [r for r in result.rows("heads") if r["snapshot"] == n_snap - 1]
    best = max(last, key=lambda r: -1 if r["prefix_matching"] is None else r["prefix_matching"])
    print(f"last snapshot: strongest prefix matching {best['prefix_matching']:.3f} in head {best['name']}"
          f" (copying eigen {best['copying_eigen'] if best['copying_eigen'] is not None else float('nan'):.3f})")
    if result.settings["d_mlp"]:
        print(f"note: the model has MLPs (d_mlp={result.settings['d_mlp']}); the circuits "
              f"(composition, K-composition trace, copying) read the attention weights and "
              f"ignore them, the pattern and loss scores run the whole model")
    w = result.phase_change
    if w:
        print(f"phase-change window (ICL score 10%->90%): {w['start_tokens']:.3g} -> "
              f"{w['end_tokens']:.3g} tokens")
    return 0
