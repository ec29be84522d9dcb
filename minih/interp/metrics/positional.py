"""Positional vs token attention: split every attention score into four terms (FW
discusses positional attention but gives no number; this split and its share are minih's).

The input of queries and keys is split into a content part a and a positional part p:
qk_in[i] = a[i] + p[i]. Then, exactly,

    score(i, j) = (a_i + p_i) W_Q W_K^T (a_j + p_j)^T / sqrt(d_head)
                = tt + tp + pt + pp
    tt = a_i W_Q W_K^T a_j^T / sqrt(E)   token-token    (content query, content key)
    tp = a_i W_Q W_K^T p_j^T / sqrt(E)   token-position
    pt = p_i W_Q W_K^T a_j^T / sqrt(E)   position-token
    pp = p_i W_Q W_K^T p_j^T / sqrt(E)   position-position

How p is chosen (minih's decision):
* positional="shortformer": p = W_pos[i] (added to qk inputs only), a = LN1(resid):
  exact, because positions never enter the residual stream directly.
* positional="standard": p = the W_pos share of LN1(x): (P W_pos[i]) / sigma_i * w
  (P centres, sigma_i the position's LN scale from the cache); a = everything else
  (token embedding, LN bias, earlier heads' and MLPs' outputs). Without LayerNorm,
  p = W_pos[i].
* MLPs (d_mlp > 0) change nothing here: what an earlier MLP wrote is part of the
  stream the layer reads (from the cache), so it lands in the content part a.
* smeared keys are linear in k, so each part's keys are smeared the same way.

Shape legend: L layers, B batch, H heads, T positions (query i, key j), D d_model, E d_head
"""
from __future__ import annotations

import numpy as np

from ...config import ModelConfig
from ...model import get_backend, run_with_cache
from . import _check

TERMS = ("token_token", "token_position", "position_token", "position_position")


def score_terms(params, cfg: ModelConfig, cache, layer: int, backend: str = "numpy") -> dict:
    """The four terms of layer `layer`'s attention scores: name -> [B, H, T, T].

    Their sum equals cache["blocks.{layer}.attn.hook_attn_scores"] on and below the
    diagonal (the masked entries above it are set to 0 in every term).
    """
    ops = get_backend(backend)
    layer = _check.layer(layer, cfg)
    pre = f"blocks.{layer}."
    if not isinstance(cache, dict) or pre + "hook_resid_pre" not in cache:
        raise ValueError(f"cache must be the dict of run_with_cache for this model (with "
                         f"{pre}hook_resid_pre), got {type(cache).__name__}")
    x = cache[pre + "hook_resid_pre"]                                  # [B,T,D]
    B, T, D = x.shape
    h = cache[pre + "ln1.hook_normalized"] if cfg.layernorm else x     # [B,T,D]
    W_pos = params["pos_embed.W_pos"][:T]                              # [T,D]
    if cfg.positional == "shortformer":
        a = h                                                          # [B,T,D]
        p = np.broadcast_to(W_pos, (B, T, D))                          # [B,T,D]
    elif cfg.layernorm:
        centred = W_pos - W_pos.mean(axis=-1, keepdims=True)           # P W_pos  [T,D]
        p = centred[None] / cache[pre + "ln1.hook_scale"] * params[pre + "ln1.w"]  # [B,T,D]
        a = h - p
    else:
        p = np.broadcast_to(W_pos, (B, T, D))
        a = h - p
    W_Q, W_K = params[pre + "attn.W_Q"], params[pre + "attn.W_K"]      # [H,D,E]
    q = {"token": ops.project_forward(np.ascontiguousarray(a), W_Q),    # [B,T,H,E]
         "position": ops.project_forward(np.ascontiguousarray(p), W_Q)}
    k = {"token": ops.project_forward(np.ascontiguousarray(a), W_K),
         "position": ops.project_forward(np.ascontiguousarray(p), W_K)}
    if cfg.smeared_keys:
        k = {part: ops.smear_forward(kk, params[pre + "attn.smear"]) for part, kk in k.items()}
    causal = np.tri(T, dtype=bool)                                     # keys j <= i
    out = {}
    for qp in ("token", "position"):
        for kp in ("token", "position"):
            # s[b,h,i,j] = q[b,i,h] . k[b,j,h] / sqrt(E), as a batched matmul over (b, h)
            s = q[qp].transpose(0, 2, 1, 3) @ k[kp].transpose(0, 2, 3, 1) / np.sqrt(cfg.d_head)
            out[f"{qp}_{kp}"] = np.where(causal, s, 0.0)                # [B,H,T,T]
    return out


def term_shares(terms: dict) -> dict:
    """Share of each term in the key-to-key variation of the scores: name -> [H].

    Softmax ignores a constant added to a query's row, so only how a term varies
    across the keys j <= i of one query matters. For each term X: centre each row over
    its keys (X - row mean), sum the squares over batch and queries; the share is that
    sum over the four terms' sum. share["position_position"] near 1 = the head attends
    by position alone (e.g. a previous-token head in a shortformer model). The terms
    are not orthogonal, so this is a descriptive split, minih's choice: the paper gives
    no formula.
    """
    if set(terms) != set(TERMS):
        raise ValueError(f"terms must have exactly the keys {TERMS} (from score_terms), "
                         f"got {sorted(terms)}")
    first = terms[TERMS[0]]
    T = first.shape[-1]
    causal = np.tri(T, dtype=bool)
    n_keys = causal.sum(axis=1)                                        # [T] keys per query
    ss = {}
    for name in TERMS:
        X = terms[name]                                                # [B,H,T,T]
        row_mean = np.where(causal, X, 0.0).sum(axis=-1, keepdims=True) / n_keys[:, None]
        centred = np.where(causal, X - row_mean, 0.0)
        ss[name] = (centred ** 2).sum(axis=(0, 2, 3))                  # [H]
    total = sum(ss.values())
    with np.errstate(invalid="ignore", divide="ignore"):
        return {name: ss[name] / total for name in TERMS}


def positional_shares(params, cfg: ModelConfig, tokens, backend: str = "numpy", cache=None) -> dict:
    """term_shares for every head of the model on `tokens`: name -> [L, H].

    Pass `cache` (from run_with_cache on the same tokens) to skip the model run.
    """
    if cache is None:
        _, cache = run_with_cache(params, tokens, cfg, backend=backend)
    per_layer = [term_shares(score_terms(params, cfg, cache, l, backend)) for l in range(cfg.n_layers)]
    return {name: np.stack([s[name] for s in per_layer]) for name in TERMS}
