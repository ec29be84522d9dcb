"""Analyse a run: every metric of minih.metrics, for every snapshot and head, in tidy tables.

    result = minih.analyze("runs/induction-2l")       # also writes runs/.../analysis/
    python -m minih analyze runs/induction-2l

Three tables (a dict of columns each; written as CSV, and all together as JSON):

    heads        one row per snapshot x head: prefix matching, previous-token,
                 duplicate-token, both copying scores, TransformerLens detector scores,
                 positional split, strongest Q/K/V composition into the head (raw and
                 minus the random baseline), K-composition QK trace
    composition  one row per snapshot x (earlier head, later head) pair: Q/K/V
                 composition, raw and minus baseline; K-composition QK trace and
                 eigenvalue positivity
    snapshots    one row per snapshot: step, tokens seen, mean eval loss, ICL score,
                 the run's trajectory in the first two PCA components of per-token loss

plus the phase-change window (on the ICL score), the loss bump (on the mean eval
loss; the evaluation set comes from the data source's eval_set, which for text is
plain held-out text even when training mixes in repeated windows), if they exist, and the
[snapshots, positions] eval-loss heatmap (analysis.json only).

The test inputs are fixed once per run, so every snapshot is measured on the same
tokens: prefix matching on [BOS] + R*4 sequences, copying on 25-token random
sequences, and the text scores (previous-token, duplicate-token, detectors on text,
positional split) on the first `n_text` evaluation examples, cut to `text_len` tokens.
For byte-level text runs (manifest data.tokens == "bytes") the random tokens skip the
10% most and least frequent tokens of the evaluation set (our stand-in for the
training data's counts); for synthetic vocabularies every token is a candidate.

Models with MLPs: the pattern and loss scores run the whole model, MLPs included; the
circuits (composition, K-composition trace, eigenvalue copying) and the empirical
copying score's direct path ignore the MLPs (minih.metrics). settings["d_mlp"] says
which kind of model was analysed.

Shape legend: S snapshots, L layers, H heads
"""
from __future__ import annotations

import csv
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import metrics as M
from ..config import check_int
from ..training.run import load_run


@dataclass
class Analysis:
    """The result of analyze(): tables as dicts of equal-length columns, plus summaries."""
    heads: dict
    composition: dict
    snapshots: dict
    phase_change: dict | None
    loss_bump_tokens: float | None
    loss_by_position: np.ndarray          # [S, T-1] the eval loss heatmap (IH)
    settings: dict = field(default_factory=dict)

    def rows(self, table: str = "heads") -> list[dict]:
        """One table as a list of row dicts."""
        cols = getattr(self, table)
        n = len(next(iter(cols.values()))) if cols else 0
        return [{k: _plain(v[i]) for k, v in cols.items()} for i in range(n)]


def _plain(x):
    """numpy scalar -> Python scalar; NaN -> None (valid JSON, empty CSV cell)."""
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _head_name(layer: int, head: int) -> str:
    return f"{layer}.{head}"


def token_counts(run):
    """Token frequencies [V] for the random test sequences of a text run, so they skip the
    most and least frequent tokens (IH, "prefix matching"); None for synthetic
    vocabularies, where every token is equally common (text_token_counts)."""
    return text_token_counts(run.manifest.get("data") or {}, run.eval_tokens, run.cfg.d_vocab)


def text_token_counts(data: dict, eval_tokens, d_vocab: int):
    """Token frequencies [V] counted on the evaluation text (held-out text from the same
    corpus) when the data source `data` (its describe()) is text, bytes or BPE; else None."""
    if data.get("tokens") in ("bytes", "bpe"):
        return np.bincount(np.asarray(eval_tokens).ravel(), minlength=d_vocab)
    return None


def fixed_inputs(run, n_text: int, text_len: int | None, seed: int) -> dict:
    """The fixed inputs every snapshot is measured on (see the module docstring)."""
    cfg = run.cfg
    counts = token_counts(run)
    prefix_tokens, prefix_queries = M.prefix_matching_tokens(
        cfg.d_vocab, n_ctx=cfg.n_ctx, seed=seed, token_counts=counts)
    copy_tokens = M.copying_tokens(cfg.d_vocab, seq_len=min(25, cfg.n_ctx), seed=seed + 1,
                                   token_counts=counts)
    T = run.eval_tokens.shape[1] if text_len is None else min(text_len, run.eval_tokens.shape[1])
    text = run.eval_tokens[:n_text, :T]
    return {"prefix_tokens": prefix_tokens, "prefix_queries": prefix_queries,
            "copy_tokens": copy_tokens, "text": text}


