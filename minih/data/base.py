"""Checks shared by every data source."""
from __future__ import annotations

import numpy as np


def check_request(source, batch: int, seq_len: int, min_seq_len: int = 2) -> None:
    """ValueError unless batch >= 1 and seq_len >= min_seq_len (both ints)."""
    for name, value, low in (("batch", batch, 1), ("seq_len", seq_len, min_seq_len)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{source.name} data: {name} must be an int >= {low}, got {value!r}")


def check_rng(rng) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy.random.Generator (np.random.default_rng(seed)), "
                         f"got {type(rng).__name__}")
    return rng


def random_windows(data: np.ndarray, rng, batch: int, seq_len: int, what: str, source: str,
                   unit: str) -> np.ndarray:
    """`batch` windows of `seq_len` consecutive entries of `data` at uniform random starts,
    int64 [B, T]; a split shorter than one window is named in one line ("the training split
    of SOURCE has N UNIT, fewer than seq_len")."""
    if len(data) < seq_len:
        raise ValueError(f"{source} data: the {what} split has {len(data)} {unit}, fewer than "
                         f"seq_len={seq_len}; use more text or a larger val_fraction")
    starts = rng.integers(0, len(data) - seq_len + 1, size=batch)           # [B]
    return data[starts[:, None] + np.arange(seq_len)].astype(np.int64)      # [B,T]
