"""Head scores computed from attention patterns alone: pure functions, testable by hand.

Every function takes a pattern ``[B, H, T, T]`` (batch, head, query i, key j; rows sum
to 1 over the keys j <= i, as in ``blocks.{l}.attn.hook_pattern``) and, where the
score depends on the text, the tokens ``[B, T]`` it was computed on. It returns one
number per head, ``[H]``. Nothing is written into the inputs; where a measure needs
a modified pattern (TransformerLens' exclude options) it works on a copy.

The model-level wrappers that build the inputs and run the model are in heads.py.

Shape legend: B batch, H heads, T positions (query i, key j)
"""
from __future__ import annotations

import numpy as np

from . import _check


# --- key masks: which keys j count for query i -----------------------------------------

def previous_token_mask(T: int) -> np.ndarray:
    """[T, T] bool: True at (i, i-1). The key a previous-token head attends to."""
    return np.eye(_check.integer(T, "T", minimum=1), k=-1, dtype=bool)


def duplicate_token_mask(tokens) -> np.ndarray:
    """[B, T, T] bool: True where key j < i holds the same token as query i."""
    tokens = _check.token_batch(tokens)
    T = tokens.shape[-1]
    same = tokens[:, :, None] == tokens[:, None, :]                  # [B,T,T] t[i] == t[j]
    return same & np.tri(T, k=-1, dtype=bool)                         # strictly earlier keys


def induction_mask(tokens) -> np.ndarray:
    """[B, T, T] bool: True where key j >= 1 follows an earlier copy of the query token.

    mask[b, i, j] = (t[j-1] == t[i]) and (j - 1 < i), i.e. j <= i: the token *after*
    an earlier occurrence of the current token, where an induction head looks
    (IH, "prefix matching"). Key 0 has no previous token and never counts.
    """
    tokens = _check.token_batch(tokens)
    B, T = tokens.shape
    mask = np.zeros((B, T, T), dtype=bool)
    # mask[:, i, j] for j >= 1 compares t[i] with t[j-1]
    mask[:, :, 1:] = tokens[:, :, None] == tokens[:, None, :-1]      # [B,T,T-1]
    return mask & np.tri(T, dtype=bool)                               # keys j <= i


# --- scores on patterns ------------------------------------------------------------------

def summed_attention(pattern, key_mask, query_mask=None) -> np.ndarray:
    """Mean over chosen queries of the attention summed over the keys in `key_mask`: [H].

    score[h] = mean over (b, i) with query_mask[b, i] of  sum_j pattern[b, h, i, j] * key_mask[b, i, j]

    key_mask is [T, T] or [B, T, T] (bool); query_mask is [T] or [B, T] (bool), by
    default every query that has at least one key in key_mask. Returns NaN for every
    head if no query is chosen.
    """
    pattern = _check.pattern_and_tokens(pattern)
    B, H, T, _ = pattern.shape
    key_mask = np.broadcast_to(np.asarray(key_mask, dtype=bool), (B, T, T))
    if query_mask is None:
        query_mask = key_mask.any(axis=-1)                            # [B,T]
    query_mask = np.broadcast_to(np.asarray(query_mask, dtype=bool), (B, T))
    n_queries = query_mask.sum()
    if n_queries == 0:
        return np.full(H, np.nan)
    on_keys = np.einsum("bhij,bij->bhi", pattern, key_mask.astype(pattern.dtype))  # [B,H,T]
    return (on_keys * query_mask[:, None, :]).sum(axis=(0, 2)) / n_queries       # [H]


def previous_token_score(pattern) -> np.ndarray:
    """Previous-token score [H]: mean over queries i >= 1 of pattern[i, i-1].

    1 = every query puts all its attention on the token just before it. The papers
    use previous-token heads (FW "Induction heads", IH Argument 5) without fixing a
    number; this mean is minih's choice. TransformerLens' "previous_token_head" detector
    with error measure "mul" gives (T-1)/T times it: its denominator sum(A) = T also
    counts query 0, which has no previous token.
    """
    pattern = _check.pattern_and_tokens(pattern)
    T = pattern.shape[-1]
    if T < 2:
        raise ValueError("previous_token_score needs T >= 2 positions")
    return summed_attention(pattern, previous_token_mask(T))


def duplicate_token_score(pattern, tokens) -> np.ndarray:
    """Duplicate-token score [H]: for each query i that has an earlier copy of
    t[i], the attention summed over those earlier copies; averaged over such queries.

    1 = a perfect duplicate-token head. NaN if the text has no repeated token.
    """
    pattern, tokens = _check.pattern_and_tokens(pattern, tokens)
    return summed_attention(pattern, duplicate_token_mask(tokens))


