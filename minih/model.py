"""The attention-only transformer: forward, backward, and the two public entry points.

    logits, cache = run_with_cache(params, tokens, cfg)
    loss, grads   = loss_and_grads(params, tokens, cfg)

The forward is CONVENTIONS.md "Forward pass, exactly", line by line. It writes the
activations into one dict with TransformerLens names (which ones: forward's `keep`);
the backward reads the same dict, and recomputes the patterns that training does not
keep from hook_q, the keys and attn.lse. So interpretability and backprop read one
cache; training's leaves out only what interpretability alone reads (the patterns, the
scores, the per-head results).

A backend is a module with the op functions of minih.ops (NumPy, the reference)
or minih.kernels (Numba, the fast twin), chosen by name with `backend=`.

Shape legend: B = batch, T = positions, D = d_model, H = n_heads, E = d_head, V = d_vocab
"""
from __future__ import annotations

import importlib

import numpy as np

from .config import ModelConfig
from .params import check_params, check_tokens

# backend name -> module path; imported on first use, so that NumPy-only users
# never pay Numba's import and compile time.
BACKENDS = {"numpy": "minih.ops", "numba": "minih.kernels"}


def get_backend(name: str):
    """The op module for backend `name` ("numpy" or "numba")."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {sorted(BACKENDS)}")
    return importlib.import_module(BACKENDS[name])


KEEP = ("all", "patterns", "backward")     # forward's choices of what to cache, most first


def forward(params, tokens, cfg: ModelConfig, ops, keep: str = "all"):
    """Run the model; return logits [B,T,V] and the cache dict (TransformerLens names).

    `keep` says which activations the cache keeps:
      "all"       every one (run_with_cache);
      "patterns"  all but hook_attn_scores and the per-head hook_result, which only
                  interpretability reads (the clean runs that ablations start from);
      "backward"  only what the backward reads: no [B,H,T,T] array at all, since the
                  backward recomputes the pattern from q, k and attn.lse (training).
    Inputs are assumed checked (see run_with_cache).
    """
    if keep not in KEEP:
        raise ValueError(f"keep must be one of {KEEP}, got {keep!r}")
    B, T = tokens.shape
    cache = {}
    W_pos = params["pos_embed.W_pos"][:T]                                   # [T,D]
    # 1. x = W_E[t], plus W_pos[:T] when positional is "standard"
    x = ops.embed_forward(params["embed.W_E"], tokens)                      # [B,T,D]
    cache["hook_embed"] = x
    cache["hook_pos_embed"] = np.broadcast_to(W_pos, x.shape)               # [B,T,D] view
    if cfg.positional == "standard":
        x = x + W_pos
    for l in range(cfg.n_layers):
        p = f"blocks.{l}."
        cache[p + "hook_resid_pre"] = x
        # 2a. h = LN1(x) with LayerNorm, else h = x
        if cfg.layernorm:
            h, scale = ops.layernorm_forward(x, params[p + "ln1.w"], params[p + "ln1.b"])
            cache[p + "ln1.hook_scale"] = scale                             # [B,T,1]
            cache[p + "ln1.hook_normalized"] = h                            # [B,T,D]
        else:
            h = x
        # 2b. qk_in = h + W_pos[:T] for shortformer, else h
        qk_in = h + W_pos if cfg.positional == "shortformer" else h          # [B,T,D]
        # 2c. per head: q = qk_in @ W_Q[h], k = qk_in @ W_K[h], v = h @ W_V[h]
        q = ops.project_forward(qk_in, params[p + "attn.W_Q"])              # [B,T,H,E]
        k = ops.project_forward(qk_in, params[p + "attn.W_K"])              # [B,T,H,E]
        v = ops.project_forward(h, params[p + "attn.W_V"])                  # [B,T,H,E]
        cache[p + "attn.hook_q"], cache[p + "attn.hook_k"], cache[p + "attn.hook_v"] = q, k, v
        # 2d. smeared keys: k'[j] = s*k[j] + (1-s)*k[j-1]
        if cfg.smeared_keys:
            k = ops.smear_forward(k, params[p + "attn.smear"])              # [B,T,H,E]
            cache[p + "attn.hook_k_smeared"] = k
        # 2e. scores = q @ k'^T / sqrt(E), causal mask, softmax; z = pattern @ v
        z, lse = ops.attention_forward(q, k, v)       # lse [B,H,T]: pattern = exp(scores - lse)
        cache[p + "attn.lse"] = lse                   # what the backward needs of the pattern
        if keep != "backward":
            scores, pattern = ops.attention_pattern(q, k, lse)
            cache[p + "attn.hook_pattern"] = pattern                        # [B,H,T,T]
            if keep == "all":
                cache[p + "attn.hook_attn_scores"] = scores                 # [B,H,T,T]
        cache[p + "attn.hook_z"] = z                                        # [B,T,H,E]
        # 2f. x = x + sum_h z_h @ W_O[h]
        if keep == "all":
            cache[p + "attn.hook_result"] = ops.head_results(z, params[p + "attn.W_O"])
        attn_out = ops.output_forward(z, params[p + "attn.W_O"])            # [B,T,D]
        cache[p + "hook_attn_out"] = attn_out
        x = x + attn_out
        cache[p + "hook_resid_post"] = x
    # 3. logits = LNfinal(x) @ W_U
    cache["hook_resid_final"] = x
    if cfg.layernorm:
        x, scale = ops.layernorm_forward(x, params["ln_final.w"], params["ln_final.b"])
        cache["ln_final.hook_scale"] = scale
    cache["ln_final.hook_normalized"] = x                                   # [B,T,D]
    logits = ops.unembed_forward(x, params["unembed.W_U"])                  # [B,T,V] = x @ W_U
    return logits, cache


def backward(d_logits, params, tokens, cache, cfg: ModelConfig, ops):
    """Gradients of every parameter given d loss / d logits; reads the forward's cache.

    Runs the forward's steps in reverse; each step names the forward line it inverts.
    """
    B, T = tokens.shape
    D = cfg.d_model
    grads = {}
    # forward 3: logits = x_final @ W_U
    d_x, grads["unembed.W_U"] = ops.unembed_backward(d_logits, cache["ln_final.hook_normalized"],
                                                     params["unembed.W_U"])  # [B,T,D], [D,V]
    # forward 3: x_final = LNfinal(x)
    if cfg.layernorm:
        d_x, grads["ln_final.w"], grads["ln_final.b"] = ops.layernorm_backward(
            d_x, cache["hook_resid_final"], cache["ln_final.hook_scale"], params["ln_final.w"])
    d_W_pos_rows = np.zeros((T, D), dtype=d_x.dtype)                        # grad of W_pos[:T]
    for l in reversed(range(cfg.n_layers)):
        p = f"blocks.{l}."
        # forward 2f: x = x + attn_out; the residual passes d_x through unchanged
        d_z, grads[p + "attn.W_O"] = ops.output_backward(d_x, cache[p + "attn.hook_z"],
                                                         params[p + "attn.W_O"])
        # forward 2e: z = softmax(q k'^T / sqrt(E) + mask) @ v
        k_used = cache[p + "attn.hook_k_smeared"] if cfg.smeared_keys else cache[p + "attn.hook_k"]
        d_q, d_k, d_v = ops.attention_backward(d_z, cache[p + "attn.hook_q"], k_used,
                                               cache[p + "attn.hook_v"], cache[p + "attn.hook_z"],
                                               cache[p + "attn.lse"])
        # forward 2d: k' = smear(k)
        if cfg.smeared_keys:
            d_k, grads[p + "attn.smear"] = ops.smear_backward(d_k, cache[p + "attn.hook_k"],
                                                              params[p + "attn.smear"])
        # forward 2c: q, k from qk_in; v from h
        x_in = cache[p + "hook_resid_pre"]
        h = cache[p + "ln1.hook_normalized"] if cfg.layernorm else x_in
        qk_in = h + params["pos_embed.W_pos"][:T] if cfg.positional == "shortformer" else h
        d_qk_in, grads[p + "attn.W_Q"] = ops.project_backward(d_q, qk_in, params[p + "attn.W_Q"])
        d_qk_k, grads[p + "attn.W_K"] = ops.project_backward(d_k, qk_in, params[p + "attn.W_K"])
        d_h, grads[p + "attn.W_V"] = ops.project_backward(d_v, h, params[p + "attn.W_V"])
        d_qk_in += d_qk_k
        # forward 2b: qk_in = h + W_pos[:T] (shortformer) or h
        d_h += d_qk_in
        if cfg.positional == "shortformer":
            d_W_pos_rows += d_qk_in.sum(axis=0)
        # forward 2a: h = LN1(x); and the residual x passes straight on
        if cfg.layernorm:
            d_x_ln, grads[p + "ln1.w"], grads[p + "ln1.b"] = ops.layernorm_backward(
                d_h, x_in, cache[p + "ln1.hook_scale"], params[p + "ln1.w"])
            d_x = d_x + d_x_ln
        else:
            d_x = d_x + d_h
    # forward 1: x = W_E[t] (+ W_pos[:T] for "standard")
    if cfg.positional == "standard":
        d_W_pos_rows += d_x.sum(axis=0)
    grads["embed.W_E"] = ops.embed_backward(d_x, tokens, cfg.d_vocab)
    d_W_pos = np.zeros_like(params["pos_embed.W_pos"])
    d_W_pos[:T] = d_W_pos_rows
    grads["pos_embed.W_pos"] = d_W_pos
    return {key: grads[key] for key in params}                              # params' key order


def run_with_cache(params, tokens, cfg: ModelConfig, backend: str = "numpy"):
    """Logits [B,T,V] and the full activation cache (TransformerLens names).

    Cache keys, per layer l: blocks.{l}.hook_resid_pre, blocks.{l}.ln1.hook_scale and
    .hook_normalized (LayerNorm only), blocks.{l}.attn.hook_q / hook_k / hook_v
    [B,T,H,E] (hook_k before smearing; blocks.{l}.attn.hook_k_smeared after it),
    hook_attn_scores and hook_pattern [B,H,T,T] (scores scaled by 1/sqrt(E) and -inf
    above the diagonal), hook_z [B,T,H,E], hook_result [B,T,H,D], attn.lse [B,H,T] (each
    row's log-sum-exp of the scores, not a TransformerLens name), blocks.{l}.hook_attn_out,
    blocks.{l}.hook_resid_post; and hook_embed, hook_pos_embed, hook_resid_final,
    ln_final.hook_scale, ln_final.hook_normalized.
    """
    ops = get_backend(backend)
    check_params(params, cfg)
    tokens = check_tokens(tokens, cfg)
    return forward(params, tokens, cfg, ops, keep="all")


def loss_and_grads(params, tokens, cfg: ModelConfig, backend: str = "numpy"):
    """Mean next-token cross-entropy and its gradient for every parameter.

    Returns (loss: float, grads: dict with the keys and shapes of params).
    """
    ops = get_backend(backend)
    check_params(params, cfg)
    tokens = check_tokens(tokens, cfg, min_len=2)
    # a mean over sequences: both backends compute it on fixed shards of the batch, one
    # thread each, and add their means weighted by size (minih/shards.py)
    return ops.over_batch_shards(lambda t: _loss_and_grads(params, t, cfg, ops), tokens)


def _loss_and_grads(params, tokens, cfg: ModelConfig, ops):
    """loss_and_grads on checked inputs: forward, loss, backward."""
    logits, cache = forward(params, tokens, cfg, ops, keep="backward")
    loss, probs = ops.cross_entropy_forward(logits, tokens)
    d_logits = ops.cross_entropy_backward(probs, tokens)
    return loss, backward(d_logits, params, tokens, cache, cfg, ops)


def loss_fn(params, tokens, cfg: ModelConfig, backend: str = "numpy") -> float:
    """Mean next-token cross-entropy only (no backward)."""
    ops = get_backend(backend)
    check_params(params, cfg)
    tokens = check_tokens(tokens, cfg, min_len=2)
    logits, _ = forward(params, tokens, cfg, ops, keep="backward")
    return ops.cross_entropy_forward(logits, tokens)[0]


def per_token_losses(params, tokens, cfg: ModelConfig, backend: str = "numpy"):
    """-log p(tokens[b, i+1] | tokens[b, :i+1]) for every example and position: [B, T-1].

    The per-token loss of SPEC.md ("Losses over training"); its mean is loss_fn.
    """
    ops = get_backend(backend)
    check_params(params, cfg)
    tokens = check_tokens(tokens, cfg, min_len=2)
    logits, _ = forward(params, tokens, cfg, ops, keep="backward")
    return ops.per_token_loss(logits, tokens)
