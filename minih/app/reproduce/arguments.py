"""The paper's six arguments, each as: numbers from the runs, figures, and a verdict.

Every function takes measured results, draws its figures into `figs/`, and returns a
report Section plus a dict of the numbers it states (saved to numbers.json, so tests
and readers can check every sentence against the tables). A verdict that the run did
NOT reproduce an argument is printed as such, never hidden.

What counts is decided by the rules of verdicts.py (pure functions of the numbers, each
printed with its criteria under the verdict). The shared definitions:
- an induction head is a head of layer >= 1 (any layer in a 1-layer model) with
  prefix-matching score >= INDUCTION_THRESHOLD; it "forms" at the first snapshot
  where one reaches it;
- the phase change is abrupt: the smoothed ICL score's steepest fall (nats per decade
  of tokens) happens where the induction head forms. The window hatched in the figures
  is the span in which the ICL score makes 10% to 90% of its total change
  (metrics.phase_change_window); with data on which a 1-layer model also learns
  gradually in context, that window also spans the gradual part, so the verdicts use
  the formation point and the steepest fall instead;
- "together" means within CO_OCCUR_DECADES decades of tokens.
"""
from __future__ import annotations

import numpy as np

from .. import figures
from ...interp import metrics
from ...interp.ablation import Ablation, run_with_ablation
from ...interp.attribution import phase_direction, phase_window, steepest_fall, sweep_heads
from ...interp.generality import generality_scores
from ...interp.metrics.heads import prefix_matching_tokens, stacked_patterns
from ...model import get_backend, per_token_losses
from ..report import Section, render_token_values_html
from . import seeds as S
from . import verdicts as V
from .measure import RunMeasures, fmt_tokens, steepest_drop
from .verdicts import CO_OCCUR_DECADES, INDUCTION_THRESHOLD

# the paper's context indices (50, 500) of 512-token examples, and other pairs for its
# robustness check, scaled to the run's context like the ICL score's own
ICL_PAIRS = ((50, 500), (100, 500), (50, 250), (250, 500))


def formed(m: RunMeasures) -> bool:
    return bool(np.isfinite(m.formed_at))


def induction_heads(m: RunMeasures, snapshot: int = -1) -> list[tuple[int, int]]:
    L = m.prefix.shape[1]
    first = 1 if L > 1 else 0
    return [(l, h) for l in range(first, L) for h in range(m.prefix.shape[2])
            if m.prefix[snapshot, l, h] >= INDUCTION_THRESHOLD]


def verdict(v: V.Verdict, text_ok: str, text_not: str) -> str:
    """The verdict line, then every criterion that decided it."""
    head = f"**Reproduced.** {text_ok}" if v.ok else f"**NOT reproduced.** {text_not}"
    return head + "\n\nHow this verdict is decided:\n\n" + v.lines()


def scaled_pair(early: int, late: int, T: int) -> tuple[int, int]:
    """The paper's 1-based context indices of 512-token examples, scaled to T tokens."""
    e = max(1, int(np.floor(early / 512 * T + 0.5)))
    return e, max(e + 1, min(int(np.floor(late / 512 * T + 0.5)), T - 1))


def _windows(ms, names):
    return {n: (ms[n].window.start_tokens, ms[n].window.end_tokens) for n in names
            if ms[n].window is not None}


# --- Argument 1 and 6: co-occurrence, and continuity across depth ------------------------

def loss_rate(m: RunMeasures) -> tuple[np.ndarray, np.ndarray]:
    """The paper's "curiosity": how fast the smoothed loss falls per decade of training
    tokens, d loss / d log10 tokens, at every snapshot after step 0: (tokens, rate)."""
    x = m.tokens[m.tokens > 0]
    y = metrics.smooth_log(x, m.loss[m.tokens > 0])
    return x, np.gradient(y, np.log10(x))


def best_prefix_curve(m: RunMeasures) -> tuple[np.ndarray, np.ndarray]:
    """The best prefix-matching score of a head that can be an induction head, per snapshot."""
    first = 1 if m.prefix.shape[1] > 1 else 0
    return m.tokens, m.prefix[:, first:].max(axis=(1, 2))


