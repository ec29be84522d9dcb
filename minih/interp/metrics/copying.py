"""Empirical copying score (IH, "Per-head analysis": copying): does a head, when it
attends to a token, raise that token's logit more than the other tokens of the text?

Shape legend: L layers, H heads, B batch (sequences), T positions, D d_model, V d_vocab
"""
from __future__ import annotations

import numpy as np

from ...config import ModelConfig
from ...model import run_with_cache
from ...params import check_params
from .circuits import folded_weights
from .heads import candidate_tokens, random_segments


def copying_tokens(d_vocab: int, n_seqs: int = 10, seq_len: int = 25, token_counts=None,
                   seed=0) -> np.ndarray:
    """[n_seqs, seq_len] random tokens, no BOS, distinct within a sequence when possible
    (IH: 25 random tokens; drawn like the prefix-matching tokens, see heads.candidate_tokens)."""
    return random_segments(candidate_tokens(d_vocab, token_counts, bos=None), n_seqs, seq_len, seed)


def direct_logits_per_source(params, cfg: ModelConfig, cache) -> np.ndarray:
    """What each head would add to the logits if it attended fully to position j: [L, B, T, H, V].

        l[l, b, j, h] = (h_in[b, j] @ W_V[h] @ W_O[h]) @ (L_final @ W_U)

    h_in = the head's input at j (LN1 of the residual stream, from the cache); L_final
    is the final LayerNorm's linear part P diag(w) (circuits.ln_linear). The final
    1/sigma is left out: it is one positive number per position, and the copying
    ratio below does not change when l is scaled.

    With MLPs: h_in is what the model computed, so it holds the earlier MLPs' writes;
    the head's write is then read by the unembedding directly, through its OV circuit,
    and the later MLPs (like the later heads) are ignored: the score is the head's
    direct effect, as without MLPs.
    """
    W_U = folded_weights(params, cfg)["W_U"]                          # [D,V]
    out = []
    for l in range(cfg.n_layers):
        p = f"blocks.{l}."
        h_in = cache[p + "ln1.hook_normalized"] if cfg.layernorm else cache[p + "hook_resid_pre"]
        v = np.einsum("btd,hde->bthe", h_in, params[p + "attn.W_V"])   # [B,T,H,E]
        write = np.einsum("bthe,hed->bthd", v, params[p + "attn.W_O"])  # [B,T,H,D]
        out.append(write.astype(np.float64) @ W_U)                    # [B,T,H,V]
    return np.stack(out)


def copying_score_from_logits(logits, tokens) -> np.ndarray:
    """Empirical copying score from per-source direct logits: [..., H] (IH "copying").

    logits [..., B, T, H, V] (direct_logits_per_source), tokens [B, T]. For each
    source position j of sequence b, with S the set of distinct tokens of b:

        l   = relu(logits[b, j, h] - mean over the vocabulary)
        r_j = l[t_j] / sum_{t in S} l[t]      (1/|S| if that sum is 0: no preference)
        score = mean over b, j of (r_j - 1/|S|) / (1 - 1/|S|)

    1 = the head raises exactly the token it attends to; 0 = no preference among the
    sequence's tokens; negative = it prefers the other tokens of the text. IH
    describes the score only in words and its rescaling is unclear; this one is
    minih's, chosen so that 0 means "no preference" whatever |S| is.
    """
    logits = np.asarray(logits, dtype=np.float64)
    tokens = np.asarray(tokens)
    if tokens.ndim != 2:
        raise ValueError(f"tokens must have shape [B, T], got {list(tokens.shape)}")
    B, T = tokens.shape
    if logits.shape[-4:-2] != (B, T):
        raise ValueError(f"logits must have shape [..., B, T, H, V] with B, T = {B}, {T} "
                         f"(the tokens' shape), got {list(logits.shape)}")
    l = np.maximum(logits - logits.mean(axis=-1, keepdims=True), 0.0)  # [...,B,T,H,V]
    scores = []
    for b in range(B):
        S = np.unique(tokens[b])                                      # distinct tokens
        if len(S) < 2:
            raise ValueError(f"sequence {b} has only one distinct token; copying needs >= 2")
        lb = l[..., b, :, :, :]                                       # [...,T,H,V]
        onehot = np.eye(lb.shape[-1])[tokens[b]]                      # [T,V] one-hot of t_j
        on_self = (lb * onehot[:, None, :]).sum(axis=-1)              # [...,T,H] = l[t_j]
        on_seq = lb[..., S].sum(axis=-1)                              # [...,T,H]
        with np.errstate(invalid="ignore", divide="ignore"):
            r = np.where(on_seq > 0, on_self / on_seq, 1.0 / len(S))  # [...,T,H]
        scores.append(((r - 1.0 / len(S)) / (1.0 - 1.0 / len(S))).mean(axis=-2))  # [...,H]
    return np.mean(scores, axis=0)


def empirical_copying_scores(params, cfg: ModelConfig, tokens=None, backend: str = "numpy",
                             seed=0, token_counts=None) -> np.ndarray:
    """Empirical copying score of every head, [L, H] (IH; copying_score_from_logits).

    By default on copying_tokens(cfg.d_vocab, seq_len=min(25, n_ctx), seed=seed).
    With MLPs: the direct effect through the OV circuit; later MLPs are ignored
    (direct_logits_per_source).
    """
    check_params(params, cfg)
    if tokens is None:
        tokens = copying_tokens(cfg.d_vocab, seq_len=min(25, cfg.n_ctx), seed=seed,
                                token_counts=token_counts)
    _, cache = run_with_cache(params, tokens, cfg, backend=backend)
    return copying_score_from_logits(direct_logits_per_source(params, cfg, cache), np.asarray(tokens))
