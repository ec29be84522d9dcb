"""The verdict rules of the reproduction: pure functions from measured numbers to yes / no.

The paper judges its plots by eye; minih has to decide, so each argument's rule is a
function here, of the numbers the report states (the same dicts that go into
numbers.json), returning a Verdict: the answer and every criterion it checked, each
with whether it held. The report prints the criteria beside the verdict, and
tests/test_verdicts.py builds cases where each rule must come out NO (a control that
forms nothing, an ICL fall with no head, an ablation that removes little, ...) and
cases where it must come out yes.

Thresholds (minih's choices, stated in the report):
    INDUCTION_THRESHOLD   prefix matching from which a head counts as an induction head
    CO_OCCUR_DECADES      how close (log10 tokens) two events must be to count as together
    PREV_THRESHOLD        previous-token score of a previous-token head
    SHARE_REMOVED         share of the ICL score an ablation must remove ("most")
    PAIR_FALL             how far (nats) the ICL score at another pair of context indices
                          must fall over training for that pair to locate a phase change
    MARGIN                how far above the better of the two task-blind baseline heads
                          (uniform attention; previous token) a head must score on a task
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

INDUCTION_THRESHOLD = 0.3
CO_OCCUR_DECADES = 0.3
PREV_THRESHOLD = 0.3
SHARE_REMOVED = 0.5
MARGIN = 0.1                  # how far a head must beat the chance and previous-token heads
PAIR_FALL = 0.3               # nats the ICL score must fall at an index pair for it to count


@dataclass
class Verdict:
    """An argument's answer and the criteria that decided it: [(what was required, held?)]."""
    ok: bool
    criteria: list = field(default_factory=list)

    def lines(self) -> str:
        """The criteria as a Markdown list, each marked as held or not."""
        return "\n".join(f"- {'held' if held else '**did not hold**'}: {what}"
                         for what, held in self.criteria)


def near(x, y, decades: float = CO_OCCUR_DECADES) -> bool:
    """Whether two token counts are within `decades` of each other (False if either is NaN)."""
    return bool(x is not None and y is not None and np.isfinite(x) and np.isfinite(y)
                and x > 0 and y > 0 and abs(np.log10(x / y)) <= decades)


def _formed(row) -> bool:
    return row.get("formed_at") is not None and bool(np.isfinite(row["formed_at"]))


def _most(flags) -> bool:
    return len(flags) > 0 and sum(flags) > len(flags) / 2


def argument_1(models: dict, control: str) -> Verdict:
    """Co-occurrence: the phase change's signatures all come when the induction head forms.

    models: name -> row with "formed_at", "steepest_icl_at" (and per ICL index pair in
    "icl_pairs": {pair: {"steepest_at": ...}}), "departure_tokens" (where the loss leaves
    the control's curve), "pca_turn_tokens"; `control` names the 1-layer model, whose
    own PCA turn must not fall at the same place (else the turn rule finds the "same"
    event in a model without induction heads, and shows nothing).
    """
    deeper = [n for n in models if n != control]
    with_head = [n for n in deeper if _formed(models[n])]
    if control not in models:
        crit = [("a 1-layer control trained on the same data (this run has none)", False)]
    else:
        crit = [(f"the 1-layer control `{control}` forms no induction head",
                 not _formed(models[control]))]
    crit += [
        ("at least one of the other models forms an induction head "
         f"({', '.join(with_head) or 'none did'})", bool(with_head))]
    if with_head:
        fall = [near(models[n]["steepest_icl_at"], models[n]["formed_at"]) for n in with_head]
        crit.append(("in every model with an induction head, the ICL score falls fastest when "
                     f"it forms ({sum(fall)} of {len(fall)})", all(fall)))
        pairs = [near(p["steepest_at"], models[n]["formed_at"]) for n in with_head
                 for p in models[n].get("icl_pairs", {}).values()
                 if p.get("first", 0) - p.get("last", -PAIR_FALL) >= PAIR_FALL]
        if pairs:
            crit.append(("the same holds at every other pair of context indices where the ICL "
                         f"score falls by at least {PAIR_FALL} nats ({sum(pairs)} of {len(pairs)})",
                         all(pairs)))
        dep = [near(models[n]["departure_tokens"], models[n]["formed_at"]) for n in with_head]
        crit.append(("in most of them the loss curve leaves the 1-layer control's curve when "
                     f"the head forms ({sum(dep)} of {len(dep)})", _most(dep)))
        ctrl_turn = models[control].get("pca_turn_tokens") if control in models else None
        turn = [near(models[n]["pca_turn_tokens"], models[n]["formed_at"])
                and not near(ctrl_turn, models[n]["formed_at"]) for n in with_head]
        crit.append(("in most of them the PCA trajectory turns when the head forms, and the "
                     f"control's does not turn there ({sum(turn)} of {len(turn)})", _most(turn)))
    return Verdict(all(held for _, held in crit), crit)


def argument_2(models: dict) -> Verdict:
    """Co-perturbation: smeared keys let 1 layer form an induction head, and 2 layers no later.

    models: name -> row with "formed_at", for "1L", "1L smeared", "2L", "2L smeared".
    """
    f = {n: _formed(models[n]) for n in models}
    crit = [("`1L smeared` forms an induction head", f.get("1L smeared", False)),
            ("`1L` (vanilla) forms none", "1L" in f and not f["1L"]),
            ("`2L` and `2L smeared` both form one", f.get("2L", False) and f.get("2L smeared", False))]
    if f.get("2L") and f.get("2L smeared"):
        crit.append(("`2L smeared` forms it no later than `2L`",
                     models["2L smeared"]["formed_at"] <= models["2L"]["formed_at"]))
    return Verdict(all(held for _, held in crit), crit)


