"""When does the phase change happen? A window on the ICL-score curve, and the loss
"bump" (IH, "Argument 1": both happen together). The paper marks the window by eye;
the rules here are minih's, stated so anyone can check them.

Shape legend: S snapshots
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import _check


def smooth_log(tokens_seen, values, width: float = 0.1) -> np.ndarray:
    """Gaussian kernel smoothing of `values` against log10(tokens_seen): [S] -> [S].

        smoothed[s] = sum_r w[s, r] values[r] / sum_r w[s, r],
        w[s, r] = exp(-(log10 x_s - log10 x_r)^2 / (2 width^2))

    `width` is in decades (0.1 = about 26% more or fewer tokens). Kernel weights
    renormalised per point, so the ends are averaged over the snapshots that exist.
    width=0 returns the values unchanged.
    """
    x, y = _check.curve(tokens_seen, values, "tokens_seen", "values")
    if width < 0:
        raise ValueError(f"width must be >= 0 (decades), got {width}")
    if width == 0:
        return y.copy()
    lx = np.log10(x)
    w = np.exp(-0.5 * ((lx[:, None] - lx[None, :]) / width) ** 2)      # [S,S]
    return (w @ y) / w.sum(axis=1)


@dataclass(frozen=True)
class PhaseWindow:
    """The phase-change window: where the smoothed ICL score goes from 10% to 90% of its change."""
    start_tokens: float        # tokens seen at the 10% crossing (interpolated in log tokens)
    end_tokens: float          # tokens seen at the 90% crossing
    start_index: int           # first snapshot at or past the 10% crossing
    end_index: int             # first snapshot at or past the 90% crossing
    total_change: float        # smoothed[-1] - smoothed[0]
    smoothed: np.ndarray       # [S] the smoothed curve


def _crossing(lx, frac, level, start=0):
    """First s >= start with frac[s] >= level, and log-x interpolated between s-1 and s."""
    hits = np.flatnonzero(frac[start:] >= level)
    s = start + int(hits[0])
    if s == 0 or frac[s - 1] >= level:
        return s, lx[s]
    t = (level - frac[s - 1]) / (frac[s] - frac[s - 1])
    return s, lx[s - 1] + t * (lx[s] - lx[s - 1])


def phase_change_window(tokens_seen, icl, width: float = 0.1, lo: float = 0.1,
                        hi: float = 0.9) -> PhaseWindow:
    """The span of training in which the smoothed ICL score makes most of its change.

    Smooth the ICL score against log tokens (smooth_log, `width` decades); its total
    change is smoothed[-1] - smoothed[0]. The window starts where the fraction of
    that change done, (smoothed - smoothed[0]) / total, first reaches `lo` (10%), and
    ends where it first reaches `hi` (90%) after that, both interpolated linearly in
    log tokens. The paper gives no rule (it shows the window by eye); this is minih's.
    Snapshots with tokens_seen == 0 must be dropped first (log scale).
    Raises ValueError if the score does not change at all.
    """
    x, _ = _check.curve(tokens_seen, icl, "tokens_seen", "icl")
    if not 0 < lo < hi < 1:
        raise ValueError(f"need 0 < lo < hi < 1, got lo={lo}, hi={hi}")
    smoothed = smooth_log(tokens_seen, icl, width)
    total = smoothed[-1] - smoothed[0]
    if total == 0:
        raise ValueError("the smoothed ICL score does not change: no phase-change window")
    frac = (smoothed - smoothed[0]) / total                            # 0 -> 1
    lx = np.log10(x)
    start_index, start = _crossing(lx, frac, lo)
    end_index, end = _crossing(lx, frac, hi, start_index)
    return PhaseWindow(float(10 ** start), float(10 ** end), start_index, end_index,
                       float(total), smoothed)


def loss_bump(tokens_seen, loss, width: float = 0.1) -> float:
    """Tokens seen where the loss curve against log tokens stops being convex (IH's "bump").

    The training loss against log tokens normally bends upwards (convex: it falls
    ever more slowly). Before the phase change it flattens, then falls faster: the
    curve turns concave. We smooth (smooth_log), take the second derivative with
    respect to log10(tokens) (np.gradient twice), and return the first point where it
    goes from positive to <= 0 after having been positive, interpolated in log
    tokens. NaN if it never does. The paper shows the bump in plots only; this rule
    is minih's.
    """
    x, _ = _check.curve(tokens_seen, loss, "tokens_seen", "loss")
    lx = np.log10(x)
    smoothed = smooth_log(tokens_seen, loss, width)
    d2 = np.gradient(np.gradient(smoothed, lx), lx)                    # [S]
    for s in range(1, len(d2)):
        if d2[s - 1] > 0 and d2[s] <= 0:
            t = d2[s - 1] / (d2[s - 1] - d2[s])                         # linear zero crossing
            return float(10 ** (lx[s - 1] + t * (lx[s] - lx[s - 1])))
    return float("nan")