def argument_1(ms: dict[str, RunMeasures], runs: dict, figs, names: list[str], tag: str = "",
               title: str = "Argument 1: the phase change co-occurs with induction heads",
               data: str = "the induction task", control: str = "1L",
               main: str | None = None, others: list = ()) -> tuple[Section, dict]:
    """Loss, ICL score, heatmaps, prefix matching and PCA for models trained on one data
    set (their per-token losses share an evaluation set), each signature also measured on
    the 1-layer `control`. `tag` keeps file names apart; `others` (seeds.SeedRun) give the
    curves their bands."""
    windows = _windows(ms, names)
    ctrl = ms[control] if control in names else None
    # where each deeper model's loss leaves the control's (same schedule: same snapshots)
    departure = {n: (metrics.curve_departure(ms[n].tokens[1:], ms[n].loss[1:], ctrl.loss[1:])
                     if ctrl is not None and n != control and np.array_equal(ms[n].tokens, ctrl.tokens)
                     else float("nan"))
                 for n in names}
    b_loss = S.bands(ms, others, names, lambda m: (m.tokens, m.loss))
    f_loss = figures.curves(figs / f"a1{tag}_loss.png", {n: (ms[n].tokens, ms[n].loss) for n in names},
                            "mean eval loss (nats)",
                            f"Loss over training (hatched: ICL window; dotted: leaves the {control} curve)",
                            windows, departure, bands=b_loss)
    early, late = ms[names[0]].icl_indices
    b_icl = S.bands(ms, others, names, lambda m: (m.tokens, m.icl))
    f_icl = figures.curves(figs / f"a1{tag}_icl.png", {n: (ms[n].tokens, ms[n].icl) for n in names},
                           f"ICL score: loss@{late} - loss@{early} (nats)",
                           "In-context learning score (dotted: induction head forms)", windows,
                           {n: ms[n].formed_at for n in names}, hline=0.0, bands=b_icl)
    main = main or ("2L" if "2L" in names else names[-1])      # the model shown in detail
    m = ms[main]
    f_heat = figures.loss_position_heatmaps(figs / f"a1{tag}_heatmap.png", m.tokens, m.by_pos, m.deriv,
                                            f"{main}: loss by context position over training")
    b_prefix = S.bands(ms, others, [main], best_prefix_curve)
    f_prefix = figures.head_scores_over_training(figs / f"a1{tag}_prefix.png", m.tokens, m.prefix,
                                                 f"{main}: prefix-matching score of every head",
                                                 "prefix-matching score", band=b_prefix.get(main))
    # the paper's "curiosity": how fast each model's loss falls per decade of training tokens
    deriv = {n: loss_rate(ms[n]) for n in names}
    b_deriv = S.bands(ms, others, names, loss_rate)
    f_deriv = figures.curves(figs / f"a1{tag}_dloss.png", deriv, "d loss / d log10 tokens (nats/decade)",
                             "How fast the loss falls (dotted: induction head forms)", windows,
                             {n: ms[n].formed_at for n in names}, hline=0.0, bands=b_deriv)
    # per-token losses through the phase change: the prediction of the main model that
    # improves most, and the one that gets most worse, across its ICL window
    tokens_main = {}
    if m.window is not None:
        later = np.flatnonzero(m.tokens > 0)
        s0, s1 = int(later[m.window.start_index]), int(later[m.window.end_index])
        change = runs[main].losses[s1] - runs[main].losses[s0]                   # [N, T-1]
        for kind, flat in (("improves", np.argmin(change)), ("worsens", np.argmax(change))):
            b, i = np.unravel_index(int(flat), change.shape)
            tokens_main[kind] = {"example": int(b), "position": int(i),
                                 "token": int(runs[main].eval_tokens[b, i + 1]),
                                 "loss_before": float(runs[main].losses[s0, b, i]),
                                 "loss_after": float(runs[main].losses[s1, b, i])}
        f_tok = figures.curves(figs / f"a1{tag}_tokens.png",
                               {f"{kind}: example {t['example']}, position {t['position'] + 1}":
                                (m.tokens, runs[main].losses[:, t["example"], t["position"]])
                                for kind, t in tokens_main.items()},
                               "loss of one prediction (nats)",
                               f"{main}: two predictions through the phase change (hatched: window)",
                               {k: (m.window.start_tokens, m.window.end_tokens) for k in
                                [f"{kind}: example {t['example']}, position {t['position'] + 1}"
                                 for kind, t in tokens_main.items()]})
    pca = metrics.loss_pca([runs[n].losses for n in names], seed=0)
    trajectories = dict(zip(names, pca.trajectories))
    turns = {n: metrics.knee_point(Y) for n, Y in trajectories.items() if len(Y) >= 3}
    f_pca = figures.pca_trajectories(figs / f"a1{tag}_pca.png", trajectories, turns, pca.explained_variance_ratio)

    T = m.by_pos.shape[1] + 1
    numbers, lines = {}, []
    for n in names:
        mm = ms[n]
        head, score = mm.best_prefix()
        later = mm.tokens > 0
        row = {"icl_first": float(mm.icl[1] if len(mm.icl) > 1 else mm.icl[0]),
               "icl_last": float(mm.icl[-1]), "loss_last": float(mm.loss[-1]),
               "best_head": list(head), "best_prefix": score,
               "induction_heads": [list(h) for h in induction_heads(mm)],
               "formed_at": mm.formed_at, "steepest_icl_at": mm.steepest_at,
               "steepest_icl_rate": mm.steepest_rate, "bump_tokens": mm.bump,
               "departure_tokens": departure[n],
               "pca_turn_tokens": float(mm.tokens[turns[n]]) if n in turns else float("nan"),
               "window": [mm.window.start_tokens, mm.window.end_tokens] if mm.window else None}
        # the ICL score at other pairs of context indices (the paper's robustness check)
        row["icl_pairs"] = {}
        for pe, pl in ICL_PAIRS:
            e, l = scaled_pair(pe, pl, T)
            icl = metrics.icl_score(runs[n].losses, e, l)
            at, _ = steepest_drop(mm.tokens[later], icl[later])
            row["icl_pairs"][f"{pe}/{pl}"] = {"indices": [e, l], "first": float(icl[later][0]),
                                              "last": float(icl[-1]), "steepest_at": at}
        numbers[n] = row
        desc = (f"- `{n}`: ICL score {row['icl_first']:.2f} -> {row['icl_last']:.2f}; steepest ICL fall "
                f"{row['steepest_icl_rate']:.2f} nats/decade at {fmt_tokens(mm.steepest_at)} tokens; ")
        if mm.window is not None:                 # the window: 10% to 90% of the ICL change
            row["window_icl"] = [float(mm.window.smoothed[mm.window.start_index]),
                                 float(mm.window.smoothed[mm.window.end_index])]
            desc += (f"10-90% window {fmt_tokens(mm.window.start_tokens)} to {fmt_tokens(mm.window.end_tokens)} "
                     f"(smoothed ICL {row['window_icl'][0]:.2f} -> {row['window_icl'][1]:.2f}); ")
        if formed(mm):
            # the share of the whole ICL change already made when the head forms
            k = int(np.searchsorted(mm.tokens, mm.formed_at))
            total = row["icl_last"] - row["icl_first"]
            row["icl_share_before_formation"] = (float((mm.icl[k] - row["icl_first"]) / total)
                                                 if total != 0 else float("nan"))
            # the control's loss curve, read with this model's window: a bump there too shows nothing
            row["control_bump_tokens"] = (metrics.loss_bump(ctrl.tokens[1:], ctrl.loss[1:], mm.window)
                                          if ctrl is not None and n != control else float("nan"))
            desc += (f"induction head {head[0]}.{head[1]} forms at {fmt_tokens(mm.formed_at)} "
                     f"(prefix matching {score:.2f} at the end), when "
                     f"{row['icl_share_before_formation']:.0%} of the ICL change is already made; "
                     f"PCA turn at {fmt_tokens(row['pca_turn_tokens'])}")
            if ctrl is not None and n != control:
                desc += (f"; loss leaves the `{control}` curve at {fmt_tokens(departure[n])}; most "
                         f"concave point of the loss in the window at {fmt_tokens(mm.bump)} (the "
                         f"control's in the same window: {fmt_tokens(row['control_bump_tokens'])})")
            desc += "."
        else:
            desc += (f"no induction head (best prefix matching {score:.2f}); PCA turn at "
                     f"{fmt_tokens(row['pca_turn_tokens'])}.")
        lines.append(desc)
    if tokens_main:
        lines.append(f"In `{main}`, across its ICL window, the prediction that improves most is token "
                     + " and the one that gets most worse is token ".join(
                         f"{t['token']} at position {t['position'] + 1} of evaluation example "
                         f"{t['example']} ({t['loss_before']:.2f} -> {t['loss_after']:.2f} nats)"
                         for t in tokens_main.values()) + ": not every token gains from the phase change.")
    pairs = ", ".join(f"{p} -> {v['indices'][0]}/{v['indices'][1]}"
                      for p, v in numbers[names[0]]["icl_pairs"].items())
    v = V.argument_1(numbers, control)
    text = [f"Models on {data}: {', '.join(f'`{n}`' for n in names)}; "
            + (f"`{control}` is the control. " if ctrl is not None else "no 1-layer control was trained. ")
            + f"The ICL score is the mean loss at context index {late} minus at index {early} "
            f"(1-based; minih scales the paper's 500 and 50 to {T}-token contexts; the other pairs "
            f"checked, paper's -> here: {pairs}). An induction head has prefix matching >= "
            f"{INDUCTION_THRESHOLD}; events within {CO_OCCUR_DECADES} decades of tokens count as together.",
            "\n".join(lines),
            verdict(v, "In the models that form an induction head, the ICL score falls fastest when "
                       "it forms, the loss leaves the 1-layer curve and the PCA trajectory turns there, "
                       "and the 1-layer control shows none of it.",
                    "Not every signature came with the induction head's formation: see the criteria.")]
    sec = Section(title, text,
                  [(str(f_loss), "Loss against training tokens (log axis)." + S.band_note(b_loss)),
                   (str(f_icl), "ICL score over training." + S.band_note(b_icl)),
                   (str(f_heat), f"{main}: loss by context position and its derivative."),
                   (str(f_prefix), f"{main}: prefix-matching score of every head (colour = layer)."
                    + S.band_note(b_prefix, S.BEST_HEAD_NOTE)),
                   (str(f_pca), "PCA of per-token losses; star = the turn (metrics.knee_point)."),
                   (str(f_deriv), "The derivative of the loss against log tokens, per model."
                    + S.band_note(b_deriv))]
                  + ([(str(f_tok), f"{main}: the loss of two single predictions over training.")]
                     if tokens_main else []))
    return sec, {"models": numbers, "reproduced": v.ok, "icl_indices": [early, late],
                 "tokens_through_the_change": tokens_main,
                 "criteria": v.criteria,
                 "pca_explained": [float(x) for x in pca.explained_variance_ratio]}


