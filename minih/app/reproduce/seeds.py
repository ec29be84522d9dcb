"""Several seeds of one family: the spread each figure draws, and the range of every number.

With `reproduce --seeds N` (the full size trains 3 by default) the report's sentences and
figures are the first seed's, as with one seed, and four things show the others:
- every curve over training (loss, ICL score, how fast the loss falls, the best head's
  prefix matching, the smeared-key ICL curves) carries a band: the range over the seeds at
  each snapshot. The seeds share the schedule, so their snapshots fall at the same token
  counts and the band is a plain min / max per snapshot (`bands`);
- Argument 4's bars carry the range over the seeds as error bars;
- every section ends with its numbers in each seed and their range (`range_table`), and
  whether each criterion of its verdict held in each seed (`criteria_table`);
- a last section gives every seed's verdicts and the range of the main numbers.
Figures of one seed's heads (attention patterns, per-head heatmaps, the PCA of its losses,
one prediction's loss) stay the first seed's: heads and principal components do not
correspond from seed to seed. Each seed's own figures are in OUT/seeds/seed<k>/figs/.

Shape legend: S snapshots
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..report import Section
from .measure import RunMeasures, fmt_tokens

# numbers.json keys whose values name heads, snapshots or token positions of one seed, or
# restate the criteria: they have no counterpart in another seed, so no range
NOT_ACROSS_SEEDS = {"per_head", "dicl_last", "icl_pairs", "tokens_through_the_change", "criteria",
                    "window", "window_icl", "induction_heads", "best_head",
                    "picked", "heads", "contrast_heads", "snapshots_swept", "snapshots",
                    "most_worse", "icl_indices", "pca_explained", "induction_head", "reproduced",
                    "family"}

# how the range tables name numbers.json's keys (others: the key with spaces)
LABELS = {"formed_at": "induction head forms at (tokens)", "icl_first": "ICL score, first snapshot",
          "icl_last": "ICL score, last snapshot", "loss_last": "final loss (nats)",
          "best_prefix": "best prefix matching", "steepest_icl_at": "steepest ICL fall at (tokens)",
          "steepest_icl_rate": "steepest ICL fall (nats/decade)",
          "bump_tokens": "most concave point of the loss (tokens)",
          "departure_tokens": "loss leaves the control's at (tokens)",
          "pca_turn_tokens": "PCA turn at (tokens)",
          "icl_share_before_formation": "share of the ICL change made before formation",
          "control_bump_tokens": "the control's most concave point, same window (tokens)",
          "icl_clean": "ICL score, clean", "icl_ablated": "ICL score, induction heads ablated",
          "share_removed": "share of ICL removed by the induction heads",
          "icl_ablated_contrast": "ICL score, as many other heads ablated",
          "share_removed_contrast": "share of ICL removed by as many other heads",
          "n_fewer_others": "other heads, fewer than the induction heads (no contrast)",
          "icl_ablated_fewer_others": "ICL score, those fewer other heads ablated",
          "share_removed_fewer_others": "share of ICL removed by those fewer other heads",
          "prev_score": "previous-token score", "prefix": "the induction head's prefix matching", "k_comp": "K-composition",
          "k_baseline": "K-composition of random matrices", "k_comp_rank": "K-composition rank",
          "ov_eigen_copying": "eigenvalue copying score", "mean_change": "mean loss change (nats)",
          "improved": "predictions that improve", "worse": "predictions that get worse",
          "literal_only": "model trained on literal repeats only", "previous_token": "previous-token head",
          "uniform": "chance head"}


@dataclass
class SeedRun:
    """One more seed of the family, analysed: its numbers (as numbers.json) and measures."""
    seed: int
    numbers: dict
    measures: dict                   # model name -> RunMeasures


def bands(ms: dict[str, RunMeasures], others: list[SeedRun], names, of) -> dict:
    """name -> (x [S], lo [S], hi [S]): the range over this seed's and the other seeds'
    curves `of(measures) -> (x, y)`, at each snapshot. Empty with no other seed; a model
    whose seeds do not share x (a different schedule) gets no band."""
    out = {}
    for n in names:
        series = [of(ms[n])] + [of(o.measures[n]) for o in others if n in o.measures]
        if len(series) < 2 or any(not np.array_equal(x, series[0][0]) for x, _ in series):
            continue
        Y = np.stack([np.asarray(y, dtype=np.float64) for _, y in series])     # [seeds, S]
        out[n] = (np.asarray(series[0][0]), Y.min(axis=0), Y.max(axis=0))
    return out


def value_range(values) -> tuple[float, float]:
    """(min, max) of the finite values (NaN, NaN when none is)."""
    finite = [v for v in values if np.isfinite(v)]
    return (min(finite), max(finite)) if finite else (float("nan"), float("nan"))


def _leaves(d: dict, path=()):
    """Paths to the numeric leaves of a numbers dict that mean the same in every seed."""
    for k, v in d.items():
        if k in NOT_ACROSS_SEEDS:
            continue
        if isinstance(v, dict):
            yield from _leaves(v, path + (k,))
        elif isinstance(v, (int, float, np.floating, np.integer)) and not isinstance(v, bool):
            yield path + (k,)


def _get(d: dict, path) -> float:
    for k in path:
        if not isinstance(d, dict) or k not in d:
            return float("nan")
        d = d[k]
    return float(d) if isinstance(d, (int, float, np.floating, np.integer)) else float("nan")


def _shown(x: float, key: str) -> str:
    if not np.isfinite(x):
        return "n/a"
    if key.endswith(("_at", "_tokens")):
        return fmt_tokens(x)
    if key.startswith("share") or key.endswith("_share") or key == "icl_share_before_formation":
        return f"{x:.0%}"
    if key in ("improved", "worse", "k_comp_rank", "tokens", "n_fewer_others"):
        return f"{x:.0f}"
    return f"{x:.2f}"


def _range_cell(values, lo: float, hi: float, leaf: str) -> str:
    """"lo to hi", over the seeds where the number exists (n/a: a head that never formed)."""
    n = sum(np.isfinite(v) for v in values)
    if n == 0:
        return "n/a"
    cell = _shown(lo, leaf) if _shown(lo, leaf) == _shown(hi, leaf) else \
        f"{_shown(lo, leaf)} to {_shown(hi, leaf)}"
    return cell + ("" if n == len(values) else f" ({n} of {len(values)} seeds)")


def models_compared(key: str, per_seed: dict[int, dict]) -> list | None:
    """The model each seed's section `key` measured, where the section chose it (Argument 3
    ablates the first of 2L, 3L with induction heads and as many other heads), else None."""
    models = [(per_seed[s].get(key) or {}).get("model") for s in per_seed]
    return models if any(isinstance(m, str) for m in models) else None


def _models_differ(models: list | None) -> bool:
    """Whether the seeds measured different models (models_compared): then no range."""
    return models is not None and len(set(models)) > 1


def ranges(key: str, per_seed: dict[int, dict]) -> dict:
    """'/'-joined path -> {"values": one per seed, "min", "max"} for every number of section
    `key` that means the same in every seed: the numbers of any seed, in the order the first
    seed that has each states it (a number only some seeds have, such as the share removed
    by heads that formed in one seed only, is n/a in the others). Where the seeds' section
    measured different models (models_compared), min and max are NaN: no range is taken
    across models."""
    paths = {}
    for s in per_seed:
        for path in _leaves(per_seed[s].get(key) or {}):
            paths.setdefault(path, None)
    differ = _models_differ(models_compared(key, per_seed))
    out = {}
    for path in paths:
        values = [_get(per_seed[s].get(key) or {}, path) for s in per_seed]
        lo, hi = (float("nan"), float("nan")) if differ else value_range(values)
        out["/".join(path)] = {"values": values, "min": lo, "max": hi}
    return out


def range_table(key: str, per_seed: dict[int, dict]) -> str | None:
    """Section `key`'s numbers in each seed and their range, as a Markdown table (None if
    it states no number that means the same across seeds)."""
    rows = ranges(key, per_seed)
    if not rows:
        return None
    seeds = list(per_seed)
    lines = ["| model | number | " + " | ".join(f"seed {s}" for s in seeds) + " | range |",
             "|---|---|" + "---|" * (len(seeds) + 1)]
    models = models_compared(key, per_seed)
    differ = _models_differ(models)
    if models is not None:
        lines.append("| | the model measured | " + " | ".join(str(m) for m in models) + " | "
                     + ("different models: no range |" if differ else f"{models[0]} in every seed |"))
    for path, r in rows.items():
        parts = path.split("/")
        model = parts[1] if parts[0] == "models" and len(parts) > 2 else ""
        rest = parts[2:] if model else parts
        label = ", ".join(LABELS.get(p, p.replace("_", " ")) for p in rest)
        leaf = rest[-1]
        cell = "not compared" if differ else _range_cell(r["values"], r["min"], r["max"], leaf)
        lines.append(f"| {model} | {label} | " + " | ".join(_shown(v, leaf) for v in r["values"])
                     + f" | {cell} |")
    return "\n".join(lines)


def _criterion_cell(criterion, first_wording: str) -> str:
    """"held" or "**did not hold**", and, where this seed's criterion reads differently from
    the first seed's (its own numbers, or "too few such heads"), its last parenthesis."""
    what, held = criterion
    cell = "held" if held else "**did not hold**"
    if what != first_wording and what.endswith(")") and "(" in what:
        cell += " " + what[what.rindex("("):]
    return cell


