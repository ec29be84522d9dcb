"""In-context Markov chains (Edelman et al. 2024, "The Evolution of Statistical Induction Heads").

Each sequence has its own transition matrix P [k, k] (k = d_vocab states), every row
drawn from a Dirichlet(alpha, ..., alpha). The chain starts in a uniform random state
and steps t[i+1] ~ P[t[i]]. No single bigram table works across sequences: to
predict well the model must count, in context, which tokens followed the current one
- the job of an induction-like "statistical induction head".

The floor: because the prior is known, the Bayes-optimal prediction is the Dirichlet
posterior predictive of the in-context bigram counts,

    p(t[i+1] = j | t[..i]) = (n(t[i] -> j) + alpha) / (n(t[i] -> .) + k * alpha),

n counting the transitions among t[0..i]. `bayes_bigram_losses` gives its per-token
loss; a trained model can approach it, never beat it (in expectation).
The first state is uniform (our choice; with it the formula above is exactly the
Bayes-optimal predictor, since the first token then says nothing about P).

Shape legend: B = batch, T = positions, k = states (d_vocab)
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from .base import check_request, check_rng


@dataclass(frozen=True)
class MarkovChains:
    name: ClassVar[str] = "markov"
    d_vocab: int = 8       # k: states of the chain (= vocabulary)
    alpha: float = 1.0     # Dirichlet concentration of each row (1 = uniform over the simplex)

    def __post_init__(self):
        if isinstance(self.d_vocab, bool) or not isinstance(self.d_vocab, numbers.Integral) \
                or self.d_vocab < 2:
            raise ValueError(f"markov data: d_vocab must be an int >= 2, got {self.d_vocab!r}")
        object.__setattr__(self, "d_vocab", int(self.d_vocab))   # NumPy integers become ints
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float)) or not self.alpha > 0:
            raise ValueError(f"markov data: alpha must be a number > 0, got {self.alpha!r}")

    def sample_with_matrices(self, rng, batch: int, seq_len: int):
        """(tokens int64 [B,T], P float64 [B,k,k]) - each sequence with its own matrix."""
        rng = check_rng(rng)
        check_request(self, batch, seq_len)
        B, T, k = batch, seq_len, self.d_vocab
        P = rng.dirichlet(np.full(k, float(self.alpha)), size=(B, k))       # [B,k,k], rows sum to 1
        cum = np.cumsum(P, axis=2)                                           # [B,k,k]
        tokens = np.empty((B, T), dtype=np.int64)
        tokens[:, 0] = rng.integers(0, k, size=B)                            # uniform first state
        u = rng.random((B, T - 1))                                           # [B,T-1] one draw per step
        rows = np.arange(B)
        for i in range(T - 1):
            c = cum[rows, tokens[:, i]]                                      # [B,k] cdf of the next state
            # inverse-cdf sampling; the min() guards against cum[-1] = 1 - 1e-16 < u
            tokens[:, i + 1] = np.minimum((c < u[:, i, None]).sum(axis=1), k - 1)
        return tokens, P

    def sample(self, rng, batch: int, seq_len: int) -> np.ndarray:
        """A training batch, int64 [B,T]."""
        return self.sample_with_matrices(rng, batch, seq_len)[0]

    def eval_set(self, n: int, seq_len: int, seed: int) -> np.ndarray:
        """n fixed sequences [N,T] with their own seed (and their own fresh matrices)."""
        return self.sample(np.random.default_rng(seed), n, seq_len)

    def bayes_losses(self, tokens) -> np.ndarray:
        """Per-token loss [B,T-1] of the Bayes-optimal in-context bigram predictor."""
        return bayes_bigram_losses(tokens, self.d_vocab, self.alpha)

    def describe(self) -> dict:
        return {"name": self.name, "d_vocab": self.d_vocab, "alpha": self.alpha,
                "what": "in-context Markov chains, rows of each sequence's matrix ~ Dirichlet(alpha)"}


def bayes_bigram_losses(tokens, d_vocab: int, alpha: float) -> np.ndarray:
    """-log of the Dirichlet posterior predictive of t[i+1] given t[..i]: float64 [B,T-1].

    p = (n(t[i] -> t[i+1]) + alpha) / (n(t[i] -> .) + k alpha), counts over transitions
    t[j] -> t[j+1] with j + 1 <= i (those seen before predicting t[i+1]).
    """
    tokens = np.asarray(tokens)
    if tokens.ndim != 2 or not np.issubdtype(tokens.dtype, np.integer):
        raise ValueError(f"tokens must be integers [B,T], got {tokens.dtype} {tokens.shape}")
    if tokens.size and (tokens.min() < 0 or tokens.max() >= d_vocab):
        raise ValueError(f"tokens must lie in [0, d_vocab) = [0, {d_vocab})")
    B, T = tokens.shape
    k = d_vocab
    counts = np.zeros((B, k, k))                                             # [B,k,k] transitions so far
    rows = np.arange(B)
    out = np.empty((B, max(T - 1, 0)))
    for i in range(T - 1):
        cur, nxt = tokens[:, i], tokens[:, i + 1]
        n_row = counts[rows, cur]                                            # [B,k]
        p = (n_row[rows, nxt] + alpha) / (n_row.sum(axis=1) + k * alpha)     # [B]
        out[:, i] = -np.log(p)
        counts[rows, cur, nxt] += 1                                          # now seen
    return out