def argument_6(ms: dict[str, RunMeasures], runs: dict, names: list[str], numbers1: dict,
               mlp_names: list[str] | None = None, numbers_mlp: dict | None = None,
               backend: str = "numpy") -> tuple[Section, dict]:
    """1, 2 and 3 layers side by side, attention-only and (when the family has them) with
    MLPs: where each phase change falls, the ICL score before and after, the induction
    heads and their layers, and the share of the ICL score removed by ablating them."""
    families = {"attention-only": ([n for n in ("1L", "2L", "3L") if n in names], numbers1)}
    if mlp_names:
        families["with MLPs"] = ([n for n in ("1L MLP", "2L MLP", "3L MLP") if n in mlp_names],
                                 numbers_mlp)
    rows = ["| model | family | phase-change window (tokens) | ICL score (first snapshot after "
            "step 0 -> last) | induction head forms at | its heads at the last snapshot "
            "(layer.head) | ICL removed by ablating them (pattern-preserving) |",
            "|---|---|---|---|---|---|---|"]
    models = {}
    for fam, (fam_names, nums) in families.items():
        for n in fam_names:
            r = dict(nums["models"][n], family=fam)
            heads = [tuple(h) for h in r["induction_heads"]]
            r["share_removed"] = float("nan")
            if heads:                    # pattern-preserving, as in Argument 3
                icl_without = IclWithout(runs[n], ms[n].icl_indices, backend)
                r["share_removed"] = icl_without.share(icl_without(heads, "pattern"))
            models[n] = r
            window = ("none" if not r["window"] else
                      f"{fmt_tokens(r['window'][0])} to {fmt_tokens(r['window'][1])}")
            formed_at = fmt_tokens(r["formed_at"]) if np.isfinite(r["formed_at"]) else "never"
            removed = f"{r['share_removed']:.0%}" if np.isfinite(r["share_removed"]) else "-"
            rows.append(f"| {n} | {fam} | {window} | {r['icl_first']:.2f} -> {r['icl_last']:.2f} | "
                        f"{formed_at} | {', '.join(f'{l}.{h}' for l, h in heads) or 'none'} | "
                        f"{removed} |")
    over = [n for n, r in models.items() if r["share_removed"] > 1]
    depth = {n: models[n] for n in families["attention-only"][0]}
    mlp = {n: models[n] for n in families["with MLPs"][0]} if mlp_names else None
    v = V.argument_6(depth, mlp)
    text = ["The same measurements for 1, 2 and 3 layers, side by side, "
            + ("attention-only and with an MLP after every attention layer (the paper's two "
               "families; its argument runs from small attention-only models to large models with "
               "MLPs). " if mlp_names else
               "attention-only only: this run trained no model with MLPs, so the argument cannot "
               "be reproduced in full. ")
            + "The window is where the ICL score makes 10% to 90% of its change; the ablation is "
              "pattern-preserving, as in Argument 3 (with MLPs it freezes the attention patterns "
              "but the MLPs still respond to the ablated heads' missing writes, so it no longer "
              "removes every path through a head). QK and OV circuits, being read from the "
              "weights, ignore the MLPs by definition; none is used here.",
            "\n".join(rows)]
    if over:
        text.append(f"A share above 100% ({', '.join(f'`{n}`' for n in over)}) means that without "
                    "its induction heads the model predicts late tokens worse than early ones (an "
                    "ICL score above 0): the rest of the model relied on them for more than the "
                    "whole ICL score.")
    text += [verdict(v, "The same signatures appear at every depth that can show them, with and "
                       "without MLPs.",
                    "not reproduced: no models with MLPs." if not mlp_names else
                    "The signatures differ across sizes or families: see the criteria.")]
    return (Section("Argument 6: continuity across model sizes and families", text),
            {"models": {n: {k: r[k] for k in ("family", "window", "icl_first", "icl_last",
                                              "formed_at", "induction_heads", "share_removed",
                                              "steepest_icl_rate")}
                        for n, r in models.items()},
             "induction_head": {n: V._formed(r) for n, r in models.items()},
             "reproduced": v.ok, "criteria": v.criteria})