def prefix_matching_score(pattern, tokens, query_mask=None) -> np.ndarray:
    """Prefix-matching score [H] (IH, "Per-head analysis": prefix matching).

    For each chosen query i: sum over keys j with t[j-1] == t[i], j - 1 < i of
    pattern[i, j] (the attention on tokens that *followed* an earlier copy of the
    current token); then the mean over queries and sequences. 1 = perfect induction
    head. By default the queries are those with at least one such key; on the
    paper's [BOS] + R + R + R + R sequences (R without repeated tokens) these are
    exactly the positions of repeats 2-4 (heads.prefix_matching passes them explicitly).

    We sum over the matching keys rather than average the matching entries: with 4
    repeats a query in repeat 4 has 3 matching keys, so an average would cap a
    perfect head at 1/3..1/2.
    """
    pattern, tokens = _check.pattern_and_tokens(pattern, tokens)
    return summed_attention(pattern, induction_mask(tokens), query_mask)


# --- TransformerLens-compatible head detector --------------------------------------------

DETECTION_PATTERNS = ("previous_token_head", "duplicate_token_head", "induction_head")
ERROR_MEASURES = ("mul", "abs")


def detection_pattern(name: str, tokens) -> np.ndarray:
    """The 0/1 target pattern [B, T, T] of TransformerLens' head detector.

    "previous_token_head": 1 at (i, i-1); "duplicate_token_head": 1 where j < i and
    t[j] == t[i]; "induction_head": the duplicate pattern shifted one key to the right
    (1 where j <= i and t[j-1] == t[i]). As transformer_lens.head_detector's
    get_*_detection_pattern, for each sequence of the batch.
    """
    tokens = np.asarray(tokens)
    if tokens.ndim == 1:
        tokens = tokens[None]
    builders = {"previous_token_head": lambda t: np.broadcast_to(
                    previous_token_mask(t.shape[1]), (t.shape[0],) + (t.shape[1],) * 2),
                "duplicate_token_head": duplicate_token_mask,
                "induction_head": induction_mask}
    if not isinstance(name, str) or name not in builders:
        raise ValueError(f"unknown detection pattern {name!r}; choose one of {DETECTION_PATTERNS}")
    return builders[name](tokens).astype(np.float64)


def detector_score(pattern, target, error_measure: str = "mul", exclude_bos: bool = False,
                   exclude_current_token: bool = False) -> np.ndarray:
    """TransformerLens' head-detector score of each head against a target pattern: [H].

    pattern [B, H, T, T]; target [T, T] or [B, T, T] (usually 0/1, from
    detection_pattern). Per sequence and head, with A the head's pattern (a copy):

        exclude_bos: A[:, 0] = 0 (key 0 ignored);  exclude_current_token: A[i, i] = 0
        "mul":  score = sum(A * D) / sum(A)     (the share of attention on target keys)
        "abs":  score = 1 - sum(|A - D|) / T    (TL: 1 - mean(|A - D|) * T; the
                exclusions zero the same entries of |A - D| instead of A)

    then the mean over the batch (TL's detect_head averages a list of sequences the
    same way). Differences from transformer_lens.head_detector: TL edits the cached
    pattern in place for "mul" (we use a copy), and rounds "abs" to 3 decimals (we
    don't).
    """
    pattern = _check.pattern_and_tokens(pattern)
    B, H, T, _ = pattern.shape
    target = _check.floats(target, "target")
    if target.shape not in ((T, T), (B, T, T)):
        raise ValueError(f"target must have shape [T, T] or [batch, T, T] = {[B, T, T]}, "
                         f"got {list(target.shape)}")
    if error_measure not in ERROR_MEASURES:
        raise ValueError(f"error_measure must be one of {ERROR_MEASURES}, got {error_measure!r}")
    D = np.broadcast_to(target, (B, T, T))[:, None]                   # [B,1,T,T]
    keep = np.ones((T, T))
    if exclude_bos:
        keep[:, 0] = 0.0
    if exclude_current_token:
        np.fill_diagonal(keep, 0.0)
    if error_measure == "mul":
        A = pattern * keep                                            # a new array: a copy
        total = A.sum(axis=(-2, -1))                                  # [B,H]
        with np.errstate(invalid="ignore", divide="ignore"):
            per_seq = (A * D).sum(axis=(-2, -1)) / total              # [B,H]
    else:
        abs_diff = np.abs(pattern - D) * keep                         # [B,H,T,T]
        per_seq = 1.0 - abs_diff.sum(axis=(-2, -1)) / T               # [B,H]
    return per_seq.mean(axis=0)