def criteria_table(key: str, per_seed: dict[int, dict]) -> str | None:
    """Whether each criterion of section `key`'s verdict held in each seed. Worded with the
    first seed's numbers; when the seeds checked different numbers of criteria (a model
    that formed no head has fewer), each seed's count of criteria held instead."""
    crit = {s: (per_seed[s].get(key) or {}).get("criteria") for s in per_seed}
    if any(c is None for c in crit.values()):
        return None
    seeds = list(per_seed)
    head = "| criterion (worded with seed {0}'s numbers) | ".format(seeds[0]) + \
        " | ".join(f"seed {s}" for s in seeds) + " |"
    rule = "|---|" + "---|" * len(seeds)
    if len({len(c) for c in crit.values()}) == 1:
        rows = [f"| {what} | " + " | ".join(_criterion_cell(crit[s][i], what) for s in seeds) + " |"
                for i, (what, _) in enumerate(crit[seeds[0]])]
    else:
        rows = ["| criteria held | " + " | ".join(f"{sum(h for _, h in crit[s])} of {len(crit[s])}"
                                                  for s in seeds) + " |"]
    return "\n".join([head, rule] + rows)


def add_ranges(sections: dict[str, Section], per_seed: dict[int, dict]) -> None:
    """End each section with its numbers and criteria in every seed."""
    seeds = list(per_seed)
    for key, sec in sections.items():
        table, crit = range_table(key, per_seed), criteria_table(key, per_seed)
        if table is None and crit is None:
            continue
        sec.paragraphs.append(f"Across the {len(seeds)} seeds ({', '.join(map(str, seeds))}; the "
                              f"sentences above are seed {seeds[0]}'s): "
                              + ("this section's numbers in each seed and their range, then "
                                 if table and crit else "")
                              + ("whether each criterion of the verdict held." if crit else
                                 "this section's numbers in each seed and their range."))
        sec.paragraphs += [t for t in (table, crit) if t]