# --- Argument 2: smeared keys --------------------------------------------------------------

def argument_2(ms: dict[str, RunMeasures], figs, others: list = ()) -> tuple[Section, dict]:
    pairs = [(v, s) for v, s in (("1L", "1L smeared"), ("2L", "2L smeared")) if v in ms and s in ms]
    names = [n for p in pairs for n in p]
    b_icl = S.bands(ms, others, names, lambda m: (m.tokens, m.icl))
    f = figures.curves(figs / "a2_smeared.png", {n: (ms[n].tokens, ms[n].icl) for n in names},
                       "ICL score (nats)",
                       "Smeared keys vs vanilla (dotted: induction head forms)",
                       _windows(ms, names), {n: ms[n].formed_at for n in names}, hline=0.0,
                       bands=b_icl)
    numbers, lines = {}, []
    for n in names:
        head, score = ms[n].best_prefix()
        numbers[n] = {"formed_at": ms[n].formed_at, "best_prefix": score, "icl_last": float(ms[n].icl[-1])}
        when = (f"induction head forms at {fmt_tokens(ms[n].formed_at)} tokens" if formed(ms[n])
                else "no induction head")
        lines.append(f"- `{n}`: {when}; final ICL {numbers[n]['icl_last']:.2f}; best prefix matching {score:.2f}.")
    v = V.argument_2(numbers)
    text = ["Smeared keys let every key carry a learned mix of its own and the previous token, "
            "so a single layer can do what needs two in a vanilla model (IH, Argument 2).",
            "\n".join(lines),
            verdict(v, "With smeared keys the 1-layer model forms an induction head that the vanilla "
                       "one never does, and the 2-layer model forms its one no later.",
                    "Smeared keys did not move the phase change as the paper finds: see the criteria.")]
    return Section("Argument 2: smeared keys move the phase change", text,
                   [(str(f), "ICL score with and without smeared keys." + S.band_note(b_icl))]), {
                       "models": numbers, "reproduced": v.ok,
                                                                            "criteria": v.criteria}


# --- Argument 3: ablations ------------------------------------------------------------------

def other_heads(induction: list, prev_token: dict) -> list:
    """The heads that are neither induction heads nor previous-token heads (score >=
    PREV_THRESHOLD), in prev_token's order: (layer, head) -> previous-token score."""
    ind = set(map(tuple, induction))
    return [u for u in prev_token if u not in ind and prev_token[u] < V.PREV_THRESHOLD]


def contrast_heads(induction: list, dicl_alone: dict, prev_token: dict) -> list:
    """As many other heads as there are induction heads, to ablate for contrast.

    "Other" = neither an induction head nor a previous-token head (score >= PREV_THRESHOLD):
    the previous-token heads are the first half of the induction circuit (Argument 5), so
    ablating them removes induction too and says nothing against it. Among the others, the
    heads whose own ablation removes the most ICL (largest dICL) first: the strongest contrast
    there is, so that "the induction heads remove more" is not won against weak heads. Fewer
    (or none) when the model has fewer such heads.
    """
    others = other_heads(induction, prev_token)
    return sorted(others, key=lambda u: -dicl_alone[u])[:len(induction)]


def ablation_model(ms: dict[str, RunMeasures], candidates=("2L", "3L")) -> str:
    """The model Argument 3 ablates: the first candidate that has induction heads and at
    least as many other heads (neither induction nor previous-token heads) to contrast them
    with; the first candidate if none has (its verdict then says the contrast is missing)."""
    present = [n for n in candidates if n in ms]
    for n in present:
        if can_contrast(ms[n]):
            return n
    return present[0]


def can_contrast(m: RunMeasures) -> bool:
    """Whether a model has induction heads and at least as many other heads: ablation_model's
    test, which a model's own measures decide (so a training worker can sweep a model that
    passes it as soon as it has measured it: training.py)."""
    heads = induction_heads(m)
    prev = {(l, h): float(m.prev_token[l, h]) for l in range(m.prefix.shape[1])
            for h in range(m.prefix.shape[2])}
    return bool(heads) and len(other_heads(heads, prev)) >= len(heads)


def ablation_sweep(run, backend: str = "numpy", progress: bool = True,
                   max_snapshots: int | None = None):
    """Argument 3's sweep: every head and every layer ablated (pattern-preserving) at every
    snapshot (at most `max_snapshots`, evenly spread, the last included; None: every one),
    with the attribution to the phase change around the steepest ICL fall: a HeadSweep."""
    before, after = steepest_fall(run)             # the snapshots around the steepest ICL fall
    direction = None if before is None else phase_direction(run.losses[before], run.losses[after])
    return sweep_heads(run, kind="pattern", snapshots=swept_snapshots(run, max_snapshots),
                       direction=direction, backend=backend, progress=progress)


def swept_snapshots(run, max_snapshots: int | None):
    """The snapshots ablation_sweep takes: every one (None), or at most max_snapshots,
    evenly spread, the last included [S]."""
    if max_snapshots is None or len(run) <= max_snapshots:
        return np.arange(len(run))
    return np.unique(np.linspace(0, len(run) - 1, max_snapshots).round().astype(np.int64))