def argument_3(icl_clean: float, share_induction: float, share_others: float | None,
               n_heads: int) -> Verdict:
    """Ablation: removing the induction heads removes most of the ICL, and more than removing
    as many other heads does.

    share_* = 1 - ICL(ablated) / ICL(clean): the share of the (negative) ICL score removed by
    pattern-preserving ablation of the induction heads together, and of a same-sized set of
    non-induction heads (None: the model has no such set to contrast with).
    """
    crit = [("the model learns in context (final ICL score < 0)", icl_clean < 0),
            ("it has induction heads to ablate", n_heads > 0)]
    if icl_clean < 0 and n_heads > 0:
        crit.append((f"ablating them removes at least {SHARE_REMOVED:.0%} of the ICL score "
                     f"({share_induction:.0%})", share_induction >= SHARE_REMOVED))
        crit.append(("ablating as many other heads (neither induction nor previous-token heads) "
                     "removes less " + ("(the model has too few such heads)" if share_others is None
                        else f"({share_others:.0%})"),
                     share_others is not None and share_others < share_induction))
    return Verdict(all(held for _, held in crit), crit)


def argument_4(picked: list, scores: dict, baselines: dict, gains: dict) -> Verdict:
    """Generality: heads picked by literal copying alone also do the abstract tasks.

    picked: the heads literal copying picks; scores: kind -> their mean target attention;
    baselines: kind -> {baseline head: its score}; gains: kind -> in-context gain (nats).
    """
    crit = [("literal copying picks at least one head (target attention >= "
             f"{INDUCTION_THRESHOLD} and above both baselines)", bool(picked))]
    if picked:
        for kind in scores:
            if kind == "literal":
                continue
            best = max(baselines[kind].values())
            crit.append((f"{kind}: those heads score {scores[kind]:.2f}, at least {MARGIN} above the "
                         f"better baseline head ({best:.2f})", scores[kind] >= best + MARGIN))
    for kind, g in gains.items():
        crit.append((f"{kind}: the model gains from context ({g:+.2f} nats)", g > 0))
    return Verdict(all(held for _, held in crit), crit)


def argument_5(prefix: float, prev_score: float, k_comp: float, k_baseline: float,
               ov_copying: float) -> Verdict:
    """Mechanism: previous-token head + K-composition above baseline + a copying OV circuit."""
    crit = [(f"an induction head (prefix matching {prefix:.2f} >= {INDUCTION_THRESHOLD})",
             prefix >= INDUCTION_THRESHOLD),
            (f"a layer-0 previous-token head (score {prev_score:.2f} >= {PREV_THRESHOLD})",
             prev_score >= PREV_THRESHOLD),
            (f"K-composition from it into the induction head above the random baseline "
             f"({k_comp:.2f} > {k_baseline:.2f})", k_comp > k_baseline),
            (f"the induction head's OV eigenvalues mostly positive (copying score "
             f"{ov_copying:.2f} > 0)", ov_copying > 0)]
    return Verdict(all(held for _, held in crit), crit)


def argument_6(depth: dict, mlp: dict | None) -> Verdict:
    """Continuity: the same signatures at every size, in attention-only models and in models
    with MLPs (the paper's bridge from small models to large ones).

    depth: name -> row ("formed_at", "steepest_icl_rate", "share_removed") for "1L", "2L",
    "3L" attention-only; mlp: the same for "1L MLP", "2L MLP", "3L MLP", or None where the
    run trained no model with MLPs. In each family: the 1-layer model forms no induction
    head; the deeper ones form one, their ICL score falls more steeply than the 1-layer
    model's, and ablating their induction heads removes most (SHARE_REMOVED) of their ICL
    score.
    """
    crit = []
    families = [("", depth)] + ([] if mlp is None else [(" with MLPs", mlp)])
    for label, rows in families:
        one = next((n for n in rows if n.startswith("1L")), None)
        deeper = [n for n in rows if n != one]
        f = {n: _formed(r) for n, r in rows.items()}
        names = " and ".join(f"`{n}`" for n in deeper) or "no deeper model"
        crit.append((f"`{one}` forms no induction head" if one else
                     f"a 1-layer model{label} forms no induction head (none was trained)",
                     one is not None and not f[one]))
        crit.append((f"{names} form one", bool(deeper) and all(f[n] for n in deeper)))
        if one is not None and deeper:
            crit.append((f"their ICL score falls more steeply than `{one}`'s",
                         all(rows[n]["steepest_icl_rate"] > rows[one]["steepest_icl_rate"]
                             for n in deeper)))
        shares = [rows[n].get("share_removed", float("nan")) for n in deeper if f[n]]
        said = ", ".join(f"{x:.0%}" if np.isfinite(x) else "no induction head at the last snapshot"
                         for x in shares) or "no heads"
        crit.append((f"ablating the induction heads of {names} removes at least "
                     f"{SHARE_REMOVED:.0%} of their ICL score ({said})",
                     bool(shares) and len(shares) == len(deeper)
                     and all(bool(x >= SHARE_REMOVED) for x in shares)))
    if mlp is None:
        crit.append(("the same signatures in models with MLPs (this run trained none)", False))
    return Verdict(all(held for _, held in crit), crit)