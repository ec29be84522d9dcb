"""Random tokens with repeated segments: the cleanest data on which induction heads pay.

Two modes, both with random segment lengths, so the distance between a token and
its earlier copy varies from sequence to sequence. A fixed offset would let a head
that attends "k positions back" fake an induction score.

- `dense`: one random segment of L tokens, L ~ U{min_len..max_len}, repeated back to
  back to fill the sequence: t[i] = seg[i mod L]. Every token after the first copy
  is predictable in context; this is the data of the PyTorch experiments that came
  before minih (phase change near step 850 with d_vocab 64, L in 8..64).
- `sparse`: uniform random tokens, cut into `copies` equal chunks; in each chunk one
  segment of L ~ U{min_len..max_len} tokens (starting at s) is copied once to a later,
  non-overlapping place d >= s + L. Most tokens stay unpredictable.

`sample_with_mask` also returns where an induction head can help: mask[b, i] is True
when token i is inside a copy and so is token i-1 (after the first copied token the
previous token has been seen before, followed by the right answer).

Shape legend: B = batch, T = positions
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from .base import check_request, check_rng

MODES = ("dense", "sparse")


@dataclass(frozen=True)
class RepeatedTokens:
    name: ClassVar[str] = "repeated"
    d_vocab: int = 64      # tokens uniform in [0, d_vocab)
    mode: str = "dense"    # "dense" (segment repeated back to back) or "sparse" (one copy per chunk)
    min_len: int = 8       # shortest repeated segment
    max_len: int = 64      # longest repeated segment (clipped to what fits in seq_len)
    copies: int = 1        # sparse only: chunks per sequence, one copied segment in each

    def __post_init__(self):
        for f in ("d_vocab", "min_len", "max_len", "copies"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
                raise ValueError(f"repeated data: {f} must be an int >= 1, got {v!r}")
            object.__setattr__(self, f, int(v))           # NumPy integers become ints
        if self.mode not in MODES:
            raise ValueError(f"repeated data: mode must be one of {MODES}, got {self.mode!r}")
        if self.max_len < self.min_len:
            raise ValueError(f"repeated data: max_len ({self.max_len}) must be >= min_len ({self.min_len})")

    def _min_seq_len(self) -> int:
        # dense: a segment plus two tokens of its repeat; sparse: each chunk holds 2 segments
        return self.min_len + 2 if self.mode == "dense" else 2 * self.min_len * self.copies

    def sample_with_mask(self, rng, batch: int, seq_len: int):
        """(tokens int64 [B,T], mask bool [B,T]): mask marks tokens predictable by induction."""
        rng = check_rng(rng)
        check_request(self, batch, seq_len, self._min_seq_len())
        B, T = batch, seq_len
        if self.mode == "dense":
            hi = min(self.max_len, T - 2)
            L = rng.integers(self.min_len, hi + 1, size=B)                  # [B] segment lengths
            seg = rng.integers(0, self.d_vocab, size=(B, hi))                # [B, L_max]
            pos = np.arange(T)                                               # [T]
            tokens = np.take_along_axis(seg, pos[None, :] % L[:, None], axis=1)  # [B,T] seg[i mod L]
            mask = pos[None, :] >= L[:, None] + 1                           # [B,T]
            return tokens.astype(np.int64), mask
        tokens = rng.integers(0, self.d_vocab, size=(B, T))                  # [B,T]
        mask = np.zeros((B, T), dtype=bool)
        C = T // self.copies                                                 # chunk length
        hi = min(self.max_len, C // 2)
        for b in range(B):
            for c in range(self.copies):
                L = int(rng.integers(self.min_len, hi + 1))
                s = int(rng.integers(0, C - 2 * L + 1))                      # source start in chunk
                d = int(rng.integers(s + L, C - L + 1))                      # copy lands after the source
                s, d = s + c * C, d + c * C
                tokens[b, d:d + L] = tokens[b, s:s + L]
                mask[b, d + 1:d + L] = True
        return tokens.astype(np.int64), mask

    def sample(self, rng, batch: int, seq_len: int) -> np.ndarray:
        """A training batch, int64 [B,T]."""
        return self.sample_with_mask(rng, batch, seq_len)[0]

    def eval_set(self, n: int, seq_len: int, seed: int) -> np.ndarray:
        """n fixed sequences [N,T] drawn with their own seed (fresh random data; the
        chance of meeting a training sequence is negligible)."""
        return self.sample(np.random.default_rng(seed), n, seq_len)

    def describe(self) -> dict:
        return {"name": self.name, "d_vocab": self.d_vocab, "mode": self.mode, "min_len": self.min_len,
                "max_len": self.max_len, "copies": self.copies,
                "what": "random tokens with segments repeated at random lengths and offsets"}