class IclWithout:
    """The final ICL score of a run with some heads ablated: icl_without(units, kind).

    clean   the ICL score of the last snapshot, nothing ablated (nats)
    share   share(icl): the part of the (negative) clean ICL score an ablation removed,
            1 - icl / clean (NaN when the clean score is not negative: nothing to remove)
    """

    def __init__(self, run, icl_indices: tuple, backend: str = "numpy"):
        self.run, self.indices, self.backend = run, icl_indices, backend
        self.params = run.params(len(run) - 1)
        self.clean = float(metrics.icl_score(per_token_losses(self.params, run.eval_tokens, run.cfg,
                                                              backend), *icl_indices))

    def __call__(self, units, kind: str = "pattern") -> float:
        tokens = self.run.eval_tokens
        logits, _ = run_with_ablation(self.params, tokens, self.run.cfg, Ablation(units, kind),
                                      self.backend)
        losses = get_backend(self.backend).per_token_loss(logits, tokens)
        return float(metrics.icl_score(losses, *self.indices))

    def share(self, icl: float) -> float:
        return 1 - icl / self.clean if self.clean < 0 else float("nan")


def argument_3(ms: dict[str, RunMeasures], runs: dict, figs, name: str = "2L",
               backend: str = "numpy", progress: bool = True, candidates=("2L", "3L"), tag: str = "",
               title: str = "Argument 3: ablating induction heads removes in-context learning",
               max_snapshots: int | None = None, sweep=None) -> tuple[Section, dict]:
    """Head by head: each head's dICL alone (pattern-preserving and zero ablation) and its
    attribution to the phase change; then the induction heads together against as many
    other heads together. `name` is the model ablated, chosen by ablation_model among
    `candidates`; `tag` keeps the figures' file names apart; `max_snapshots` sweeps at most
    that many snapshots, evenly spread, the last included (None: every one). `sweep`: the
    model's ablation_sweep with these max_snapshots, if already computed (by a training
    worker), else computed here (also if it swept other snapshots)."""
    m, run = ms[name], runs[name]
    cfg = run.cfg
    early, late = m.icl_indices
    if sweep is None or not np.array_equal(sweep.snapshots, swept_snapshots(run, max_snapshots)):
        sweep = ablation_sweep(run, backend, progress, max_snapshots)
    labels = sweep.labels                                            # "L1H3", and "L1*" = a whole layer
    dicl = sweep.dicl(early, late)                                    # [K, S]
    figs_out = [(str(figures.head_by_snapshot(figs / f"a3{tag}_dicl.png", dicl, labels, sweep.tokens_seen,
                                              f"{name}: ICL score change when each head is ablated",
                                              "dICL (nats)")),
                 "Attribution to the ICL score: dICL = ICL(ablated) - ICL(clean), pattern-preserving ablation.")]
    if sweep.phase_attr is not None:
        figs_out.append((str(figures.head_by_snapshot(figs / f"a3{tag}_phase.png", sweep.phase_attr, labels,
                                                      sweep.tokens_seen,
                                                      f"{name}: attribution to the phase change",
                                                      "v . (L_ablated - L)")),
                         "Attribution to the phase change: projection of the loss change on the "
                         "window's direction (negative = the head carries the change)."))
    heads = induction_heads(m)
    icl_without = IclWithout(run, m.icl_indices, backend)
    clean, share = icl_without.clean, icl_without.share

    # every head alone at the last snapshot
    per_head = {}
    for l in range(cfg.n_layers):
        for h in range(cfg.n_heads):
            k = labels.index(f"L{l}H{h}")
            per_head[(l, h)] = {
                "prefix": float(m.prefix[-1, l, h]), "prev_token": float(m.prev_token[l, h]),
                "dicl_pattern": float(dicl[k, -1]), "dicl_zero": icl_without([(l, h)], "zero") - clean,
                "phase_attr": (float(sweep.phase_attr[k, -1]) if sweep.phase_attr is not None
                               else float("nan"))}
    rows = ["| head | prefix matching | previous-token | dICL, pattern-preserving | dICL, zero | "
            "attribution to the phase change |", "|---|---|---|---|---|---|"]
    for (l, h), r in per_head.items():
        mark = " (induction)" if (l, h) in heads else ""
        rows.append(f"| {l}.{h}{mark} | {r['prefix']:.2f} | {r['prev_token']:.2f} | {r['dicl_pattern']:+.2f} | "
                    f"{r['dicl_zero']:+.2f} | {r['phase_attr']:+.2f} |")
    others = contrast_heads(heads, {u: r["dicl_pattern"] for u, r in per_head.items()},
                            {u: r["prev_token"] for u, r in per_head.items()})
    numbers = {"model": name, "heads": heads, "icl_clean": clean, "dicl_last": dict(zip(labels, map(float, dicl[:, -1]))),
               "per_head": {f"{l}.{h}": r for (l, h), r in per_head.items()},
               "contrast_heads": others, "sweep_seconds": sweep.seconds,
               "snapshots_swept": sweep.snapshots.tolist()}
    text_num = []
    share_ind = share_oth = None
    if heads:
        ablated = icl_without(heads, "pattern")
        share_ind = share(ablated)
        numbers.update(icl_ablated=ablated, share_removed=share_ind)
        text_num.append(f"Ablating the {len(heads)} induction head(s) {', '.join(f'{l}.{h}' for l, h in heads)} "
                        f"together (pattern-preserving) moves the final ICL score from {clean:.2f} to "
                        f"{ablated:.2f}: {share_ind:.0%} of the in-context learning removed.")
        if others:
            ablated_o = icl_without(others, "pattern")
            share_oth = share(ablated_o) if len(others) == len(heads) else None
            # only a set as large as the induction heads is the contrast; fewer get their own keys
            if share_oth is not None:
                numbers.update(icl_ablated_contrast=ablated_o, share_removed_contrast=share_oth)
            else:
                numbers.update(n_fewer_others=len(others), icl_ablated_fewer_others=ablated_o,
                               share_removed_fewer_others=share(ablated_o))
            text_num.append(f"Ablating {len(others)} other head(s) (neither induction nor previous-token heads) "
                            f"{', '.join(f'{l}.{h}' for l, h in others)} together instead (the ones whose "
                            f"own ablation removes the most ICL) gives {ablated_o:.2f}: "
                            f"{share(ablated_o):.0%} removed"
                            + ("." if len(others) == len(heads) else
                               ", but they are fewer than the induction heads, so they are no fair contrast."))
        else:
            text_num.append("The model has no head that is neither an induction head nor a "
                            "previous-token head, so there is nothing to ablate for contrast.")
        if share_ind > 1:
            text_num.append(f"A share above 100% means that without the induction heads the model "
                            f"predicts late tokens worse than early ones (ICL score {ablated:+.2f} > 0): "
                            f"the rest of the model was relying on them for more than the whole ICL "
                            f"score, e.g. to undo a bias toward early-context predictions.")
        layer0 = [u for u in per_head if u[0] == 0 and cfg.n_layers > 1]
        if layer0:
            top = max(layer0, key=lambda u: per_head[u]["dicl_zero"])
            text_num.append(f"Zero-ablating layer-0 head {top[0]}.{top[1]} alone (previous-token score "
                            f"{per_head[top]['prev_token']:.2f}) changes the ICL score by "
                            f"{per_head[top]['dicl_zero']:+.2f}: the induction heads read it through "
                            f"K-composition, so removing it also removes induction.")
    else:
        text_num.append(f"`{name}` has no induction head to ablate (no head reached {INDUCTION_THRESHOLD}).")
    v = V.argument_3(clean, share_ind if share_ind is not None else float("nan"), share_oth, len(heads))
    numbers["reproduced"], numbers["criteria"] = v.ok, v.criteria
    listed = ", ".join(f"`{c}`" for c in candidates)
    fair = share_oth is not None                   # a same-sized set of other heads was ablated
    text = [(f"The model ablated is `{name}`, the first of {listed} that has as many heads that are "
             "neither induction nor previous-token heads as it has induction heads, so that the "
             "contrast the argument needs exists. " if fair else
             f"The model ablated is `{name}`, the first of {listed}: none of them has induction heads "
             "and as many heads that are neither induction nor previous-token heads, so the contrast "
             "the argument needs is missing. ") +
            "Each head is removed alone at every snapshot, with all attention patterns frozen to the "
            "clean run's (pattern-preserving ablation; in an attention-only model it removes every "
            "path through the head), and at the last snapshot also by zeroing its output (patterns "
            "recomputed). dICL = ICL(ablated) - ICL(clean): positive = the head carried in-context "
            "learning.", "\n".join(rows), " ".join(text_num),
            verdict(v, f"Removing the induction heads removes at least {V.SHARE_REMOVED:.0%} of the ICL "
                       "score, more than removing as many other heads.",
                    "Ablation did not single out the induction heads: see the criteria.")]
    return Section(title, text, figs_out), numbers


