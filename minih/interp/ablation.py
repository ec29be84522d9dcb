"""Head ablations (SPEC.md "Ablations", IH Argument 3): remove heads, rerun, compare.

    ablation = Ablation(heads=[(1, 3)], kind="zero")      # or "mean" / "pattern"
    logits, cache = run_with_ablation(params, tokens, cfg, ablation)
    losses = ablated_per_token_losses(params, tokens, cfg, ablation)    # [B, T-1]

Three kinds, each replacing the write `result_h = z_h @ W_O[h]` of every ablated head:

    zero      result_h := 0
    mean      result_h := mean over the evaluation set of result_h, per position [T, D]
    pattern   result_h := 0 AND every head of every layer keeps the attention pattern
              of the clean run (and, by default, every LayerNorm keeps its clean scale)

"pattern" is the paper's pattern-preserving ablation. With patterns and LayerNorm
scales frozen the model is linear in the residual stream, so it equals removing every
path through the head in the path expansion (minih/interp/paths.py; tested there).
LayerNorm under "pattern": the paper does not say; we freeze the scales too
(`freeze_ln=True`) because only then is the identity above exact in a model with
LayerNorm. `freeze_ln=False` recomputes them, for comparison.

The ablation is an explicit argument: nothing global, params are never modified.
The forward below follows minih/model.py `forward` step by step, with the same
backend ops, so that with no ablation it gives exactly run_with_cache's numbers.

Shape legend: B = batch, T = positions, D = d_model, H = n_heads, E = d_head, V = d_vocab
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..config import ModelConfig
from ..model import get_backend
from ..params import check_params, check_tokens

KINDS = ("zero", "mean", "pattern")


@dataclass(frozen=True, eq=False)
class Ablation:
    """Which heads to remove and how.

    heads      (layer, head) pairs, e.g. [(1, 0), (1, 3)]
    kind       "zero", "mean" or "pattern" (see the module docstring)
    means      for "mean": {layer: [T, H, D]} per-position mean of hook_result, as made
               by `head_means`; None = the mean over the tokens being run
    freeze_ln  for "pattern": also freeze LayerNorm scales to the clean run's
    """
    heads: tuple = ()
    kind: str = "zero"
    means: dict | None = field(default=None, repr=False)
    freeze_ln: bool = True

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"Ablation.kind must be one of {KINDS}, got {self.kind!r}")
        try:
            heads = tuple(sorted({(int(l), int(h)) for l, h in self.heads}))
        except (TypeError, ValueError):
            raise ValueError(f"Ablation.heads must be (layer, head) pairs, got {self.heads!r}") from None
        object.__setattr__(self, "heads", heads)
        if self.means is not None and self.kind != "mean":
            raise ValueError(f"Ablation.means is only used by kind='mean', not {self.kind!r}")

    def check(self, cfg: ModelConfig) -> None:
        """Raise ValueError if a head does not exist in a model with this config."""
        for l, h in self.heads:
            if not (0 <= l < cfg.n_layers and 0 <= h < cfg.n_heads):
                raise ValueError(f"Ablation head (layer={l}, head={h}) does not exist: the model "
                                 f"has layers 0..{cfg.n_layers - 1} and heads 0..{cfg.n_heads - 1}")

    def heads_in(self, layer: int) -> list[int]:
        return [h for l, h in self.heads if l == layer]


def head_means(params, tokens, cfg: ModelConfig, backend: str = "numpy", cache=None) -> dict:
    """Per-position mean of every head's write over a token set: {layer: [T, H, D]}.

    mean_result[l][i, h] = (1/B) sum_b hook_result[l][b, i, h]
                         = ((1/B) sum_b hook_z[l][b, i, h]) @ W_O[h]   (the write is linear in z)
    Pass the clean `cache` of these tokens (run_with_cache) to skip the forward pass.
    """
    if cache is None:
        from ..model import run_with_cache
        _, cache = run_with_cache(params, tokens, cfg, backend=backend)
    return {l: np.einsum("the,hed->thd", cache[f"blocks.{l}.attn.hook_z"].mean(axis=0),
                         params[f"blocks.{l}.attn.W_O"])                            # [T,H,D]
            for l in range(cfg.n_layers)}


def _frozen_layernorm(x, w, b, scale):
    """LayerNorm with its scale given instead of computed: (x - mean(x)) / scale * w + b.

    Linear in x (plus the constant b): what makes the path expansion exact.
    """
    return (x - x.mean(axis=-1, keepdims=True)) / scale * w + b                    # [B,T,D]


def _frozen_attention(pattern, v):
    """z = pattern @ v with a given pattern.  pattern [B,H,T,T], v [B,T,H,E] -> z [B,T,H,E]"""
    return (pattern @ v.transpose(0, 2, 1, 3)).transpose(0, 2, 1, 3)


def run_with_ablation(params, tokens, cfg: ModelConfig, ablation: Ablation | None = None,
                      backend: str = "numpy", clean_cache: dict | None = None,
                      full_cache: bool = False):
    """Logits [B,T,V] and a cache of the model run with `ablation` (None: no ablation).

    `clean_cache` (run_with_cache of the same params and tokens) is needed by "pattern"
    and is computed here when not given. When given, the layers before the first
    ablated one are not recomputed (their activations cannot change), which is what
    makes a head-by-head sweep fast; the numbers are the same up to float rounding.
    `full_cache=True` also stores hook_attn_scores and hook_result, as run_with_cache.
    """
    ops = get_backend(backend)
    check_params(params, cfg)
    tokens = check_tokens(tokens, cfg)
    if ablation is not None and not isinstance(ablation, Ablation):
        raise ValueError(f"ablation must be an Ablation or None, got {type(ablation).__name__}")
    ab = ablation if ablation is not None else Ablation()
    ab.check(cfg)
    B, T = tokens.shape
    if clean_cache is not None and clean_cache["hook_resid_final"].shape != (B, T, cfg.d_model):
        raise ValueError(f"clean_cache is not of these tokens: its residual stream has shape "
                         f"{clean_cache['hook_resid_final'].shape}, tokens need {(B, T, cfg.d_model)}")
    if ab.kind == "pattern" and ab.heads and clean_cache is None:
        from ..model import forward
        _, clean_cache = forward(params, tokens, cfg, ops, keep="patterns")
    means = None
    if ab.kind == "mean" and ab.heads:
        means = ab.means if ab.means is not None else head_means(params, tokens, cfg, backend,
                                                                 cache=clean_cache)
        for l in {l for l, _ in ab.heads}:
            if l not in means or means[l].shape[0] < T or means[l].shape[1:] != (cfg.n_heads, cfg.d_model):
                got = None if l not in means else means[l].shape
                raise ValueError(f"Ablation.means[{l}] must have shape [>= T={T}, {cfg.n_heads}, "
                                 f"{cfg.d_model}] (see head_means), got {got}")
    frozen = ab.kind == "pattern" and bool(ab.heads)          # patterns come from the clean run
    freeze_ln = frozen and ab.freeze_ln and cfg.layernorm     # and LayerNorm scales too
    # layers before the first ablated one are unchanged: reuse them if we may
    first = min(l for l, _ in ab.heads) if (ab.heads and clean_cache is not None) else 0

    cache = {}
    W_pos = params["pos_embed.W_pos"][:T]                                       # [T,D]
    if first == 0:
        # 1. x = W_E[t], plus W_pos[:T] when positional is "standard"
        x = ops.embed_forward(params["embed.W_E"], tokens)                      # [B,T,D]
        cache["hook_embed"] = x
        if cfg.positional == "standard":
            x = x + W_pos
    else:
        x = clean_cache[f"blocks.{first}.hook_resid_pre"]                       # [B,T,D]
    for l in range(first, cfg.n_layers):
        p = f"blocks.{l}."
        cache[p + "hook_resid_pre"] = x
        reuse_z = clean_cache is not None and l == first and ab.heads
        if reuse_z:
            # this layer reads an unchanged residual stream: its heads' z are the clean ones
            z = clean_cache[p + "attn.hook_z"]                                  # [B,T,H,E]
            cache[p + "attn.hook_pattern"] = clean_cache[p + "attn.hook_pattern"]
            cache[p + "attn.lse"] = clean_cache[p + "attn.lse"]
        else:
            # 2a. h = LN1(x) with LayerNorm (its clean scale if frozen), else h = x
            if freeze_ln:
                h = _frozen_layernorm(x, params[p + "ln1.w"], params[p + "ln1.b"],
                                      clean_cache[p + "ln1.hook_scale"])
            elif cfg.layernorm:
                h, scale = ops.layernorm_forward(x, params[p + "ln1.w"], params[p + "ln1.b"])
                cache[p + "ln1.hook_scale"] = scale                             # [B,T,1]
            else:
                h = x
            v = ops.project_forward(h, params[p + "attn.W_V"])                  # [B,T,H,E]
            if frozen:
                # 2c-2e with the clean pattern: only the values move
                pattern = clean_cache[p + "attn.hook_pattern"]                  # [B,H,T,T]
                cache[p + "attn.lse"] = clean_cache[p + "attn.lse"]             # its lse
                z = _frozen_attention(pattern, v)                               # [B,T,H,E]
            else:
                # 2b. qk_in = h + W_pos[:T] for shortformer, else h
                qk_in = h + W_pos if cfg.positional == "shortformer" else h      # [B,T,D]
                # 2c. q = qk_in @ W_Q[h], k = qk_in @ W_K[h]
                q = ops.project_forward(qk_in, params[p + "attn.W_Q"])          # [B,T,H,E]
                k = ops.project_forward(qk_in, params[p + "attn.W_K"])          # [B,T,H,E]
                # 2d. smeared keys
                if cfg.smeared_keys:
                    k = ops.smear_forward(k, params[p + "attn.smear"])
                # 2e. causal softmax attention; z = pattern @ v
                z, lse = ops.attention_forward(q, k, v)
                cache[p + "attn.lse"] = lse                                     # [B,H,T]
                scores, pattern = ops.attention_pattern(q, k, lse)          # [B,H,T,T] each
                if full_cache:
                    cache[p + "attn.hook_attn_scores"] = scores
            cache[p + "attn.hook_pattern"] = pattern
        # the ablation: remove the ablated heads' z (their write is z_h @ W_O[h], no bias)
        gone = ab.heads_in(l)
        if gone:
            z = z.copy()
            z[:, :, gone] = 0                                                   # [B,T,H,E]
        cache[p + "attn.hook_z"] = z
        if full_cache:
            cache[p + "attn.hook_result"] = ops.head_results(z, params[p + "attn.W_O"])
        # 2f. x = x + sum_h z_h @ W_O[h]  (+ the ablated heads' means for "mean")
        attn_out = ops.output_forward(z, params[p + "attn.W_O"])                # [B,T,D]
        if gone and means is not None:
            attn_out = attn_out + means[l][:T, gone].sum(axis=1)                # [T,D] broadcast
            if full_cache:
                cache[p + "attn.hook_result"][:, :, gone] = means[l][:T, gone]
        cache[p + "hook_attn_out"] = attn_out
        x = x + attn_out
        cache[p + "hook_resid_post"] = x
    # 3. logits = LNfinal(x) @ W_U
    cache["hook_resid_final"] = x
    if freeze_ln:
        x = _frozen_layernorm(x, params["ln_final.w"], params["ln_final.b"],
                              clean_cache["ln_final.hook_scale"])
    elif cfg.layernorm:
        x, scale = ops.layernorm_forward(x, params["ln_final.w"], params["ln_final.b"])
        cache["ln_final.hook_scale"] = scale
    cache["ln_final.hook_normalized"] = x                                       # [B,T,D]
    logits = ops.unembed_forward(x, params["unembed.W_U"])                      # [B,T,V] = x @ W_U
    return logits, cache


def ablated_per_token_losses(params, tokens, cfg: ModelConfig, ablation: Ablation | None = None,
                             backend: str = "numpy", clean_cache: dict | None = None):
    """-log p(t[b, i+1] | t[b, :i+1]) of the ablated model: [B, T-1] (SPEC "Per-token loss")."""
    tokens = check_tokens(tokens, cfg, min_len=2)
    logits, _ = run_with_ablation(params, tokens, cfg, ablation, backend, clean_cache)
    return get_backend(backend).per_token_loss(logits, tokens)
