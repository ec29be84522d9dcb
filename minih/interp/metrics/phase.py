"""When does the phase change happen? A window on the ICL-score curve, the loss "bump"
inside it, and where a deeper model's loss curve leaves a 1-layer control's (IH, "Argument 1":
all happen together). The paper marks the window by eye;
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


def steepest_fall(tokens_seen, values, width: float = 0.1) -> tuple[int, float]:
    """(k, rate): the curve, smoothed against log10 tokens (smooth_log), falls fastest between
    snapshots k and k+1, at `rate` = -(v[k+1] - v[k]) / (log10 x[k+1] - log10 x[k]) per decade
    (negative if it never falls). Used for the ICL score: a phase change is abrupt."""
    x, _ = _check.curve(tokens_seen, values, "tokens_seen", "values")
    smooth = smooth_log(tokens_seen, values, width)
    rates = -np.diff(smooth) / np.diff(np.log10(x))                    # [S-1]
    k = int(np.argmax(rates))
    return k, float(rates[k])


def loss_bump(tokens_seen, loss, window: PhaseWindow | tuple | None, width: float = 0.1) -> float:
    """Tokens seen at the most concave point of the loss curve inside the phase-change window.

    The bump as the paper sees it: the training loss against log tokens normally bends
    upwards (convex: it falls ever more slowly); at the phase change it flattens and
    then falls faster, so it bends downwards (concave) for a while. We smooth the loss
    (smooth_log, `width` decades), take its second derivative with respect to
    log10(tokens) (np.gradient twice), and return the snapshot where it is most
    negative among the snapshots inside `window` (a PhaseWindow, or (start, end) in
    tokens). NaN if there is no window, no snapshot inside it, or the curve is convex
    everywhere inside it.

    Why inside the window: the first convex-to-concave crossing of the whole curve is
    usually noise early in training, far from any phase change. The paper shows the
    bump in plots only; this rule is minih's. Apply it to a control model too (with
    the same window): a rule that finds a bump there as well shows nothing.
    """
    x, _ = _check.curve(tokens_seen, loss, "tokens_seen", "loss")
    if window is None:
        return float("nan")
    if isinstance(window, PhaseWindow):
        start, end = window.start_tokens, window.end_tokens
    else:
        bounds = _check.floats(window, "window")
        if bounds.shape != (2,):
            raise ValueError(f"window must be a PhaseWindow or (start, end) in tokens, got {window!r}")
        start, end = bounds
    lx = np.log10(x)
    smoothed = smooth_log(tokens_seen, loss, width)
    d2 = np.gradient(np.gradient(smoothed, lx), lx)                    # [S]
    inside = np.flatnonzero((x >= start) & (x <= end))
    if len(inside) == 0 or d2[inside].min() >= 0:
        return float("nan")
    return float(x[inside[np.argmin(d2[inside])]])


def curve_departure(tokens_seen, loss, control_loss, width: float = 0.1,
                    level: float = 0.1) -> float:
    """Tokens seen where a model's loss curve leaves a control model's curve.

    For a 2+ layer model against the 1-layer model trained on the same data with the
    same schedule (so both have snapshots at the same tokens): the gap
    control_loss - loss, smoothed against log tokens (smooth_log), widens at the phase
    change, when the deeper model learns what the control cannot. Early in training the
    two curves already differ a little (a deeper model learns the easy statistics a bit
    faster), so the rule finds the widening itself:

    1. the steepest rise of the smoothed gap against log10 tokens;
    2. back from it, down the slope, to the valley just before that rise;
    3. the departure is where the gap first climbs `level` (10%) of the way from that
       valley to its largest value, interpolated in log tokens.

    minih's rule (the paper marks "where the curves split" by eye). NaN if the gap never
    rises.
    """
    x, y = _check.curve(tokens_seen, loss, "tokens_seen", "loss")
    _, c = _check.curve(tokens_seen, control_loss, "tokens_seen", "control_loss")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    gap = smooth_log(x, c - y, width)                                  # [S] control minus model
    lx = np.log10(x)
    rise = np.diff(gap) / np.diff(lx)                                  # [S-1] nats per decade
    if len(rise) == 0 or rise.max() <= 0 or gap.max() <= 0:
        return float("nan")
    valley = int(np.argmax(rise))                                      # the rise starts here...
    while valley > 0 and gap[valley - 1] < gap[valley]:                # ...or at the valley below
        valley -= 1
    frac = (gap - gap[valley]) / (gap.max() - gap[valley])
    _, at = _crossing(lx, frac, level, start=valley)
    return float(10 ** at)