def snapshot_head_metrics(params, cfg, inputs: dict, backend: str = "numpy") -> dict:
    """Every per-head metric of one snapshot: name -> [L, H] (and "pairs": per-pair arrays)."""
    out = {}
    # 1. prefix matching, and TL's induction detector, on the repeated random tokens
    pats, _ = M.stacked_patterns(params, cfg, inputs["prefix_tokens"], backend)
    ptoks = inputs["prefix_tokens"]
    out["prefix_matching"] = np.stack([M.prefix_matching_score(p, ptoks, inputs["prefix_queries"])
                                       for p in pats])
    ind = M.detection_pattern("induction_head", ptoks)
    out["det_induction_mul"] = np.stack([M.detector_score(p, ind, "mul") for p in pats])
    # 2. text scores, on evaluation text
    text = inputs["text"]
    pats, cache = M.stacked_patterns(params, cfg, text, backend)
    out["previous_token"] = np.stack([M.previous_token_score(p) for p in pats])
    with np.errstate(invalid="ignore"):
        out["duplicate_token"] = np.stack([M.duplicate_token_score(p, text) for p in pats])
    prev_det = M.detection_pattern("previous_token_head", text)
    dup_det = M.detection_pattern("duplicate_token_head", text)
    out["det_previous_token_mul"] = np.stack([M.detector_score(p, prev_det, "mul") for p in pats])
    out["det_duplicate_token_mul"] = np.stack([M.detector_score(p, dup_det, "mul") for p in pats])
    for name, share in M.positional_shares(params, cfg, text, backend, cache=cache).items():
        out["pos_" + name] = share
    # 3. copying
    out["copying_empirical"] = M.empirical_copying_scores(params, cfg, inputs["copy_tokens"], backend)
    out["copying_eigen"] = M.eigenvalue_copying_scores(params, cfg)
    # 4. circuits from the weights
    comp = M.composition_scores(params, cfg)                            # kind -> [L,H,L,H]
    trace, positivity = M.k_composition_qk_terms(params, cfg)           # [L,H,L,H]
    out["k_comp_qk_trace"] = M.k_composition_qk_trace(params, cfg, out["previous_token"], trace)
    out["pairs"] = {"q_comp": comp["Q"], "k_comp": comp["K"], "v_comp": comp["V"],
                    "k_qk_trace": trace, "k_qk_positivity": positivity}
    return out


