"""`python -m minih ablate RUN`: ablate every head at every snapshot; tables and heatmaps.

    minih ablate runs/induction-2l                    # pattern-preserving ablation
    minih ablate runs/induction-2l --kind all         # zero, mean and pattern
    minih ablate runs/induction-2l --every 5 --out /tmp/abl

Writes into RUN/ablation (or --out):
    ablation_{kind}.csv     one row per (snapshot, ablated head or layer "L1*"): ICL clean/ablated, dICL,
                            mean loss clean/ablated, phase-change attribution
    ablation_{kind}.json    the same as [heads x snapshots] arrays, the ICL indices,
                            the phase-change window and the sweep's wall time
    dicl_{kind}.png         heatmap of dICL_h, heads x snapshots
    phase_attr_{kind}.png   heatmap of the phase-change attribution, heads x snapshots
    paths.csv, paths.json   term importance of the path expansion at the last snapshot
                            (attention-only models; skipped, with a note, for MLP models)
With MLPs, "pattern" freezes every attention pattern and the ln1/final LayerNorm scales;
LN2 and the MLPs are recomputed on the ablated stream.
Formulas and choices: docs/06_ablations.md.
"""
from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

from ..interp.ablation import KINDS
from ..interp.attribution import phase_direction, phase_window, steepest_fall, sweep_heads
from . import CLIError, output_dir
from ..interp.paths import term_importance

MAX_PATHS = 1000        # skip the path expansion above this many terms ((1+H)^n_layers)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = __doc__
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("run", help="a run directory written by `minih train`")
    p.add_argument("--kind", default="pattern", choices=list(KINDS) + ["all"],
                   help="ablation: zero, mean (per-position mean over the eval set), pattern "
                        "(patterns and ln1/final LayerNorm scales frozen; default), or all three")
    p.add_argument("--out", default=None, metavar="DIR", help="output directory (default RUN/ablation)")
    p.add_argument("--every", type=int, default=1, metavar="N",
                   help="use every N-th snapshot (the last one always) (default 1: all)")
    p.add_argument("--backend", default="numpy", choices=["numpy", "numba"],
                   help="numpy (default: on the small models of the presets it is the faster one, "
                        "since each forward is short and Numba's first calls cost more) or numba")
    p.add_argument("--no-paths", action="store_true", help="skip the path expansion")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def attribute(run, kind: str, every: int = 1, backend: str = "numpy", progress: bool = True) -> dict:
    """The sweep of one ablation kind over `run`, with dICL and the phase attribution: a dict
    of plain lists/arrays, ready for the tables (see the module docstring)."""
    from ..interp.metrics import icl_indices, icl_score
    snapshots = np.unique(np.r_[np.arange(0, len(run), every), len(run) - 1])
    window, _, _, note = phase_window(run)
    before, after = steepest_fall(run)           # the attribution projects on this change
    direction = None if before is None else phase_direction(run.losses[before], run.losses[after])
    sweep = sweep_heads(run, kind, snapshots=snapshots, direction=direction, backend=backend,
                        progress=progress)
    T = run.eval_tokens.shape[1]
    early, late = icl_indices(T)
    # ICL of the per-position means == ICL of the losses (the mean over examples is linear)
    icl_clean = icl_score(sweep.clean_by_pos[:, None, :], early, late)         # [S]
    icl_ablated = icl_score(sweep.ablated_by_pos[:, :, None, :], early, late)  # [K,S]
    out = {"kind": kind, "units": [[list(h) for h in u] for u in sweep.units],
           "labels": sweep.labels,
           "snapshots": sweep.snapshots.tolist(), "steps": sweep.steps.tolist(),
           "tokens_seen": sweep.tokens_seen.tolist(),
           "icl_indices_1based": [early, late], "icl_clean": icl_clean,
           "icl_ablated": icl_ablated, "dicl": icl_ablated - icl_clean[None],
           "loss_clean": sweep.clean_by_pos.mean(axis=-1), "dloss": sweep.dloss(),
           "phase_attr": sweep.phase_attr, "phase_note": note,
           "phase_window": None if window is None else {
               "start_tokens": window.start_tokens, "end_tokens": window.end_tokens,
               "direction_snapshots": [before, after],   # around the steepest ICL fall
               "phase_change_norm": None if direction is None else
               float(np.linalg.norm(run.losses[after].astype(np.float64) - run.losses[before]))},
           "max_diff_vs_stored_losses": sweep.max_stored_diff,
           "seconds": round(sweep.seconds, 2), "backend": backend,
           "forward_passes": int(len(snapshots) * (len(sweep.units) + 1))}
    return out


