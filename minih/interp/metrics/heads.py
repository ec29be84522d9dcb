"""Head scores of a model, every head at once: run the model, hand the patterns to
metrics.patterns. Each function returns an array [n_layers, n_heads].

    tokens, queries = prefix_matching_tokens(cfg.d_vocab, n_ctx=cfg.n_ctx, seed=0)
    scores = prefix_matching_scores(params, cfg)            # [L, H]
    prev = previous_token_scores(params, cfg, eval_tokens)  # [L, H]

The model runs on the backend named by `backend=` ("numpy" or "numba").

Shape legend: L layers, H heads, B batch, T positions, V d_vocab
"""
from __future__ import annotations

import numpy as np

from ...config import ModelConfig
from ...model import run_with_cache
from . import patterns as P
from . import _check

DEFAULT_BOS = 0


def candidate_tokens(d_vocab: int, token_counts=None, exclude_fraction: float = 0.1,
                     bos: int | None = DEFAULT_BOS) -> np.ndarray:
    """The tokens random test sequences are drawn from (sorted int64 array).

    IH draws the random tokens of its prefix-matching and copying tests "excluding
    the most and least common tokens" of the training data; the paper does not say
    how many. We drop tokens never seen in `token_counts` [V], then the
    `exclude_fraction` most and the `exclude_fraction` least frequent of the rest
    (ties broken by token id). Without counts (synthetic vocabularies, where every
    token is equally common) every token is a candidate. The BOS token is never one.
    """
    tokens = np.arange(_check.integer(d_vocab, "d_vocab", minimum=1))
    if token_counts is not None:
        counts = np.asarray(token_counts)
        if counts.shape != (d_vocab,):
            raise ValueError(f"token_counts must have shape [d_vocab] = [{d_vocab}], got {counts.shape}")
        seen = tokens[counts > 0]
        order = seen[np.argsort(counts[seen], kind="stable")]        # least -> most frequent
        cut = int(round(exclude_fraction * len(order)))
        tokens = np.sort(order[cut: len(order) - cut])
    if bos is not None:
        tokens = tokens[tokens != bos]
    if len(tokens) < 2:
        raise ValueError(f"only {len(tokens)} candidate token(s) left for random test sequences "
                         f"(d_vocab={d_vocab}, exclude_fraction={exclude_fraction}, bos={bos})")
    return tokens


def random_segments(candidates, n_seqs: int, seg_len: int, seed) -> np.ndarray:
    """[n_seqs, seg_len] random tokens from `candidates`, distinct within a segment when
    there are enough candidates (so every query of a later repeat has one right answer),
    else drawn with replacement."""
    rng = _check.rng(seed)
    n_seqs = _check.integer(n_seqs, "n_seqs", minimum=1)
    seg_len = _check.integer(seg_len, "seg_len", minimum=1)
    candidates = np.asarray(candidates)
    if seg_len <= len(candidates):
        return np.stack([rng.choice(candidates, size=seg_len, replace=False) for _ in range(n_seqs)])
    return rng.choice(candidates, size=(n_seqs, seg_len), replace=True)


