"""Argument 4: do the same heads copy literally, "translate" and match fuzzily?

For the tasks of minih.data.generality, each position i of an image holds g(s_k) and
has a target key target[i] = position of s_{k+1}: where an induction head generalised
to the task attends. Two measurements per task:

- `target_attention(pattern, target)`: for each head, the attention on the target key,
  averaged over the positions that have one. 1 = the head does the task's induction
  exactly; for literal copying this is the prefix-matching score of the paper.
- `image_loss_drop`: mean loss on the segments minus mean loss on the images, per
  task: how much the model gains in context (the images are predictable only from
  the segment earlier in the sequence).

Shape legend: B batch, H heads, L layers, T positions
"""
from __future__ import annotations

import numpy as np

from .config import ModelConfig
from .data.generality import KINDS, GeneralityTasks
from .metrics.heads import stacked_patterns
from .model import per_token_losses


def target_attention(pattern, target) -> np.ndarray:
    """Mean attention on the target key: pattern [B,H,T,T], target [B,T] -> [H].

        score[h] = mean over (b, i) with target[b, i] >= 0 of pattern[b, h, i, target[b, i]]
    """
    pattern, target = np.asarray(pattern), np.asarray(target)
    B, H, T, _ = pattern.shape
    if target.shape != (B, T):
        raise ValueError(f"target must be [B, T] = {[B, T]}, got {list(target.shape)}")
    b, i = np.nonzero(target >= 0)
    if len(b) == 0:
        raise ValueError("no position has a target key (target is -1 everywhere)")
    if np.any(target[b, i] > i):
        raise ValueError("a target key lies after its query: not a causal target")
    return pattern[b, :, i, target[b, i]].mean(axis=0)               # [H]


def image_loss_drop(losses, target) -> float:
    """Mean loss of the other predictions minus mean loss of the in-context predictable ones.

    losses [B, T-1] (losses[:, i] predicts token i+1 from position i), target [B, T].
    Position i with target[b, i] >= 0 holds g(s_k); the next token g(s_{k+1}) is
    predictable from the segment earlier in the sequence (an induction head at i
    attends to s_{k+1} and maps it through g). All other predictions are of fresh
    random segment tokens or of the first token of an image.
    """
    losses = np.asarray(losses)
    image = np.asarray(target)[:, :-1] >= 0                          # [B, T-1]: predicting i+1 from i
    return float(losses[~image].mean() - losses[image].mean())


def generality_scores(params, cfg: ModelConfig, source: GeneralityTasks, n_seqs: int = 16,
                      seq_len: int | None = None, seed: int = 0, backend: str = "numpy") -> dict:
    """For each task kind: per-head target attention [L, H], and the in-context loss drop.

    Returns {kind: {"attention": [L, H], "loss_drop": float, "tokens": [B,T], "target": [B,T]}}.
    Uses fresh sequences from `source` (seeded), one kind at a time.
    """
    T = seq_len or cfg.n_ctx
    out = {}
    for k, kind in enumerate(KINDS):
        tokens, target = source.sample_with_targets(np.random.default_rng(seed + k), n_seqs, T, kind=kind)
        patterns, _ = stacked_patterns(params, cfg, tokens, backend=backend)  # [L, B, H, T, T]
        attention = np.stack([target_attention(p, target) for p in patterns])  # [L, H]
        drop = image_loss_drop(per_token_losses(params, tokens, cfg, backend=backend), target)
        out[kind] = {"attention": attention, "loss_drop": drop, "tokens": tokens, "target": target}
    return out
