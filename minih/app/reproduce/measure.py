"""Everything the report says about one training run, measured from its run directory.

Shape legend: S snapshots, L layers, H heads, T positions
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...interp import metrics
from ...interp.analysis import token_counts
from ...training.run import Run
from .verdicts import INDUCTION_THRESHOLD   # the one definition of an induction head



def fmt_tokens(x: float) -> str:
    """A token count as the report prints it: 0.16M, 53.2k (n/a: never)."""
    if x is None or not np.isfinite(x):
        return "n/a"
    return f"{x / 1e6:.2f}M" if x >= 1e5 else f"{x / 1e3:.1f}k"


def steepest_drop(tokens, icl, width: float = 0.1) -> tuple[float, float]:
    """Where the smoothed ICL score falls fastest against log tokens: (tokens, rate).

    rate = max over consecutive snapshots of -(icl_s[k+1] - icl_s[k]) / (log10 x[k+1] - log10 x[k])
    (nats per decade), at the geometric middle of that pair; icl_s = metrics.smooth_log.
    A phase change is abrupt: its rate stands out from a gradual improvement's.
    """
    x = np.asarray(tokens, dtype=np.float64)
    k, rate = metrics.steepest_fall(x, icl, width)                    # between snapshots k, k+1
    lx = np.log10(x)
    return float(10 ** ((lx[k] + lx[k + 1]) / 2)), float(max(rate, 0.0))


@dataclass
class RunMeasures:
    name: str
    tokens: np.ndarray          # [S] training tokens seen per snapshot (0 for the init)
    loss: np.ndarray            # [S] mean per-token loss on the evaluation set
    icl: np.ndarray             # [S] ICL score (metrics.icl_score; 1-based indices below)
    icl_indices: tuple          # (early, late) 1-based context indices of the ICL score
    by_pos: np.ndarray          # [S, T-1] loss by context position
    deriv: np.ndarray           # [S, T-1] its derivative w.r.t. log position
    prefix: np.ndarray          # [S, L, H] prefix-matching score of every head
    prev_token: np.ndarray      # [L, H] previous-token score at the last snapshot
    window: object              # metrics.PhaseWindow on snapshots 1.. (None: no change)
    bump: float                 # tokens at the loss curve's most concave point inside the
                                # window (metrics.loss_bump; NaN: none)
    formed_at: float            # tokens at the first snapshot whose best head reaches
                                # INDUCTION_THRESHOLD prefix matching (NaN: never)
    steepest_at: float          # tokens where the smoothed ICL score falls fastest
    steepest_rate: float        # that rate, in nats per decade of tokens (>= 0)

    def best_prefix(self, snapshot: int = -1) -> tuple[tuple[int, int], float]:
        """The head of layer >= 1 (any layer for 1-layer models) with the highest
        prefix-matching score at `snapshot`: ((layer, head), score)."""
        scores = self.prefix[snapshot]
        first = 1 if scores.shape[0] > 1 else 0
        sub = scores[first:]
        l, h = np.unravel_index(int(np.argmax(sub)), sub.shape)
        return (int(l) + first, int(h)), float(sub[l, h])


def measure_run(name: str, run: Run, backend: str = "numpy", smoothing: float = 0.1) -> RunMeasures:
    """Losses, ICL, window, bump and head scores of every snapshot of `run`."""
    tokens = np.asarray(run.tokens_seen, dtype=np.float64)
    loss = run.losses.mean(axis=(1, 2)).astype(np.float64)
    T = run.eval_tokens.shape[1]
    early, late = metrics.icl_indices(T)
    icl = metrics.icl_score(run.losses, early, late)
    by_pos = metrics.loss_by_position(run.losses)
    deriv = metrics.loss_log_position_derivative(by_pos)
    # the prefix-matching sequences ([BOS] + R x 4), the same at every snapshot; for text runs the
    # random tokens skip the most and least frequent ones (analysis.token_counts)
    ptoks, queries = metrics.prefix_matching_tokens(run.cfg.d_vocab, run.cfg.n_ctx,
                                                    token_counts=token_counts(run))
    prefix = np.stack([metrics.prefix_matching_scores(run.params(s), run.cfg, ptoks, queries, backend)
                       for s in range(len(run))])
    prev = metrics.previous_token_scores(run.params(len(run) - 1), run.cfg, run.eval_tokens,
                                         backend=backend)
    later = tokens > 0
    try:
        window = metrics.phase_change_window(tokens[later], icl[later], width=smoothing)
    except ValueError:                       # the ICL score never changed
        window = None
    bump = metrics.loss_bump(tokens[later], loss[later], window, width=smoothing)
    first = 1 if run.cfg.n_layers > 1 else 0                          # induction needs layer >= 1
    best = prefix[:, first:].reshape(len(run), -1).max(axis=1)        # [S]
    hit = np.flatnonzero((best >= INDUCTION_THRESHOLD) & later)
    formed_at = float(tokens[hit[0]]) if len(hit) else float("nan")
    steepest_at, rate = steepest_drop(tokens[later], icl[later], smoothing)
    return RunMeasures(name, tokens, loss, icl, (early, late), by_pos, deriv, prefix, prev,
                       window, bump, formed_at, steepest_at, rate)