# the caption sentences of figures drawn with the seeds' spread (the argument functions add them)
BAND_NOTE = " Band around each curve: its range over the seeds, snapshot by snapshot."
BARS_NOTE = " Error bars: the range over the seeds."
# Argument 4's: the task-blind heads' bars depend on the task's sequences alone
BARS_NOTE_4 = (" Error bars: the range over the seeds (over the seeds that picked a head, for "
               "the first bars; the task-blind heads' change only with the task's map).")
BEST_HEAD_NOTE = " Grey band: the best head's range over the seeds, snapshot by snapshot."
SPREAD_NOTES = (BAND_NOTE, BARS_NOTE, BARS_NOTE_4, BEST_HEAD_NOTE)


def band_note(drawn: dict, note: str = BAND_NOTE) -> str:
    """`note` if any band was drawn, else nothing."""
    return note if drawn else ""


def note_figures(sections: dict[str, Section], seeds: list[int]) -> None:
    """Under each figure drawn without the seeds' spread, say that it is the first seed's alone."""
    for sec in sections.values():
        sec.figures = [(path, caption if caption.endswith(SPREAD_NOTES) else
                        caption + f" Seed {seeds[0]}'s run alone; each seed's own is in "
                                  f"seeds/seed<k>/figs/.")
                       for path, caption in sec.figures]