# --- Argument 4: generality ------------------------------------------------------------------

def literal_heads(literal, baselines: dict) -> list:
    """Heads that literal copying alone picks: layer >= 1 (any layer in a 1-layer model),
    target attention >= INDUCTION_THRESHOLD and above both task-blind baseline heads."""
    L, H = literal.shape
    floor = max(INDUCTION_THRESHOLD, max(baselines.values()))
    return [(l, h) for l in range(1 if L > 1 else 0, L) for h in range(H) if literal[l, h] >= floor]


def _generality_table(res: dict, prefix, copying, picked) -> list[str]:
    kinds = list(res)
    rows = ["| head | prefix matching | copying (OV eigenvalues) | " + " | ".join(kinds) + " |",
            "|---|---|---|" + "---|" * len(kinds)]
    L, H = prefix.shape
    for l in range(L):
        for h in range(H):
            mark = " (picked)" if (l, h) in picked else ""
            rows.append(f"| {l}.{h}{mark} | {prefix[l, h]:.2f} | {copying[l, h]:+.2f} | "
                        + " | ".join(f"{res[k]['attention'][l, h]:.2f}" for k in kinds) + " |")
    for base in ("uniform", "previous_token"):
        rows.append(f"| baseline: {base.replace('_', '-')} head | | | "
                    + " | ".join(f"{res[k]['baselines'][base]:.2f}" for k in kinds) + " |")
    return rows


def _task_groups(scores: dict, baselines: dict) -> dict:
    """Argument 4's bars: task -> the picked heads' score (NaN when literal copying picked
    none) and the two task-blind heads'."""
    return {k: {"picked heads": scores[k], "chance head": baselines[k]["uniform"],
                "previous-token head": baselines[k]["previous_token"]} for k in scores}