def write_tables(result: dict, out_dir: Path) -> list[Path]:
    """ablation_{kind}.csv (long: one row per snapshot and head) and ablation_{kind}.json."""
    kind = result["kind"]
    csv_path, json_path = out_dir / f"ablation_{kind}.csv", out_dir / f"ablation_{kind}.json"
    attr = result["phase_attr"]
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["snapshot", "step", "tokens_seen", "ablated", "icl_clean", "icl_ablated",
                    "dicl", "loss_clean", "dloss", "phase_attr"])
        for si, snap in enumerate(result["snapshots"]):
            for k, label in enumerate(result["labels"]):
                w.writerow([snap, result["steps"][si], result["tokens_seen"][si], label,
                            f"{result['icl_clean'][si]:.6g}", f"{result['icl_ablated'][k, si]:.6g}",
                            f"{result['dicl'][k, si]:.6g}", f"{result['loss_clean'][si]:.6g}",
                            f"{result['dloss'][k, si]:.6g}",
                            "" if attr is None else f"{attr[k, si]:.6g}"])
    with open(json_path, "w") as f:
        json.dump(_jsonable(result), f, indent=1)
    return [csv_path, json_path]


def write_figures(result: dict, out_dir: Path) -> list[Path]:
    """Heatmaps head x snapshot of dICL and of the phase-change attribution."""
    from ..app.figures import head_by_snapshot
    kind, labels, x = result["kind"], result["labels"], np.asarray(result["tokens_seen"])
    win = result["phase_window"]
    where = "" if win is None else (f"\nphase-change window {win['start_tokens']:.3g}-"
                                    f"{win['end_tokens']:.3g} tokens")
    paths = [head_by_snapshot(out_dir / f"dicl_{kind}.png", result["dicl"], labels, x,
                              f"dICL = ICL(ablated) - ICL(clean), {kind} ablation{where}",
                              "dICL (nats); > 0: the head carries ICL")]
    if result["phase_attr"] is not None:
        paths.append(head_by_snapshot(out_dir / f"phase_attr_{kind}.png", result["phase_attr"], labels, x,
                                      f"phase-change attribution v.(L_ablated - L), {kind} ablation{where}",
                                      "nats; < 0: the head carries the phase change"))
    return paths


def write_paths(run, out_dir: Path, backend: str) -> list[Path]:
    """Term importance of the path expansion at the last snapshot: paths.csv and paths.json."""
    cfg = run.cfg
    ti = term_importance(run.params(len(run) - 1), run.eval_tokens, cfg, backend=backend)
    rows = sorted(ti["terms"], key=lambda r: -r["importance"])
    with open(out_dir / "paths.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["term", "order", "loss_without", "importance"])
        for r in rows:
            w.writerow([r["name"], r["order"], f"{r['loss_without']:.6g}", f"{r['importance']:.6g}"])
    with open(out_dir / "paths.json", "w") as f:
        json.dump({"snapshot": len(run) - 1, "step": int(run.steps[-1]), "loss": ti["loss"],
                   "order_loss": {str(k): v for k, v in ti["order_loss"].items()},
                   "terms": [{k: v for k, v in r.items() if k != "path"} for r in rows]}, f, indent=1)
    return [out_dir / "paths.csv", out_dir / "paths.json"]


def _jsonable(obj):
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return np.round(obj.astype(np.float64), 6).tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def run(args) -> int:
    from ..training.run import load_run
    if args.every < 1:
        raise CLIError(f"--every must be >= 1, got {args.every}")
    r = load_run(args.run)
    if len(r) == 0:
        raise CLIError(f"{args.run} has no snapshots yet")
    from ..interp.metrics import icl_indices
    try:
        icl_indices(r.eval_tokens.shape[1])
    except ValueError as e:
        raise CLIError(f"{args.run}: ablation measures the ICL score on the run's evaluation "
                       f"examples, and {e}") from None
    out_dir = output_dir(args.out if args.out else r.path / "ablation")
    kinds = list(KINDS) if args.kind == "all" else [args.kind]
    if r.cfg.d_mlp and "pattern" in kinds:
        print(f"note: the model has MLPs (d_mlp={r.cfg.d_mlp}); pattern ablation freezes every "
              f"attention pattern and the ln1/final LayerNorm scales, while LN2 and the MLPs "
              f"are recomputed on the ablated stream")
    written = []
    for kind in kinds:
        result = attribute(r, kind, args.every, args.backend, progress=not args.quiet)
        written += write_tables(result, out_dir) + write_figures(result, out_dir)
        top = np.argsort(-result["dicl"][:, -1])[:3]
        print(f"{kind}: {result['forward_passes']} forward passes in {result['seconds']:.1f} s; "
              f"largest dICL at the last snapshot: "
              + ", ".join(f"{result['labels'][k]} {result['dicl'][k, -1]:+.3f}" for k in top))
        if result["phase_note"]:
            print(f"{kind}: {result['phase_note']}")
    n_paths = (1 + r.cfg.n_heads) ** r.cfg.n_layers
    if not args.no_paths:
        if r.cfg.d_mlp:
            print(f"path expansion skipped: the model has MLPs (d_mlp={r.cfg.d_mlp}), and path "
                  f"expansion is for attention-only models (an MLP is not linear)")
        elif n_paths <= MAX_PATHS:
            written += write_paths(r, out_dir, args.backend)
        else:
            print(f"path expansion skipped: {n_paths} terms > {MAX_PATHS}")
    print(f"wrote {len(written)} files to {out_dir}")
    return 0