# the numbers the last section sums up across seeds: (label, path into numbers.json)
SPREAD = [("2L: induction head forms at (tokens)", ("argument_1", "models", "2L", "formed_at")),
          ("3L: induction head forms at (tokens)", ("argument_1", "models", "3L", "formed_at")),
          ("2L: steepest ICL fall (nats/decade)", ("argument_1", "models", "2L", "steepest_icl_rate")),
          ("2L: final ICL score (nats)", ("argument_1", "models", "2L", "icl_last")),
          ("Argument 3: share of ICL removed by the induction heads (the model ablated)",
           ("argument_3", "share_removed")),
          ("Argument 3: share removed by as many other heads (the model ablated)",
           ("argument_3", "share_removed_contrast")),
          ("Argument 5: previous-token score", ("argument_5", "prev_score")),
          ("Argument 5: K-composition", ("argument_5", "k_comp")),
          ("2L MLP: induction head forms at (tokens)", ("argument_6", "models", "2L MLP", "formed_at")),
          ("2L MLP: share of ICL removed by its induction heads", ("argument_6", "models", "2L MLP",
                                                                    "share_removed")),
          ("2L text: induction head forms at (tokens)", ("text", "models", "2L text", "formed_at")),
          ("Plain text: share of ICL removed by the induction heads (the model ablated)",
           ("text_ablation", "share_removed"))]
# numbers.json key -> the argument it decides, as the verdict tables name it
VERDICT_KEYS = {f"argument_{k}": str(k) for k in range(1, 7)} | {
    "mlp": "1, with MLPs", "text": "1, on plain text", "text_ablation": "3, on plain text"}


def seeds_section(per_seed: dict[int, dict]) -> tuple[Section, dict]:
    """The last section: every seed's verdicts, and the range of the SPREAD numbers."""
    seeds = list(per_seed)
    first = per_seed[seeds[0]]
    rows = ["| argument | " + " | ".join(f"seed {s}" for s in seeds) + " | reproduced in |",
            "|---|" + "---|" * (len(seeds) + 1)]
    verdicts = {}
    for key, label in VERDICT_KEYS.items():
        if key in first:
            v = [bool(per_seed[s][key]["reproduced"]) for s in seeds]
            verdicts[label] = v
            rows.append(f"| {label} | " + " | ".join("yes" if x else "**NO**" for x in v)
                        + f" | {sum(v)} of {len(v)} |")
    spread_rows = ["| number | " + " | ".join(f"seed {s}" for s in seeds) + " | range |",
                   "|---|" + "---|" * (len(seeds) + 1)]
    spread = {}
    for label, path in SPREAD:
        if path[0] not in first:
            continue                                  # a model this size does not train
        values = [_get(per_seed[s], path) for s in seeds]
        models = models_compared(path[0], per_seed)
        differ = _models_differ(models)
        lo, hi = (float("nan"), float("nan")) if differ else value_range(values)
        spread[label] = {"values": values, "min": lo, "max": hi, "models": models}
        leaf = path[-1]
        shown = [_shown(x, leaf) + (f" ({m})" if models is not None else "")
                 for x, m in zip(values, models or [None] * len(values))]
        spread_rows.append(f"| {label} | " + " | ".join(shown) + " | "
                           + ("not compared: different models" if differ
                              else _range_cell(values, lo, hi, leaf)) + " |")
    text = [f"The same family trained with {len(seeds)} seeds ({', '.join(map(str, seeds))}): the "
            f"weights, the batches and the Argument-4 task maps (so also the sequences Argument 4 "
            f"is scored on) change with the seed; the other evaluation sets do not. Seed "
            f"{seeds[0]} is the run whose sentences and head-by-head figures are above; the others were trained through `minih sweep` into `seeds/` and analysed the "
            f"same way (their own figures are in `seeds/seed<k>/figs/`). Every section above ends "
            f"with all of its numbers in each seed; this one sums up.",
            "\n".join(rows), "\n".join(spread_rows)]
    return (Section("Seeds: the verdicts and the main numbers across seeds", text),
            {"seeds": seeds, "verdicts": verdicts, "spread": spread,
             "ranges": {key: ranges(key, per_seed) for key in first
                        if isinstance(first[key], dict) and key != "timings_seconds"}})