def argument_4(name: str, run, source, figs, backend: str = "numpy",
               literal_only: tuple | None = None, others: list = ()) -> tuple[Section, dict]:
    """Heads picked by literal copying alone, scored on translation and fuzzy matching, in the
    model trained on the three tasks; and (`literal_only` = (name, run)) the same scores for a
    model trained on literal repeats alone, which says what the mix of tasks did. `others`
    (seeds.SeedRun) give the bars their range over seeds."""
    params = run.params(len(run) - 1)
    cfg = run.cfg
    res = generality_scores(params, cfg, source, backend=backend)
    prefix = metrics.prefix_matching_scores(params, cfg, backend=backend)
    copying = metrics.eigenvalue_copying_scores(params, cfg)
    picked = literal_heads(res["literal"]["attention"], res["literal"]["baselines"])
    scores = {k: float(np.mean([r["attention"][u] for u in picked])) if picked else float("nan")
              for k, r in res.items()}
    v = V.argument_4(picked, scores, {k: r["baselines"] for k, r in res.items()},
                     {k: float(r["gain"]) for k, r in res.items()})
    head = picked[0] if picked else (1 if cfg.n_layers > 1 else 0, 0)
    groups = _task_groups(scores, {k: r["baselines"] for k, r in res.items()})
    seeds_groups = [groups] + [_task_groups(o.numbers["argument_4"]["scores"],
                                            o.numbers["argument_4"]["baselines"]) for o in others]
    spread = ({k: {b: S.value_range([g[k][b] for g in seeds_groups]) for b in groups[k]}
               for k in groups} if others else None)
    # the range over the seeds where a head was picked; a seed that picked none has no bar
    # height to add (its table row says n/a), and this seed's missing bar is drawn at 0
    drawn = {k: {b: (x if np.isfinite(x) else 0.0) for b, x in g.items()} for k, g in groups.items()}
    f_bar = figures.bars(figs / "a4_scores.png", drawn, f"{name}: attention on the task's targets",
                         "attention on target keys", ranges=spread)
    fig_list = [(str(f_bar), "Attention on the target keys per task: the heads literal copying picks "
                             "against two task-blind heads (uniform attention; previous token)."
                 + ("" if picked else " Literal copying picked no head: the first bars are 0.")
                 + (S.BARS_NOTE_4 if others else ""))]
    for kind, r in res.items():
        T = min(40, r["tokens"].shape[1])
        pats, _ = stacked_patterns(params, cfg, r["tokens"][:1, :T], backend=backend)
        f = figures.attention_pattern(figs / f"a4_{kind}.png", pats[head[0], 0, head[1]],
                                      [str(t) for t in r["tokens"][0, :T]],
                                      f"{name} head {head[0]}.{head[1]} on a {kind} sequence",
                                      r["target"][0, :T, :T])
        fig_list.append((str(f), f"{kind}: attention of head {head[0]}.{head[1]} (red circles: target keys)."))
    numbers = {"picked": [list(u) for u in picked], "scores": scores,
               "baselines": {k: r["baselines"] for k, r in res.items()},
               "gain": {k: float(r["gain"]) for k, r in res.items()},
               "per_head": {k: r["attention"].tolist() for k, r in res.items()},
               "prefix": prefix.tolist(), "copying": copying.tolist(),
               "reproduced": v.ok, "criteria": v.criteria}
    text = [f"`{name}` was trained on a mix of three tasks (`minih/data/generality_tasks.py`): literal "
            "repeats; \"translation\" (a segment, then its image under a fixed bijection from the "
            "lower to the upper half of the vocabulary: after f(s_k) the head should attend to "
            "s_{k+1}); and fuzzy matching (item, label pairs whose label depends on the item's "
            "class, with a new class-to-label map in every sequence: an item's label can only be "
            "found after an earlier item of the same class). Every head's attention on each task's "
            "target keys (on fresh sequences; 1 = the task's induction done exactly), beside its "
            "prefix-matching and OV-eigenvalue copying scores, and the same for two task-blind heads:",
            "\n".join(_generality_table(res, prefix, copying, picked)),
            (f"Literal copying alone picks {', '.join(f'{l}.{h}' for l, h in picked)}; on the other "
             "tasks they score " + ", ".join(f"{k} {scores[k]:.2f}" for k in res if k != "literal")
             + ". In-context gain (loss where the context cannot help minus where it can): "
             + ", ".join(f"{k} {numbers['gain'][k]:+.2f} nats" for k in res) + "."
             if picked else "Literal copying picks no head.")]
    if literal_only is not None:
        lname, lrun = literal_only
        lp = lrun.params(len(lrun) - 1)
        lres = generality_scores(lp, lrun.cfg, source, backend=backend)
        lpicked = literal_heads(lres["literal"]["attention"], lres["literal"]["baselines"])
        lscores = {k: float(np.mean([r["attention"][u] for u in lpicked])) if lpicked else float("nan")
                   for k, r in lres.items()}
        numbers["literal_only"] = {"model": lname, "picked": [list(u) for u in lpicked], "scores": lscores,
                                   "gain": {k: float(r["gain"]) for k, r in lres.items()}}
        text.append(f"For comparison, `{lname}`, trained on literal repeats only, on the same sequences: "
                    + (f"literal copying picks {', '.join(f'{l}.{h}' for l, h in lpicked)}, which score "
                       + ", ".join(f"{k} {lscores[k]:.2f}" for k in lres) if lpicked else
                       "literal copying picks no head")
                    + "; in-context gain " + ", ".join(f"{k} {numbers['literal_only']['gain'][k]:+.2f}"
                                                       for k in lres)
                    + " nats. The verdict below is about the model trained on the mix; what its heads do "
                      "beyond literal copying they learned from data that rewards it.")
    text.append(verdict(v, "The heads that literal copying picks also do translation and fuzzy "
                           "matching, well above heads that know nothing of the task.",
                        "The heads picked by literal copying do not do every abstract task: see the criteria."))
    return Section("Argument 4: the same heads do copying, translation and fuzzy matching", text, fig_list), numbers


# --- Argument 5: mechanism -------------------------------------------------------------------

