"""PCA of per-token losses over training (IH, "Argument 1": the models' trajectories
through "per-token loss space" turn sharply at the phase change).

Shape legend: S snapshots (S_m for model m), N evaluation examples, T tokens, K components
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import _check


@dataclass(frozen=True)
class LossPCA:
    trajectories: list          # per model, [S_m, K]: its snapshots in the first K components
    components: np.ndarray      # [K, N] principal directions (unit rows) in loss space
    explained_variance_ratio: np.ndarray  # [K] share of the total variance per component
    mean: np.ndarray            # [N] column means removed before the SVD
    positions: np.ndarray       # [N] the fixed loss position used for each example


def loss_pca(losses_per_model, n_components: int = 2, seed=0, positions=None) -> LossPCA:
    """PCA of per-token-loss vectors, one row per snapshot, several models stacked (IH Argument 1).

    losses_per_model: a list of arrays [S_m, N, T-1] (run.losses of each model; all on
    the same evaluation set) or a single such array. For each example n one position
    p_n is drawn once (from `seed`, or given as `positions` [N]), the same for every
    model and snapshot; the data matrix X has rows = snapshots of all models, columns
    = losses[s, n, p_n]. Columns are centred (no scaling), X = U S V^T by SVD; model
    m's trajectory is its rows of U S, first K columns.

    Sign: an SVD direction is defined up to sign; we flip each component so its
    loadings sum to >= 0, so a higher score means higher loss overall.
    """
    if isinstance(losses_per_model, np.ndarray):
        losses_per_model = [losses_per_model]
    if not isinstance(losses_per_model, (list, tuple)):
        raise ValueError(f"losses_per_model must be an array [S, N, T-1] or a list of them, "
                         f"got {type(losses_per_model).__name__}")
    arrays = [_check.per_token_losses(L) for L in losses_per_model]
    if not arrays or any(L.ndim != 3 for L in arrays):
        raise ValueError("losses_per_model must be a list of arrays [snapshots, n_examples, T-1]")
    N, Tm1 = arrays[0].shape[1:]
    if any(L.shape[1:] != (N, Tm1) for L in arrays):
        raise ValueError(f"every model's losses must share the evaluation set shape [N, T-1] = "
                         f"{[N, Tm1]}, got {[list(L.shape[1:]) for L in arrays]}")
    if positions is None:
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        positions = rng.integers(0, Tm1, size=N)                        # [N]
    positions = np.asarray(positions)
    if positions.shape != (N,) or positions.min() < 0 or positions.max() >= Tm1:
        raise ValueError(f"positions must be [N] = [{N}] integers in [0, {Tm1})")
    X = np.concatenate([L[:, np.arange(N), positions] for L in arrays]).astype(np.float64)  # [sum S, N]
    K = int(n_components)
    if not 1 <= K <= min(X.shape):
        raise ValueError(f"n_components must be in [1, {min(X.shape)}] (rows {X.shape[0]}, "
                         f"columns {X.shape[1]}), got {n_components}")
    mean = X.mean(axis=0)                                              # [N]
    U, S, Vt = np.linalg.svd(X - mean, full_matrices=False)
    sign = np.where(Vt[:K].sum(axis=1) < 0, -1.0, 1.0)                 # [K]
    scores = U[:, :K] * S[:K] * sign                                   # [sum S, K]
    var = S ** 2
    ratio = var[:K] / var.sum() if var.sum() > 0 else np.zeros(K)
    splits = np.cumsum([len(L) for L in arrays])[:-1]
    return LossPCA(trajectories=np.split(scores, splits), components=Vt[:K] * sign[:, None],
                   explained_variance_ratio=ratio, mean=mean, positions=positions)


def turning_point(trajectory, window: int = 2) -> int:
    """Index of the sharpest turn of a trajectory [S, K] (for marking the phase change).

    At each snapshot s, the angle between the mean step over the `window` snapshots
    before it and the mean step over the `window` after it; returns the s with the
    largest angle. A descriptive helper, minih's; the paper points at the turn by eye.
    """
    Y = _check.floats(trajectory, "trajectory")
    if Y.ndim != 2 or len(Y) < 2 * window + 1:
        raise ValueError(f"trajectory must be [S, K] with S >= {2 * window + 1}, got {Y.shape}")
    best, best_angle = window, -1.0
    for s in range(window, len(Y) - window):
        before, after = Y[s] - Y[s - window], Y[s + window] - Y[s]
        denom = np.linalg.norm(before) * np.linalg.norm(after)
        if denom == 0:
            continue
        angle = np.arccos(np.clip(before @ after / denom, -1.0, 1.0))
        if angle > best_angle:
            best, best_angle = s, angle
    return best


def knee_point(trajectory) -> int:
    """Index of the snapshot farthest from the straight line joining the trajectory's
    first and last points: the corner of a path that goes one way, then turns.

    For a trajectory [S, K], with a = Y[0], b = Y[-1], u = (b - a) / |b - a|:
        distance(s) = |(Y[s] - a) - ((Y[s] - a) . u) u|
    Unlike turning_point, it does not compare successive small steps, so the jitter of
    a model that has settled (many snapshots, tiny moves) cannot win. minih's rule; the
    paper points at the turn by eye. Returns 0 for a trajectory with identical ends.
    """
    Y = _check.floats(trajectory, "trajectory")
    if Y.ndim != 2 or len(Y) < 3:
        raise ValueError(f"trajectory must be [S, K] with S >= 3, got {Y.shape}")
    chord = Y[-1] - Y[0]
    length = np.linalg.norm(chord)
    if length == 0:
        return 0
    u = chord / length
    rel = Y - Y[0]                                                     # [S, K]
    dist = np.linalg.norm(rel - np.outer(rel @ u, u), axis=1)          # [S]
    return int(np.argmax(dist))