def analyze(run_dir, out_dir=None, backend: str = "numpy", n_text: int = 4,
            text_len: int | None = 256, seed: int = 0, progress: bool = True,
            write: bool = True) -> Analysis:
    """Compute every metric for every snapshot of the run in `run_dir` (see module docstring).

    Writes heads.csv, composition.csv, snapshots.csv and analysis.json into `out_dir`
    (default: RUN/analysis) unless write=False. Returns the Analysis.
    """
    from tqdm.auto import tqdm

    if not isinstance(run_dir, (str, os.PathLike)):
        raise ValueError(f"run_dir must be a path (str or Path), got {type(run_dir).__name__}")
    if out_dir is not None and not isinstance(out_dir, (str, os.PathLike)):
        raise ValueError(f"out_dir must be a path (str or Path) or None, got {type(out_dir).__name__}")
    n_text = check_int(n_text, "n_text", minimum=1)
    if text_len is not None:
        text_len = check_int(text_len, "text_len", minimum=2)   # previous-token needs 2
    seed = check_int(seed, "seed", minimum=0)
    if backend not in ("numpy", "numba"):
        raise ValueError(f"backend must be 'numpy' or 'numba', got {backend!r}")
    run = load_run(run_dir)
    cfg = run.cfg
    if len(run) == 0:
        raise ValueError(f"{run_dir} has no snapshots to analyse")
    if cfg.n_layers == 0:
        raise ValueError(f"{run_dir} holds a 0-layer model: it has no heads to analyse")
    t0 = time.perf_counter()
    inputs = fixed_inputs(run, n_text, text_len, seed)
    baseline = M.composition_baseline(cfg.d_model, cfg.d_head)
    T_eval = run.eval_tokens.shape[1]
    icl = M.icl_score(run.losses) if T_eval >= 12 else np.full(len(run), np.nan)   # [S]
    mean_loss = run.losses.mean(axis=(1, 2))                            # [S]

    heads, pairs = [], []
    for s in tqdm(range(len(run)), desc="analyze", unit="snapshot", disable=not progress):
        m = snapshot_head_metrics(run.params(s), cfg, inputs, backend)
        snap = {"snapshot": s, "step": int(run.steps[s]), "tokens_seen": int(run.tokens_seen[s])}
        for l in range(cfg.n_layers):
            for h in range(cfg.n_heads):
                row = {**snap, "layer": l, "head": h, "name": _head_name(l, h)}
                for name, arr in m.items():
                    if name != "pairs":
                        row[name] = float(arr[l, h])
                # strongest composition into this head from any earlier head
                for kind in ("q_comp", "k_comp", "v_comp"):
                    into = m["pairs"][kind][:l, :, l, h]                # [l,H]
                    if into.size and np.isfinite(into).any():
                        a, h1 = np.unravel_index(np.nanargmax(into), into.shape)
                        row[kind + "_max"] = float(into[a, h1])
                        row[kind + "_max_minus_baseline"] = float(into[a, h1] - baseline)
                        row[kind + "_from"] = _head_name(int(a), int(h1))
                    else:
                        row[kind + "_max"] = row[kind + "_max_minus_baseline"] = float("nan")
                        row[kind + "_from"] = ""
                heads.append(row)
        for b in range(1, cfg.n_layers):
            for a in range(b):
                for h1 in range(cfg.n_heads):
                    for h2 in range(cfg.n_heads):
                        row = {**snap, "src": _head_name(a, h1), "dst": _head_name(b, h2)}
                        for name, arr in m["pairs"].items():
                            row[name] = float(arr[a, h1, b, h2])
                        for kind in ("q_comp", "k_comp", "v_comp"):
                            row[kind + "_minus_baseline"] = row[kind] - baseline
                        pairs.append(row)

    snapshots = {"snapshot": np.arange(len(run)), "step": run.steps, "tokens_seen": run.tokens_seen,
                 "loss": mean_loss, "icl_score": icl}
    if len(run) >= 2:                     # this run's trajectory in per-token-loss space (IH Arg. 1)
        pca = M.loss_pca(run.losses, n_components=2, seed=seed)
        snapshots["pca_1"], snapshots["pca_2"] = pca.trajectories[0].T
    window, bump = _phase_summaries(run.tokens_seen, icl, mean_loss)
    settings = {"run": str(run_dir), "backend": backend, "d_mlp": cfg.d_mlp,
                "n_text": int(inputs["text"].shape[0]),
                "text_len": int(inputs["text"].shape[1]), "seed": seed,
                "icl_indices": list(M.icl_indices(T_eval)) if T_eval >= 12 else None,
                "composition_baseline": baseline,
                "prefix_matching_shape": list(inputs["prefix_tokens"].shape),
                "copying_shape": list(inputs["copy_tokens"].shape),
                "seconds": None}
    result = Analysis(heads=_columns(heads), composition=_columns(pairs), snapshots=snapshots,
                      phase_change=window, loss_bump_tokens=bump,
                      loss_by_position=M.loss_by_position(run.losses), settings=settings)
    settings["seconds"] = round(time.perf_counter() - t0, 3)
    if write:
        write_analysis(result, Path(out_dir) if out_dir is not None else Path(run_dir) / "analysis")
    return result


def _columns(rows: list[dict]) -> dict:
    """List of row dicts -> dict of column arrays (strings stay Python lists)."""
    if not rows:
        return {}
    cols = {}
    for key in rows[0]:
        values = [r[key] for r in rows]
        cols[key] = values if isinstance(values[0], str) else np.array(values)
    return cols


def _phase_summaries(tokens_seen, icl, loss):
    """Phase-change window on the ICL score and the loss bump, or None where undefined."""
    keep = tokens_seen > 0                                              # log scale
    x = tokens_seen[keep].astype(np.float64)
    window = bump = w = None
    if keep.sum() >= 3 and np.all(np.isfinite(icl[keep])):
        try:
            w = M.phase_change_window(x, icl[keep])
            window = {"start_tokens": w.start_tokens, "end_tokens": w.end_tokens,
                      "start_snapshot": int(np.flatnonzero(keep)[w.start_index]),
                      "end_snapshot": int(np.flatnonzero(keep)[w.end_index]),
                      "total_change": w.total_change}
        except ValueError:
            window = None                                               # the score never changes
        b = M.loss_bump(x, loss[keep], w)
        bump = None if math.isnan(b) else b
    return window, bump


def write_analysis(result: Analysis, out_dir: Path) -> None:
    """heads.csv, composition.csv, snapshots.csv and analysis.json (NaN -> empty / null)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for table in ("heads", "composition", "snapshots"):
        rows = result.rows(table)
        with open(out_dir / f"{table}.csv", "w", newline="") as f:
            writer = csv.writer(f)
            if rows:
                writer.writerow(rows[0].keys())
                writer.writerows([["" if v is None else v for v in r.values()] for r in rows])
    doc = {"settings": result.settings, "phase_change": result.phase_change,
           "loss_bump_tokens": result.loss_bump_tokens,
           "loss_by_position": result.loss_by_position.tolist(),
           "snapshots": result.rows("snapshots"), "heads": result.rows("heads"),
           "composition": result.rows("composition")}
    with open(out_dir / "analysis.json", "w") as f:
        json.dump(doc, f, indent=1, allow_nan=False)


# --- command line ------------------------------------------------------------------------
