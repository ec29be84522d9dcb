"""Losses over training (IH, "In-context learning score" and the loss heatmaps).

Per-token losses are [..., N, T-1]: N evaluation examples of T tokens; entry i is
-log p(t[i+1] | t[..i]), the prediction made at 0-based position i (the
TransformerLens convention of minih.per_token_losses). A run stores them as
run.losses [S, N, T-1], one slice per snapshot.

Shape legend: S snapshots, N evaluation examples, T tokens per example
"""
from __future__ import annotations

import numpy as np

from ...config import ModelConfig
from ...model import per_token_losses as _model_per_token_losses
from . import _check


def per_token_losses(params, tokens, cfg: ModelConfig, backend: str = "numpy") -> np.ndarray:
    """-log p(tokens[n, i+1] | tokens[n, :i+1]) for every example and position: [N, T-1].

    The per-token loss of IH, on a fixed evaluation set at every snapshot; this is
    minih.per_token_losses (minih/model.py), named here so that every loss metric is in
    one place.
    """
    return _model_per_token_losses(params, tokens, cfg, backend=backend)


def loss_by_position(losses) -> np.ndarray:
    """Mean loss over the examples at each context position: [..., N, T-1] -> [..., T-1].

    For run.losses [S, N, T-1] this is the [snapshots, positions] heatmap of IH.
    """
    return _check.per_token_losses(losses).mean(axis=-2)


def icl_indices(n_tokens: int) -> tuple[int, int]:
    """The two 1-based context indices of the ICL score for examples of n_tokens tokens.

    IH uses 50 and 500 with 512-token contexts. For other lengths we scale both,
    round(50/512 * n) and round(500/512 * n) (round half up), minih's choice,
    kept within [1, n - 1], the indices a loss exists for (n tokens make n - 1
    predictions): for n <= 21, round(500/512 * n) is n, and the late index is n - 1.
    """
    if isinstance(n_tokens, bool) or not isinstance(n_tokens, (int, np.integer)):
        raise ValueError(f"n_tokens must be an int, got {n_tokens!r}")
    if n_tokens < 12:
        raise ValueError(f"the ICL score needs examples of at least 12 tokens (so that its two "
                         f"indices differ and fit), got {n_tokens}")
    early = int(np.floor(50 / 512 * n_tokens + 0.5))
    late = int(np.floor(500 / 512 * n_tokens + 0.5))
    return max(early, 1), min(late, n_tokens - 1)


def icl_score(losses, early: int | None = None, late: int | None = None) -> np.ndarray:
    """In-context learning score (IH): loss at context index `late` minus at `early`.

        icl = mean_n losses[..., n, late - 1] - mean_n losses[..., n, early - 1]

    Indices are 1-based context indices, as in the paper (500 and 50 for 512-token
    examples; by default icl_indices(T) for examples of T tokens, T-1 = losses.shape[-1]).
    "Loss at context index k" is the loss of the prediction made at the k-th token
    (0-based position k-1, predicting token k): the paper does not pin down this
    off-by-one; we chose this reading (0-based positions 499 and 49). Negative = later
    tokens are predicted better. losses [..., N, T-1] -> [...].
    """
    losses = _check.per_token_losses(losses)
    T = losses.shape[-1] + 1
    d_early, d_late = icl_indices(T) if (early is None or late is None) else (None, None)
    early = d_early if early is None else early
    late = d_late if late is None else late
    if not 1 <= early < late <= T - 1:
        raise ValueError(f"ICL indices must satisfy 1 <= early < late <= T-1 = {T - 1} "
                         f"(1-based context indices), got early={early}, late={late}")
    by_pos = loss_by_position(losses)                                  # [..., T-1]
    return by_pos[..., late - 1] - by_pos[..., early - 1]


def loss_log_position_derivative(loss_by_pos) -> np.ndarray:
    """d loss / d log(context index), per snapshot: [S, T-1] -> [S, T-1].

    IH plots how fast the loss falls along the context on a log-position axis.
    With i = 1..T-1 the 1-based index of each prediction's token:
        np.gradient(L, np.log(i), axis=1)
    (central differences inside, one-sided at the ends). Negative = later tokens
    are easier.
    """
    L = np.asarray(loss_by_pos, dtype=np.float64)
    if L.ndim != 2 or L.shape[1] < 2:
        raise ValueError(f"loss_by_pos must have shape [snapshots, positions >= 2], got {L.shape}")
    i = np.arange(1, L.shape[1] + 1)                                   # 1-based context index
    return np.gradient(L, np.log(i), axis=1)
