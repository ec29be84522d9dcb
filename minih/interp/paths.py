"""Path expansion and term importance ("A Mathematical Framework", "Path expansion").

Freeze every attention pattern (and LayerNorm scale) at its value on the clean run.
Then each head is a linear map of the residual stream it reads,

    head_lh(c) = pattern_lh @ LN_l(c) @ W_V[h] @ W_O[h]      LN_l(c) = (c - mean(c)) / s_l * w_l

and the logits are a sum of paths, each a chain of heads in increasing layers:

    logits = sum over paths P of  LN_f(c_P) @ W_U   (+ the LayerNorm biases, see below)
    c_()          = x_0 = W_E[t] (+ W_pos for "standard")        order 0, the direct path
    c_(a)         = head_a(c_())                                 order 1, a single head
    c_(a, b)      = head_b(c_(a))   (layer of b > layer of a)    order 2, virtual head b∘a
    ...

The LayerNorm biases b_l (and b_f) are constants, not linear in c. The paper (no
LayerNorm there) does not say where they go; we attach them to the direct path's
reads: a head reading c_() gets LN_l(c_()) + b_l, so b_l's share lands in that head's
order-1 term c_((l, h)), and the direct path's logits get b_f @ W_U. We chose this
because the terms then still sum to the logits exactly and every path through a head
of order >= 2 stays linear in the earlier head's output. The FW paper shows the expansion for 1- and
2-layer models; the code below works for any depth, with (1 + H)^n_layers paths.

Each head is run by the model's own code for a layer's attention
(minih.model.attention_block) with two edits at its hook points, ln1.hook_scale and
attn.hook_pattern, given the clean run's values; a path other than the direct one
reads through a view of the parameters whose LayerNorm bias is zero.

Term importance: the paper measures how much the loss rises when a term is removed
with patterns frozen. We report, per path P, `loss(logits - logits_P) - loss(logits)`,
and per order k, the loss of the logits made of all paths of order <= k.

Attention-only models only. With patterns and scales frozen a head is linear, but an
MLP is not (GELU), so with MLPs the logits are no sum of paths through heads: every
function here refuses a config with d_mlp > 0 (check_attention_only). For models with
MLPs use the ablations (minih/interp/ablation.py) and the circuits read from the
weights (minih.metrics), which ignore the MLPs.

Shape legend: B = batch, T = positions, D = d_model, H = n_heads, E = d_head, V = d_vocab
"""
from __future__ import annotations

import numpy as np

from ..config import ModelConfig
from ..model import HookPoints, attention_block, embed, get_backend, run_with_cache, unembed
from ..params import check_params, check_tokens


def check_attention_only(cfg: ModelConfig) -> None:
    """Raise a one-line ValueError if the model has MLPs: path expansion needs every
    block to be linear once patterns and LayerNorm scales are frozen, and an MLP is not."""
    if cfg.d_mlp:
        raise ValueError(f"path expansion and term importance are for attention-only models, "
                         f"and this one has MLPs (d_mlp={cfg.d_mlp}): an MLP's GELU is not linear, "
                         f"so the logits are no sum of paths through heads; with MLPs use the "
                         f"ablations (minih.interp.ablation) or the weight-only circuits "
                         f"(minih.metrics), which ignore the MLPs")


def _without_bias(params, key):
    """params with params[key] replaced by zeros: a new dict, the arrays shared, none changed."""
    return {**params, key: np.zeros_like(params[key])}


def path_name(path: tuple) -> str:
    """() -> "direct"; ((0, 3),) -> "L0H3"; ((0, 3), (1, 5)) -> "L1H5∘L0H3" (applied right to left)."""
    if not path:
        return "direct"
    return "∘".join(f"L{l}H{h}" for l, h in reversed(path))