def prefix_matching_tokens(d_vocab: int, n_ctx: int | None = None, n_seqs: int = 10,
                           seg_len: int = 25, n_repeats: int = 4, bos: int | None = DEFAULT_BOS,
                           token_counts=None, seed=0) -> tuple[np.ndarray, np.ndarray]:
    """The paper's prefix-matching test sequences and the queries it scores.

    Returns (tokens [n_seqs, 1 + seg_len * n_repeats] int64, queries [same] bool):
    each sequence is [BOS] + R + R + R + R with R = seg_len random tokens
    (candidate_tokens, distinct within R when possible), and `queries` marks repeats
    2..n_repeats (IH, "prefix matching": 10 sequences, 25 tokens, 4 repeats).

    BOS: minih's models are trained on windows of text with no beginning-of-sequence
    token, and the paper does not say which token it used. We use token 0 (the NUL
    byte of a byte vocabulary, which text does not contain) and keep it out of R, so
    position 0 holds a token that never repeats; bos=None leaves it out.
    If the model's n_ctx is too short, R is shortened to fit (minih's choice).
    """
    n_prefix = 0 if bos is None else 1
    seg_len = _check.integer(seg_len, "seg_len")
    n_repeats = _check.integer(n_repeats, "n_repeats")
    if n_ctx is not None and n_prefix + seg_len * n_repeats > n_ctx:
        seg_len = (n_ctx - n_prefix) // n_repeats
    if seg_len < 2 or n_repeats < 2:
        raise ValueError(f"prefix matching needs at least 2 repeats of at least 2 tokens; "
                         f"got seg_len={seg_len}, n_repeats={n_repeats} (n_ctx={n_ctx})")
    segments = random_segments(candidate_tokens(d_vocab, token_counts, bos=bos),
                               n_seqs, seg_len, seed)                 # [n,R]
    body = np.tile(segments, (1, n_repeats))                          # [n,R*reps]
    if bos is not None:
        body = np.concatenate([np.full((n_seqs, 1), bos), body], axis=1)
    queries = np.zeros(body.shape, dtype=bool)
    queries[:, n_prefix + seg_len:] = True                            # repeats 2..n_repeats
    return body.astype(np.int64), queries


def stacked_patterns(params, cfg: ModelConfig, tokens, backend: str = "numpy"):
    """Run the model once; return its patterns [L, B, H, T, T] and the cache."""
    _, cache = run_with_cache(params, tokens, cfg, backend=backend)
    return np.stack([cache[f"blocks.{l}.attn.hook_pattern"] for l in range(cfg.n_layers)]), cache


def per_layer(score_fn, patterns, *args, **kwargs) -> np.ndarray:
    """Apply a pattern-level score (pattern [B,H,T,T], ...) -> [H] to each layer: [L, H]."""
    return np.stack([score_fn(patterns[l], *args, **kwargs) for l in range(len(patterns))])


def prefix_matching_scores(params, cfg: ModelConfig, tokens=None, queries=None,
                           backend: str = "numpy", seed=0, token_counts=None) -> np.ndarray:
    """Prefix-matching score of every head, [L, H] (IH; patterns.prefix_matching_score).

    By default on prefix_matching_tokens(cfg.d_vocab, cfg.n_ctx, seed=seed,
    token_counts=token_counts), scoring the queries of repeats 2-4.
    """
    if tokens is None:
        tokens, queries = prefix_matching_tokens(cfg.d_vocab, cfg.n_ctx, seed=seed,
                                                 token_counts=token_counts)
    pats, _ = stacked_patterns(params, cfg, tokens, backend)
    return per_layer(P.prefix_matching_score, pats, np.asarray(tokens), queries)


def previous_token_scores(params, cfg: ModelConfig, tokens, backend: str = "numpy") -> np.ndarray:
    """Previous-token score of every head on `tokens` [B, T] (evaluation text), [L, H]."""
    pats, _ = stacked_patterns(params, cfg, tokens, backend)
    return per_layer(P.previous_token_score, pats)


def duplicate_token_scores(params, cfg: ModelConfig, tokens, backend: str = "numpy") -> np.ndarray:
    """Duplicate-token score of every head on `tokens` [B, T], [L, H]."""
    pats, _ = stacked_patterns(params, cfg, tokens, backend)
    return per_layer(P.duplicate_token_score, pats, np.asarray(tokens))


def detector_scores(params, cfg: ModelConfig, tokens, target="induction_head",
                    error_measure: str = "mul", exclude_bos: bool = False,
                    exclude_current_token: bool = False, backend: str = "numpy") -> np.ndarray:
    """TransformerLens head-detector scores of every head, [L, H].

    `target` is a name from patterns.DETECTION_PATTERNS or a [T, T] / [B, T, T]
    array; see patterns.detector_score for the measures and options.
    """
    tokens = np.asarray(tokens)
    if isinstance(target, str):
        target = P.detection_pattern(target, tokens)
    pats, _ = stacked_patterns(params, cfg, tokens, backend)
    return per_layer(P.detector_score, pats, target, error_measure=error_measure,
                     exclude_bos=exclude_bos, exclude_current_token=exclude_current_token)