def argument_5(name: str, run, m: RunMeasures, figs, backend: str = "numpy") -> tuple[Section, dict]:
    params = run.params(len(run) - 1)
    cfg = run.cfg
    (lh, hh), score = m.best_prefix()
    prev = m.prev_token                                              # [L, H]
    p0 = int(np.argmax(prev[0]))
    comp = metrics.composition_scores(params, cfg)["K"][0, :, lh, :]   # [H0, H_l]
    base = metrics.composition_baseline(cfg.d_model, cfg.d_head)
    eig = metrics.eigenvalue_copying_scores(params, cfg)
    f_comp = figures.matrix_heatmap(figs / "a5_kcomp.png", comp - base,
                                    [f"0.{h}" for h in range(cfg.n_heads)],
                                    [f"{lh}.{h}" for h in range(cfg.n_heads)],
                                    f"{name}: K-composition, layer 0 into layer {lh} (minus baseline {base:.2f})",
                                    "score - baseline", diverging=True)
    small = metrics.small_ov_circuits(params, cfg, lh)[hh]  # [E,E], the OV eigenvalues
    f_eig = figures.eigenvalues(figs / "a5_ov_eigs.png", np.linalg.eigvals(small),
                                f"{name} head {lh}.{hh}: OV circuit eigenvalues")
    toks, _ = prefix_matching_tokens(cfg.d_vocab, min(cfg.n_ctx, 41), n_seqs=1, seg_len=10)
    pats, _ = stacked_patterns(params, cfg, toks, backend=backend)
    labels = [str(t) for t in toks[0]]
    f_ind = figures.attention_pattern(figs / "a5_induction.png", pats[lh, 0, hh], labels,
                                      f"{name} head {lh}.{hh} on a repeated sequence")
    f_prev = figures.attention_pattern(figs / "a5_prev.png", pats[0, 0, p0], labels,
                                       f"{name} head 0.{p0} on the same sequence")
    numbers = {"induction_head": [lh, hh], "prefix": score, "prev_head": [0, p0],
               "prev_score": float(prev[0, p0]), "k_comp": float(comp[p0, hh]), "k_baseline": base,
               "k_comp_rank": int((comp[:, hh] > comp[p0, hh]).sum()) + 1,
               "ov_eigen_copying": float(eig[lh, hh])}
    v = V.argument_5(score, numbers["prev_score"], numbers["k_comp"], base, numbers["ov_eigen_copying"])
    numbers["reproduced"], numbers["criteria"] = v.ok, v.criteria
    text = [f"The mechanism in `{name}`: head 0.{p0} attends to the previous token (score "
            f"{numbers['prev_score']:.2f}); the induction head {lh}.{hh} (prefix matching {score:.2f}) "
            f"reads it through K-composition (score {numbers['k_comp']:.2f} against a random baseline of "
            f"{base:.2f}; rank {numbers['k_comp_rank']} among the layer-0 heads) and copies: its OV "
            f"eigenvalue copying score is {numbers['ov_eigen_copying']:.2f} (1 = pure copying).",
            verdict(v, "Previous-token head, K-composition above baseline and a copying OV circuit: "
                       "the induction mechanism of the papers.",
                    "At least one part of the mechanism is missing: see the criteria.")]
    return Section("Argument 5: the mechanism", text,
                   [(str(f_prev), f"Head 0.{p0}: previous-token attention."),
                    (str(f_ind), f"Head {lh}.{hh}: attention on a repeated random sequence."),
                    (str(f_comp), "K-composition scores minus the random baseline."),
                    (str(f_eig), "OV-circuit eigenvalues of the induction head.")]), numbers


# --- the per-token loss difference over a passage ---------------------------------------------

def copyable(tokens) -> np.ndarray:
    """[T] bool: token i can be predicted by copying (i >= 2 and the pair (t[i-1], t[i]) came
    earlier in the passage: an induction head attending after the earlier t[i-1] finds t[i])."""
    t = [int(x) for x in np.asarray(tokens)]
    seen, out = set(), np.zeros(len(t), dtype=bool)
    for i in range(1, len(t)):
        out[i] = (t[i - 1], t[i]) in seen
        seen.add((t[i - 1], t[i]))
    return out


def loss_difference_passage(name: str, run, m: RunMeasures, tokens, texts=None,
                            backend: str = "numpy") -> tuple[Section, dict]:
    """Per-token loss at the window's end minus at its start, over one passage (1-D tokens,
    shown as `texts`, one string per token; None: as bytes), and its mean over the tokens
    copying can predict against the others, and the tokens that got most worse."""
    _, before, after, _ = phase_window(run)           # the snapshots bracketing the window
    ends = (before, after) if before is not None else (1, len(run) - 1)
    t = np.asarray(tokens)[None, : run.cfg.n_ctx]
    before = per_token_losses(run.params(ends[0]), t, run.cfg, backend=backend)[0]
    after = per_token_losses(run.params(ends[1]), t, run.cfg, backend=backend)[0]
    diff = np.concatenate([[np.nan], after - before])               # token 0 is never predicted
    block = render_token_values_html(t[0], diff, texts=None if texts is None else texts[: t.shape[1]])
    copy = copyable(t[0])
    other = ~copy
    other[0] = False                                                 # never predicted
    numbers = {"snapshots": list(ends),
               "copyable": {"tokens": int(copy.sum()),
                            "mean_change": float(diff[copy].mean()) if copy.any() else float("nan")},
               "other": {"tokens": int(other.sum()),
                         "mean_change": float(diff[other].mean()) if other.any() else float("nan")},
               "improved": int((diff < 0).sum()), "worse": int((diff > 0).sum())}
    c, o = numbers["copyable"], numbers["other"]
    copying_gains = bool(copy.any() and other.any() and c["mean_change"] < min(0.0, o["mean_change"]))
    numbers["copying_gains_most"] = copying_gains
    # the predictions that got most worse: not every token gains from the phase change
    shown = texts if texts is not None else [chr(b) if 32 <= b < 127 else f"<x{b:02x}>" for b in t[0]]
    worse = [int(i) for i in np.argsort(-np.nan_to_num(diff, nan=-np.inf))[:3] if diff[i] > 0]
    numbers["most_worse"] = [{"position": i, "token": int(t[0, i]), "shown": shown[i],
                              "change": float(diff[i])} for i in worse]
    worse_text = ("" if not worse else " The predictions that got most worse: " + ", ".join(
        f"{w['shown']!r} at position {w['position']} ({w['change']:+.2f} nats)"
        for w in numbers["most_worse"]) + ".")
    sec = Section(f"The loss change over a passage ({name})",
                  [f"Each token coloured by its loss at the end of the window minus at its start "
                   f"(snapshots {ends[0]} and {ends[1]}): blue = the model got better at it, red = worse "
                   f"({numbers['improved']} tokens better, {numbers['worse']} worse). The {c['tokens']} "
                   f"tokens that copying can predict (the same two tokens came earlier in the passage) "
                   f"changed by {c['mean_change']:+.2f} nats on average, the {o['tokens']} others by "
                   f"{o['mean_change']:+.2f}: "
                   + ("in-context copying is where the model gained most." if copying_gains else
                      "the copyable tokens did not gain more than the others.") + worse_text],
                  html_blocks=[block], markdown_blocks=["(The coloured passage is in report.html.)"])
    return sec, numbers
