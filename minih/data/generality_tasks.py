"""Argument 4's tasks in miniature: literal copying, "translation" and fuzzy matching.

The induction-heads paper (Argument 4) shows that the heads that copy literally also
do more abstract in-context matching: translating a sentence seen in another
language, or continuing a pattern whose tokens are only similar. minih's synthetic
versions, one kind per sequence (the vocabulary's lower half A = [0, V/2) holds
"source" tokens, the upper half B = [V/2, V) their images or labels):

- `literal`:     blocks [s_1..s_L | s_1..s_L], s from the whole vocabulary: copying.
- `translation`: blocks [s_1..s_L | f(s_1)..f(s_L)], s from A, f a fixed random
                 bijection A -> B. After f(s_k) the right guess is f(s_{k+1}); the head
                 that finds it attends from f(s_k) back to s_{k+1}, the token after the
                 *translation* of the current token.
- `fuzzy`:       pairs [x_1 y_1 x_2 y_2 ...]: items x from A, each followed by the label
                 of its class, y = labels[class(x)], class(x) = x mod n_classes, with a
                 fresh random class -> label map (into B) for every sequence. The label
                 of an item can only be known from an earlier item *of the same class*,
                 a different token: matching by similarity, not identity (in-context
                 classification). Every earlier same-class item's label is a right answer.

Each image block appears once, so only the earlier segment helps: a literal-copy head
cannot solve translation by looking at an earlier translated copy.

`sample_with_targets` returns, besides the tokens:
- target [B, T, T] bool: target[b, i, j] = the key j an ideal induction head for this
  task attends to from query i, j <= i: the token after an earlier token that matches
  t[i] (equal / the preimage under f / an item of the same class). Several keys can be
  right; scores sum the attention over them, as prefix matching does.
- role [B, T] int, about the prediction made at i (of token i+1): 1 = the context makes
  it possible (an image token g(s_k) with k < L, whose next token is g(s_{k+1}); a
  fuzzy item whose class came earlier), 2 = a comparable prediction it does not (a
  fresh segment token; an item whose class is new), 0 = neither (labels, and the last
  image token of a block, whose next token starts a new block).

Shape legend: B = batch, T = positions
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar

import numpy as np

from .base import check_request, check_rng

KINDS = ("literal", "translation", "fuzzy")
MODES = KINDS + ("mixed",)
PREDICTABLE, UNPREDICTABLE = 1, 2


@dataclass(frozen=True)
class GeneralityTasks:
    name: ClassVar[str] = "generality"
    d_vocab: int = 64      # even: A = [0, V/2) sources/items, B = [V/2, V) images/labels
    mode: str = "mixed"    # "literal", "translation", "fuzzy", or "mixed" (a kind per sequence)
    min_len: int = 6       # shortest segment (literal, translation)
    max_len: int = 24      # longest segment
    n_classes: int = 4     # fuzzy: class(x) = x mod n_classes; each class has V/2/n_classes items
    seed: int = 0          # draws the bijection f (fixed for a data source)

    def __post_init__(self):
        for f in ("d_vocab", "min_len", "max_len", "n_classes"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
                raise ValueError(f"generality data: {f} must be an int >= 1, got {v!r}")
            object.__setattr__(self, f, int(v))           # NumPy integers become ints
        if self.d_vocab % 2 or self.d_vocab < 4:
            raise ValueError(f"generality data: d_vocab must be even and >= 4, got {self.d_vocab}")
        if self.mode not in MODES:
            raise ValueError(f"generality data: mode must be one of {MODES}, got {self.mode!r}")
        if self.max_len < self.min_len:
            raise ValueError(f"generality data: max_len ({self.max_len}) < min_len ({self.min_len})")
        if not 2 <= self.n_classes <= self.d_vocab // 4:
            raise ValueError(f"generality data: n_classes must be in [2, d_vocab/4] (each class "
                             f"needs two items), got {self.n_classes}")

    @property
    def translation(self) -> np.ndarray:
        """f as a table [V/2]: f(a) = translation[a], a in A, values in B (a copy)."""
        return self._translation.copy()

    @cached_property
    def _translation(self) -> np.ndarray:
        # drawn once per source from its own seed (never from the data's rng), and kept:
        # drawing it again for every block was a third of sampling a training batch
        half = self.d_vocab // 2
        return half + np.random.default_rng(self.seed).permutation(half)

    # --- one sequence of each kind: (tokens [T], role [T]) --------------------------------

    def _blocks(self, rng, T, kind):
        tokens, role = np.zeros(T, dtype=np.int64), np.zeros(T, dtype=np.int64)
        pos = 0
        while pos < T:
            L = int(rng.integers(self.min_len, self.max_len + 1))
            hi = self.d_vocab // 2 if kind == "translation" else self.d_vocab
            seg = rng.integers(0, hi, size=L)
            image = seg if kind == "literal" else self._translation[seg]
            n = min(2 * L, T - pos)
            tokens[pos:pos + n] = np.concatenate([seg, image])[:n]
            role[pos:pos + min(L, n)] = UNPREDICTABLE               # fresh segment tokens
            if n == 2 * L:
                role[pos + 2 * L - 1] = -1    # last image token: its next token starts a new block
            pos += n
        return tokens, role

    def _pairs(self, rng, T):
        half = self.d_vocab // 2
        labels = half + rng.permutation(half)[: self.n_classes]      # this sequence's labels
        n = (T + 1) // 2
        items = rng.integers(0, half, size=n)
        tokens = np.stack([items, labels[items % self.n_classes]], axis=1).reshape(-1)[:T]
        return tokens, np.zeros(T, dtype=np.int64)                   # roles set by _targets

    def _targets(self, tokens, role, kind):
        """target [T, T] and the roles of the predictions that can be made in context."""
        T = len(tokens)
        t = tokens
        half = self.d_vocab // 2
        if kind == "literal":
            match = t[:, None] == t[None, :]                                   # [i, j-1]
        elif kind == "translation":
            pre = np.full(self.d_vocab, -1)
            pre[self._translation] = np.arange(half)                           # f^-1 on B
            match = (pre[t][:, None] == t[None, :]) & (t[:, None] >= half)
        else:
            item = t < half
            same = (t[:, None] % self.n_classes) == (t[None, :] % self.n_classes)
            match = same & item[:, None] & item[None, :]
        target = np.zeros((T, T), dtype=bool)
        target[:, 1:] = match[:, :-1]                                          # key j after match at j-1
        target &= np.tri(T, dtype=bool)                                        # j <= i
        has = target.any(axis=1)
        if kind == "fuzzy":
            items = (t < half) & (np.arange(T) < T - 1)
            role = np.where(items, np.where(has, PREDICTABLE, UNPREDICTABLE), 0)
        else:
            role = np.where(has & (role == 0), PREDICTABLE, role)            # image tokens
            role[role == -1] = 0                                             # not scored
        return target, role

    def sample_with_targets(self, rng, batch: int, seq_len: int, kind: str | None = None):
        """(tokens int64 [B,T], target bool [B,T,T], role int64 [B,T]); see the module docstring.

        kind overrides the source's mode for this call (e.g. to probe one task).
        """
        sequences = self._sequences(rng, batch, seq_len, kind or self.mode)
        target = np.zeros((batch, seq_len, seq_len), dtype=bool)
        role = np.zeros((batch, seq_len), dtype=np.int64)
        for b, (t, r, k) in enumerate(sequences):
            target[b], role[b] = self._targets(t, r, k)
        return np.stack([t for t, _, _ in sequences]), target, role

    def _sequences(self, rng, batch: int, seq_len: int, kind: str) -> list:
        """[(tokens [T], role [T], kind)] of each sequence, in order, from rng's draws
        (rng, the request and kind checked first)."""
        rng = check_rng(rng)
        check_request(self, batch, seq_len, 2 * self.min_len)
        if kind not in MODES:
            raise ValueError(f"generality data: kind must be one of {MODES}, got {kind!r}")
        out = []
        for _ in range(batch):
            k = kind if kind != "mixed" else KINDS[rng.integers(len(KINDS))]
            t, r = self._pairs(rng, seq_len) if k == "fuzzy" else self._blocks(rng, seq_len, k)
            out.append((t, r, k))
        return out

    def sample(self, rng, batch: int, seq_len: int) -> np.ndarray:
        """The tokens of sample_with_targets (the same draws, so the same tokens), without
        the targets and roles, which training does not read."""
        return np.stack([t for t, _, _ in self._sequences(rng, batch, seq_len, self.mode)])

    def eval_set(self, n: int, seq_len: int, seed: int) -> np.ndarray:
        return self.sample(np.random.default_rng(seed), n, seq_len)

    def describe(self) -> dict:
        return {"name": self.name, "d_vocab": self.d_vocab, "mode": self.mode,
                "min_len": self.min_len, "max_len": self.max_len, "n_classes": self.n_classes,
                "seed": self.seed}
