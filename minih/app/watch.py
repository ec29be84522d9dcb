"""`python -m minih watch PRESET`: train a preset and watch the induction head form, live.

A progress bar of optimizer steps shows, besides the loss, the two numbers the paper
watches, updated at every snapshot of the run:

    prefix matching   the best head's score on the paper's test ([BOS] + R x 4, R random
                      tokens; for text, without the 10% most and least frequent ones), of
                      layers >= 1 in a deeper model (an induction head needs an earlier
                      head to compose with); chance is about 1 / (the context so far)
    ICL score         mean loss at a late context index minus at an early one (the paper's
                      500 and 50 scaled to the context): it falls when the model starts
                      to use what came earlier in the context

and a line is printed when the best head passes 0.3 (minih's induction-head threshold)
and 0.5. Everything else is an ordinary `minih train` run: a run directory with
snapshots, Ctrl-C writes a checkpoint, `minih train --resume` continues it.
"""
from __future__ import annotations

import numpy as np

from ..interp import metrics
from ..interp.analysis import text_token_counts
from ..training.config import TrainConfig
from .reproduce.verdicts import INDUCTION_THRESHOLD

MILESTONES = (INDUCTION_THRESHOLD, 0.5)          # prefix-matching scores announced once each


def check_watchable(tc: TrainConfig) -> None:
    """ValueError (one line) unless the context is long enough for both scores, checked
    before training starts rather than at the first snapshot."""
    metrics.icl_indices(tc.T)                                  # the ICL score's two indices
    metrics.prefix_matching_tokens(tc.model.d_vocab, tc.model.n_ctx)   # [BOS] + R x 4 fits


class Watcher:
    """Scores each snapshot of a run as train() stores it (train's on_snapshot), keeps the
    history, and tells `say` when a milestone is passed.

    history: one row per snapshot: (step, tokens seen, seconds, best prefix matching,
    its head (layer, head), ICL score).
    """

    def __init__(self, tc: TrainConfig, say=print, backend: str = "numpy"):
        check_watchable(tc)
        self.tc, self.say, self.backend = tc, say, backend
        self.history: list[tuple] = []
        self.passed: dict[float, tuple] = {}       # milestone -> its history row
        self._prefix = None                        # (tokens, queries), made at the first snapshot
        self.first_layer = 1 if tc.model.n_layers > 1 else 0

    def __call__(self, snap) -> None:
        cfg = self.tc.model
        if self._prefix is None:
            # text: R skips the most and least frequent tokens (as `minih analyze` and
            # `reproduce` do), counted on the held-out evaluation text
            counts = text_token_counts(self.tc.data.describe(), snap.eval_tokens, cfg.d_vocab)
            self._prefix = metrics.prefix_matching_tokens(cfg.d_vocab, cfg.n_ctx, token_counts=counts)
        tokens, queries = self._prefix
        scores = metrics.prefix_matching_scores(snap.params, cfg, tokens, queries, self.backend)
        later = scores[self.first_layer:]                                   # [L', H]
        l, h = np.unravel_index(int(np.argmax(later)), later.shape)
        early, late = metrics.icl_indices(snap.eval_tokens.shape[1])
        icl = float(metrics.icl_score(snap.losses, early, late))
        row = (snap.step, snap.tokens_seen, snap.seconds, float(later[l, h]),
               (int(l) + self.first_layer, int(h)), icl)
        self.history.append(row)
        for level in MILESTONES:
            if level not in self.passed and row[3] >= level and snap.step > 0:
                self.passed[level] = row
                self.say(f"step {snap.step:,} ({snap.tokens_seen / 1e6:.2f}M tokens, "
                         f"{snap.seconds:.0f} s of training): head {row[4][0]}.{row[4][1]} passes "
                         f"prefix matching {level} ({row[3]:.2f}); ICL score {icl:+.2f} nats")

    @property
    def latest(self) -> dict:
        """The last snapshot's numbers for the progress bar."""
        if not self.history:
            return {}
        _, _, _, score, (l, h), icl = self.history[-1]
        return {"prefix matching": f"{score:.2f} (head {l}.{h})", "ICL": f"{icl:+.2f}"}

    def summary(self) -> str:
        """What happened, in a few lines, from the history."""
        if not self.history:
            return "no snapshot was scored"
        first, last = self.history[0], self.history[-1]
        lines = [f"prefix matching (best head{' of layers >= 1' if self.first_layer else ''}): "
                 f"{first[3]:.2f} at step {first[0]:,} -> {last[3]:.2f} at step {last[0]:,}; "
                 f"ICL score {first[5]:+.2f} -> {last[5]:+.2f} nats"]
        for level in MILESTONES:
            if level in self.passed:
                step, seen, seconds, score, _, icl = self.passed[level]
                lines.append(f"passed {level} at step {step:,} ({seen / 1e6:.2f}M tokens, "
                             f"{seconds:.0f} s of training)")
            else:
                lines.append(f"no head reached {level}"
                             + (" (a 1-layer model has no earlier head to compose with: this is "
                                "the control)" if self.tc.model.n_layers == 1 else ""))
        return "\n".join(lines)