def iter_paths(params, tokens, cfg: ModelConfig, clean_cache: dict | None = None,
               backend: str = "numpy"):
    """Yield (path, c_P) for every path P: c_P [B,T,D], its part of the final residual stream.

    Depth-first, so only one chain of components is held at a time. Heads reading the
    direct path's component get the LayerNorm bias b_l (module docstring), so the
    components alone sum to the final residual stream; `path_logits` adds b_f for the
    direct path. The checks (e.g. the refusal of a model with MLPs) run at the call,
    before the first path is asked for.
    """
    check_attention_only(cfg)
    ops = get_backend(backend)
    check_params(params, cfg)
    tokens = check_tokens(tokens, cfg)
    if clean_cache is None:
        _, clean_cache = run_with_cache(params, tokens, cfg, backend=backend)
    x0 = embed(params, tokens, cfg, ops, HookPoints())                           # [B,T,D]
    # the params a head reads through: its LayerNorm bias only on the direct path
    without_bias = {l: _without_bias(params, f"blocks.{l}.ln1.b") if cfg.layernorm else params
                    for l in range(cfg.n_layers)}

    def head_writes(path, c, l):
        """Every head of layer l applied to component c, pattern and LN scale frozen:
        its hook_result [B,T,H,D]."""
        p = f"blocks.{l}."
        edits = {p + "attn.hook_pattern": clean_cache[p + "attn.hook_pattern"]}     # given
        if cfg.layernorm:
            edits[p + "ln1.hook_scale"] = clean_cache[p + "ln1.hook_scale"]
        hooks = HookPoints("all", edits)
        attention_block(params if not path else without_bias[l], c, l, cfg, ops, hooks)
        return hooks.cache[p + "attn.hook_result"]                                  # [B,T,H,D]

    def expand(path, c, start):
        yield path, c
        for l in range(start, cfg.n_layers):
            results = head_writes(path, c, l)                                       # [B,T,H,D]
            for h in range(cfg.n_heads):
                yield from expand(path + ((l, h),), results[:, :, h], l + 1)

    return expand((), x0, 0)


def path_logits(params, cfg: ModelConfig, clean_cache: dict, path: tuple, c, backend: str = "numpy"):
    """The logits one path contributes: LN_f(c) @ W_U with the frozen final scale [B,T,V].

    The direct path () also carries the final LayerNorm bias, b_f @ W_U. Attention-only
    models only (check_attention_only).
    """
    check_attention_only(cfg)
    edits = {}
    if cfg.layernorm:
        edits["ln_final.hook_scale"] = clean_cache["ln_final.hook_scale"]
        if path:
            params = _without_bias(params, "ln_final.b")
    return unembed(params, c, cfg, get_backend(backend), HookPoints("all", edits))  # [B,T,V]


def path_expansion(params, tokens, cfg: ModelConfig, backend: str = "numpy") -> dict:
    """Every path's logits: {path: [B,T,V]}. For small models and tests (memory grows as
    (1+H)^n_layers * B*T*V); term_importance streams instead. Attention-only models only."""
    check_attention_only(cfg)
    tokens = check_tokens(tokens, cfg)
    _, cache = run_with_cache(params, tokens, cfg, backend=backend)
    return {path: path_logits(params, cfg, cache, path, c, backend)
            for path, c in iter_paths(params, tokens, cfg, cache, backend)}


def term_importance(params, tokens, cfg: ModelConfig, backend: str = "numpy",
                    positions=None) -> dict:
    """Loss explained by each term of the path expansion, patterns and LN scales frozen.

    Returns {"loss": clean mean loss,
             "order_loss": {k: mean loss of the logits of all paths of order <= k},
             "terms": [{"path", "name", "order", "loss_without", "importance"}, ...]}
    with importance = loss_without - loss (how much the loss rises without the term).
    `positions` (a slice or index array over the T-1 predictions; default all) picks
    the predictions the mean loss is taken over, e.g. slice(T//2, None) for the
    second half of repeated sequences. Attention-only models only (check_attention_only).
    """
    check_attention_only(cfg)
    ops = get_backend(backend)
    tokens = check_tokens(tokens, cfg, min_len=2)
    keep = slice(None) if positions is None else positions
    if not isinstance(keep, slice):
        idx = np.asarray(keep)
        n = tokens.shape[1] - 1
        if idx.dtype == bool or idx.ndim != 1 or (idx.size and (idx.min() < -n or idx.max() >= n)):
            raise ValueError(f"positions must be a slice or 1-D integer indices into the T-1 = {n} "
                             f"predictions, got {positions!r}")

    def mean_loss(logits):
        return float(ops.per_token_loss(logits, tokens)[:, keep].mean())      # [B,T-1] -> float

    logits, cache = run_with_cache(params, tokens, cfg, backend=backend)
    loss = mean_loss(logits)
    if not np.isfinite(loss):
        raise ValueError(f"term_importance: positions={positions!r} selects no prediction "
                         f"(there are T-1 = {tokens.shape[1] - 1})")
    by_order = np.zeros((cfg.n_layers + 1,) + logits.shape, dtype=logits.dtype)   # [n+1,B,T,V]
    terms = []
    for path, c in iter_paths(params, tokens, cfg, cache, backend):
        lp = path_logits(params, cfg, cache, path, c, backend)                   # [B,T,V]
        by_order[len(path)] += lp
        without = mean_loss(logits - lp)
        terms.append({"path": path, "name": path_name(path), "order": len(path),
                      "loss_without": without, "importance": without - loss})
    cumulative = np.cumsum(by_order, axis=0)                                    # [n+1,B,T,V]
    order_loss = {k: mean_loss(cumulative[k]) for k in range(cfg.n_layers + 1)}
    return {"loss": loss, "order_loss": order_loss, "terms": terms}
