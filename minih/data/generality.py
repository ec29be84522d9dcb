"""Argument 4's tasks in miniature: literal copying, "translation" and fuzzy matching.

The induction-heads paper (Argument 4) shows that the same heads that copy literally
also do more abstract in-context matching: translating a sentence they saw in
another language, or continuing a pattern whose tokens are only similar. minih's
synthetic versions keep one structure, blocks of a segment and its image:

    [ s_1 ... s_L | g(s_1) ... g(s_L) ] [ next block ] ...      L ~ U{min_len..max_len}

with g chosen per block:

- `literal`:     g(s) = s                      (copying; s from the whole vocabulary)
- `translation`: g(s) = f(s), f a fixed random bijection from the lower half of the
                 vocabulary onto the upper half (s from the lower half). After f(s_i)
                 the right guess is f(s_{i+1}), and the head that finds it attends from
                 f(s_i) back to s_{i+1}: the token after the *translation* of the
                 current token.
- `fuzzy`:       g(s) = a random token of the same class as s, class(t) = t mod
                 n_classes. Only the class of the next token is predictable.

Each image appears once, so only the earlier segment helps: a literal-copy head cannot
solve a translation block by looking at an earlier translated copy.

`sample_with_targets` returns, for every position i in an image, the key position the
ideal induction head attends to: target[b, i] = (start of the segment) + k + 1 when
i holds g(s_k), k < L-1; -1 elsewhere. `generalized_prefix_score` (minih.metrics)
measures the attention on it.

Shape legend: B = batch, T = positions
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from .base import check_request, check_rng

KINDS = ("literal", "translation", "fuzzy")
MODES = KINDS + ("mixed",)


@dataclass(frozen=True)
class GeneralityTasks:
    name: ClassVar[str] = "generality"
    d_vocab: int = 64      # even: the translation maps [0, V/2) onto [V/2, V)
    mode: str = "mixed"    # "literal", "translation", "fuzzy", or "mixed" (a kind per block)
    min_len: int = 6       # shortest segment
    max_len: int = 24      # longest segment
    n_classes: int = 8     # fuzzy: class(t) = t mod n_classes
    seed: int = 0          # draws the bijection f (fixed for a data source)

    def __post_init__(self):
        for f in ("d_vocab", "min_len", "max_len", "n_classes"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"generality data: {f} must be an int >= 1, got {v!r}")
        if self.d_vocab % 2 or self.d_vocab < 4:
            raise ValueError(f"generality data: d_vocab must be even and >= 4, got {self.d_vocab}")
        if self.mode not in MODES:
            raise ValueError(f"generality data: mode must be one of {MODES}, got {self.mode!r}")
        if self.max_len < self.min_len:
            raise ValueError(f"generality data: max_len ({self.max_len}) < min_len ({self.min_len})")
        if not 1 <= self.n_classes <= self.d_vocab // 2:
            raise ValueError(f"generality data: n_classes must be in [1, d_vocab/2], got {self.n_classes}")

    @property
    def translation(self) -> np.ndarray:
        """f as a table [V/2]: f(a) = translation[a], a in [0, V/2), values in [V/2, V)."""
        half = self.d_vocab // 2
        return half + np.random.default_rng(self.seed).permutation(half)

    def _image(self, rng, seg, kind):
        if kind == "literal":
            return seg.copy()
        if kind == "translation":
            return self.translation[seg]
        # fuzzy: a random member of the same class (t mod n_classes)
        members = (self.d_vocab - 1 - seg % self.n_classes) // self.n_classes + 1
        return seg % self.n_classes + self.n_classes * rng.integers(0, members)

    def sample_with_targets(self, rng, batch: int, seq_len: int, kind: str | None = None):
        """(tokens int64 [B,T], target int64 [B,T]): target as in the module docstring.

        kind overrides the source's mode for this call (e.g. to probe one task).
        """
        rng = check_rng(rng)
        check_request(self, batch, seq_len, 2 * self.min_len)
        kind = kind or self.mode
        if kind not in MODES:
            raise ValueError(f"generality data: kind must be one of {MODES}, got {kind!r}")
        tokens = np.zeros((batch, seq_len), dtype=np.int64)
        target = np.full((batch, seq_len), -1, dtype=np.int64)
        for b in range(batch):
            pos = 0
            while pos < seq_len:
                k = kind if kind != "mixed" else KINDS[rng.integers(len(KINDS))]
                L = int(rng.integers(self.min_len, self.max_len + 1))
                hi = self.d_vocab // 2 if k == "translation" else self.d_vocab
                seg = rng.integers(0, hi, size=L)
                block = np.concatenate([seg, self._image(rng, seg, k)])          # [2L]
                n = min(2 * L, seq_len - pos)
                tokens[b, pos:pos + n] = block[:n]
                for i in range(L, n):                   # image position i holds g(s_{i-L})
                    if i - L + 1 < L:
                        target[b, pos + i] = pos + (i - L) + 1
                pos += n
        return tokens, target

    def sample(self, rng, batch: int, seq_len: int) -> np.ndarray:
        return self.sample_with_targets(rng, batch, seq_len)[0]

    def eval_set(self, n: int, seq_len: int, seed: int) -> np.ndarray:
        return self.sample(np.random.default_rng(seed), n, seq_len)

    def describe(self) -> dict:
        return {"name": self.name, "d_vocab": self.d_vocab, "mode": self.mode,
                "min_len": self.min_len, "max_len": self.max_len, "n_classes": self.n_classes,
                "seed": self.seed}
