"""Input checks shared by the metrics: each raises ValueError saying what was wrong.

Shape legend: B batch, H heads, T positions (query i, key j), S snapshots, N eval examples.
"""
from __future__ import annotations

import numpy as np


def pattern_and_tokens(pattern, tokens=None, name: str = "pattern"):
    """Check an attention pattern [B,H,T,T] (and tokens [B,T]); return them as arrays.

    The arrays are returned as they are (no copy): callers only read them.
    """
    pattern = np.asarray(pattern)
    if pattern.ndim != 4 or pattern.shape[-1] != pattern.shape[-2]:
        hint = "; add a batch axis with pattern[None]" if pattern.ndim == 3 else ""
        raise ValueError(f"{name} must have shape [batch, heads, T, T] (query, key), "
                         f"got {pattern.shape}{hint}")
    if not np.issubdtype(pattern.dtype, np.floating):
        raise ValueError(f"{name} must be floating point, got dtype {pattern.dtype}")
    if tokens is None:
        return pattern
    tokens = np.asarray(tokens)
    if tokens.ndim == 1:
        tokens = tokens[None]
    if not np.issubdtype(tokens.dtype, np.integer):
        raise ValueError(f"tokens must be integers, got dtype {tokens.dtype}")
    B, _, T, _ = pattern.shape
    if tokens.shape != (B, T):
        raise ValueError(f"tokens must have shape [batch, T] = {[B, T]} to match {name} "
                         f"{list(pattern.shape)}, got {list(tokens.shape)}")
    return pattern, tokens


def per_token_losses(losses, min_positions: int = 1):
    """Check per-token losses [..., N, T-1] (N examples, T-1 predictions)."""
    losses = np.asarray(losses)
    if losses.ndim < 2 or not np.issubdtype(losses.dtype, np.floating):
        raise ValueError(f"losses must be floats of shape [..., n_examples, T-1], got "
                         f"{losses.dtype} {losses.shape}")
    if losses.shape[-1] < min_positions:
        raise ValueError(f"losses need at least {min_positions} positions, got {losses.shape[-1]}")
    return losses


def curve(x, y, x_name: str, y_name: str, positive_x: bool = True):
    """Check two 1-D arrays of the same length >= 3, x increasing (and > 0 if positive_x)."""
    x, y = floats(x, x_name), floats(y, y_name)
    if x.ndim != 1 or y.shape != x.shape:
        raise ValueError(f"{x_name} and {y_name} must be 1-D arrays of the same length, "
                         f"got shapes {x.shape} and {y.shape}")
    if len(x) < 3:
        raise ValueError(f"need at least 3 points of ({x_name}, {y_name}), got {len(x)}")
    if positive_x and np.any(x <= 0):
        raise ValueError(f"{x_name} must be > 0 (it is used on a log scale); drop the step-0 "
                         f"snapshot first, e.g. with mask = {x_name} > 0")
    if np.any(np.diff(x) <= 0):
        raise ValueError(f"{x_name} must be strictly increasing")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError(f"{x_name} and {y_name} must be finite")
    return x, y


def integer(value, name: str, minimum: int | None = None) -> int:
    """`value` as an int (NumPy integers accepted; bools and floats refused)."""
    from ...config import check_int
    return check_int(value, name, minimum)


def rng(seed, name: str = "seed") -> np.random.Generator:
    """A Generator from `seed` (an int >= 0, or a Generator passed through)."""
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(integer(seed, name, minimum=0))


def floats(value, name: str) -> np.ndarray:
    """`value` as a float64 array, or ValueError naming `name` (None, dicts, strings, ragged lists)."""
    try:
        if value is None:                  # np.asarray(None, float) would be a silent NaN
            raise TypeError
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an array of numbers, got {type(value).__name__}") from None


def token_batch(tokens, name: str = "tokens") -> np.ndarray:
    """Integer tokens [B, T] (a single sequence [T] gets a batch axis), or ValueError."""
    try:
        tokens = np.asarray(tokens)
    except ValueError:                     # ragged nested lists
        raise ValueError(f"{name} must be a rectangular [batch, T] array of integers") from None
    if tokens.ndim == 1:
        tokens = tokens[None]
    if tokens.ndim != 2 or not np.issubdtype(tokens.dtype, np.integer):
        raise ValueError(f"{name} must be integers of shape [batch, T], got {tokens.dtype} "
                         f"{tokens.shape}")
    return tokens


def layer(value, cfg, name: str = "layer") -> int:
    """A layer index of the model with config `cfg` (0 .. n_layers - 1), or ValueError."""
    if isinstance(value, str) or not 0 <= integer(value, name) < cfg.n_layers:
        raise ValueError(f"{name} must be a layer index 0 .. {cfg.n_layers - 1}, got {value!r}")
    return int(value)
