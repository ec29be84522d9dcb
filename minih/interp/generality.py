"""Argument 4: do the same heads copy literally, "translate" and match fuzzily?

For the tasks of minih.data.generality_tasks, target[b, i, j] marks the keys an induction
head generalised to the task attends to from query i (the token after an earlier
token that matches t[i] under the task's relation), and role[b, i] says whether the
prediction at i is possible from context (1) or a comparable one that is not (2).
Two measurements per task:

- `target_attention(pattern, target)`: for each head, the attention summed over the
  target keys, averaged over the queries that have any: 1 = the head does the task's
  induction exactly. For literal copying this is the paper's prefix-matching score.
- `in_context_gain(losses, role)`: mean loss of the predictions the context cannot
  help (role 2) minus that of the ones it can (role 1), in nats.

Shape legend: B batch, H heads, L layers, T positions
"""
from __future__ import annotations

import numpy as np

from ..config import ModelConfig
from ..data.generality_tasks import KINDS, PREDICTABLE, UNPREDICTABLE, GeneralityTasks
from .metrics.heads import stacked_patterns
from .metrics.patterns import summed_attention
from ..model import per_token_losses


def target_attention(pattern, target) -> np.ndarray:
    """Attention on the target keys: pattern [B,H,T,T], target bool [B,T,T] -> [H].

        score[h] = mean over (b, i) with any target of  sum_j pattern[b, h, i, j] * target[b, i, j]

    (metrics.patterns.summed_attention, the sum behind prefix matching).
    """
    pattern, target = np.asarray(pattern), np.asarray(target, dtype=bool)
    B, H, T, _ = pattern.shape
    if target.shape != (B, T, T):
        raise ValueError(f"target must be [B, T, T] = {[B, T, T]}, got {list(target.shape)}")
    if np.any(np.triu(target, k=1)):
        raise ValueError("a target key lies after its query: not a causal target")
    if not target.any():
        raise ValueError("no query has a target key (target is all False)")
    return summed_attention(pattern, target)


def in_context_gain(losses, role) -> float:
    """Mean loss where context cannot help minus where it can (nats).

    losses [B, T-1] (losses[:, i] predicts token i+1 from position i), role [B, T]
    (role[:, i] describes that prediction; the last position predicts nothing).
    """
    losses, role = np.asarray(losses), np.asarray(role)[:, :-1]
    if losses.shape != role.shape:
        raise ValueError(f"losses must be [B, T-1] = {list(role.shape)} for role [B, T], "
                         f"got {list(losses.shape)}")
    if not (np.any(role == PREDICTABLE) and np.any(role == UNPREDICTABLE)):
        raise ValueError("in_context_gain needs predictions of both roles (1 and 2)")
    return float(losses[role == UNPREDICTABLE].mean() - losses[role == PREDICTABLE].mean())


def baseline_patterns(B: int, T: int) -> dict:
    """Two heads that know nothing of the task, as patterns [B, 1, T, T]: "uniform" attends
    equally to every key j <= i (chance), "previous_token" attends only to key i - 1 (key 0
    from query 0). A head does a task only where it beats both: on fuzzy matching a pure
    previous-token head already scores about 1/3, since items and labels alternate."""
    i = np.arange(T)
    uniform = np.tril(np.ones((T, T))) / (i + 1)[:, None]              # [T,T] rows sum to 1
    prev = np.zeros((T, T))
    prev[i, np.maximum(i - 1, 0)] = 1.0
    return {name: np.broadcast_to(p, (B, 1, T, T)) for name, p in
            (("uniform", uniform), ("previous_token", prev))}


def baseline_scores(target) -> dict:
    """target_attention of the two baseline heads on these targets: {name: float}."""
    target = np.asarray(target, dtype=bool)
    B, T, _ = target.shape
    return {name: float(target_attention(p, target)[0]) for name, p in baseline_patterns(B, T).items()}


def generality_scores(params, cfg: ModelConfig, source: GeneralityTasks, n_seqs: int = 16,
                      seq_len: int | None = None, seed: int = 0, backend: str = "numpy") -> dict:
    """For each task kind: per-head target attention [L, H] and the in-context gain.

    Returns {kind: {"attention": [L, H], "gain": float, "baselines": {name: float},
    "tokens": [B,T], "target": [B,T,T]}}, on fresh sequences from `source` (seeded), one
    kind at a time; "baselines" are the chance and previous-token heads' scores.
    """
    T = seq_len or cfg.n_ctx
    out = {}
    for k, kind in enumerate(KINDS):
        tokens, target, role = source.sample_with_targets(np.random.default_rng(seed + k), n_seqs, T,
                                                          kind=kind)
        patterns, _ = stacked_patterns(params, cfg, tokens, backend=backend)   # [L, B, H, T, T]
        attention = np.stack([target_attention(p, target) for p in patterns])  # [L, H]
        gain = in_context_gain(per_token_losses(params, tokens, cfg, backend=backend), role)
        out[kind] = {"attention": attention, "gain": gain, "baselines": baseline_scores(target),
                     "tokens": tokens, "target": target}
    return out
