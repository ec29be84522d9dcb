"""Head ablations (induction-heads paper, Argument 3): remove heads, rerun, compare.

    ablation = Ablation(heads=[(1, 3)], kind="zero")      # or "mean" / "pattern"
    logits, cache = run_with_ablation(params, tokens, cfg, ablation)
    losses = ablated_per_token_losses(params, tokens, cfg, ablation)    # [B, T-1]

Three kinds, each replacing the write `result_h = z_h @ W_O[h]` of every ablated head:

    zero      result_h := 0
    mean      result_h := mean over the evaluation set of result_h, per position [T, D]
    pattern   result_h := 0 AND every head of every layer keeps the attention pattern
              of the clean run (and, by default, every ln1 and the final LayerNorm
              keep their clean scales)

"pattern" is the paper's pattern-preserving ablation. In an attention-only model, with
patterns and LayerNorm scales frozen the model is linear in the residual stream, so it
equals removing every path through the head in the path expansion
(minih/interp/paths.py; tested there). LayerNorm under "pattern": the paper does not
say; we freeze the scales too (`freeze_ln=True`) because only then is the identity
above exact in a model with LayerNorm. `freeze_ln=False` recomputes them, for comparison.

Models with MLPs (d_mlp > 0). Every kind works, and "pattern" freezes exactly what it
freezes without MLPs: every attention pattern and (freeze_ln) every ln1 scale and the
final scale. LN2 and the MLPs run normally on the ablated stream: the ablated head's
missing write changes what every later MLP computes, and those MLP outputs flow on
unfrozen. An MLP is not linear (GELU), so this is no longer the removal of every path
through the head (there is no path expansion with MLPs: paths.py refuses them); read it
as "the head's write is gone, every later attention pattern is kept, the MLPs respond".
We do not freeze LN2's scale: it would make nothing linear (GELU follows it) and would
feed the MLP a stream divided by a scale measured on another stream.

Each kind is a few edits of the model's one forward (minih.model.forward), at the
hook points named as in the cache (`ablation_edits` builds them):

    zero      blocks.{l}.attn.hook_z:       z[:, :, h] := 0 (no bias: the write is 0 too)
    mean      blocks.{l}.attn.hook_result:  result[:, :, h] := the mean write
    pattern   as zero, plus, at every layer, attn.hook_pattern := the clean pattern and
              ln1.hook_scale, ln_final.hook_scale := the clean scales, given as arrays
              (so the queries, keys and scores are not computed); no edit of ln2 or
              of the MLPs' hook points

The ablation is an explicit argument: nothing global, params are never modified. With
no ablation the forward has no edit, so it gives run_with_cache's numbers exactly.

Shape legend: B = batch, T = positions, D = d_model, H = n_heads, E = d_head, V = d_vocab
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..config import ModelConfig
from ..model import forward, get_backend, run_with_cache
from ..params import check_params, check_tokens

KINDS = ("zero", "mean", "pattern")


@dataclass(frozen=True, eq=False)
class Ablation:
    """Which heads to remove and how.

    heads      (layer, head) pairs, e.g. [(1, 0), (1, 3)]
    kind       "zero", "mean" or "pattern" (see the module docstring)
    means      for "mean": {layer: [T, H, D]} per-position mean of hook_result, as made
               by `head_means`; None = the mean over the tokens being run
    freeze_ln  for "pattern": also freeze the ln1 and final LayerNorm scales to the clean
               run's (LN2, in a model with MLPs, is always recomputed: module docstring)
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
        _, cache = run_with_cache(params, tokens, cfg, backend=backend)
    return {l: np.einsum("the,hed->thd", cache[f"blocks.{l}.attn.hook_z"].mean(axis=0),
                         params[f"blocks.{l}.attn.W_O"])                            # [T,H,D]
            for l in range(cfg.n_layers)}


def _set_heads(heads, values=0):
    """An edit that sets the heads `heads` of a [B,T,H,.] value to `values` (on a copy)."""
    def edit(a):
        a = a.copy()
        a[:, :, heads] = values
        return a
    return edit


def ablation_edits(ab: Ablation, cfg: ModelConfig, T: int, clean_cache: dict | None = None,
                   means: dict | None = None) -> dict:
    """The edits of the forward that make ablation `ab` (module docstring): {hook name: edit}.

    "pattern" needs the clean run's cache (its hook_pattern and ln1/ln_final scales,
    given to the forward as arrays: frozen; with MLPs, LN2 and the MLPs get no edit and
    run on the ablated stream), "mean" the per-position means {layer: [>= T, H, D]}
    (head_means).
    """
    edits = {}
    for l in sorted({l for l, _ in ab.heads}):
        gone = ab.heads_in(l)
        if ab.kind == "mean":
            edits[f"blocks.{l}.attn.hook_result"] = _set_heads(gone, means[l][:T, gone])  # [T,h,D]
        else:
            edits[f"blocks.{l}.attn.hook_z"] = _set_heads(gone)
    if ab.kind == "pattern" and ab.heads:
        for l in range(cfg.n_layers):
            p = f"blocks.{l}."
            edits[p + "attn.hook_pattern"] = clean_cache[p + "attn.hook_pattern"]     # given
            if ab.freeze_ln and cfg.layernorm:
                edits[p + "ln1.hook_scale"] = clean_cache[p + "ln1.hook_scale"]
        if ab.freeze_ln and cfg.layernorm:
            edits["ln_final.hook_scale"] = clean_cache["ln_final.hook_scale"]
    return edits


def run_with_ablation(params, tokens, cfg: ModelConfig, ablation: Ablation | None = None,
                      backend: str = "numpy", clean_cache: dict | None = None,
                      full_cache: bool = False):
    """Logits [B,T,V] and a cache of the model run with `ablation` (None: no ablation).

    `clean_cache` (run_with_cache of the same params and tokens) is needed by "pattern"
    and is computed here when not given. When given, the forward starts at the first
    ablated layer from the clean residual stream there (the layers before it cannot
    change), which is what makes a head-by-head sweep fast; the numbers are the same up
    to float rounding. `full_cache=True` also keeps hook_attn_scores and hook_result, as
    run_with_cache. With MLPs, the MLPs of the first ablated layer and of every later one
    are recomputed on the ablated stream under every kind (module docstring).
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
    edits = ablation_edits(ab, cfg, T, clean_cache, means)
    keep = "all" if full_cache else "patterns"
    if ab.heads and clean_cache is not None:
        # layers before the first ablated one are unchanged: start there, from the clean
        # stream; that layer reads the clean stream, so its heads' z are the clean ones:
        # given (edited as the ablation says), they are not recomputed
        first = min(l for l, _ in ab.heads)
        z_name = f"blocks.{first}.attn.hook_z"
        edit = edits.get(z_name)
        edits[z_name] = clean_cache[z_name] if edit is None else edit(clean_cache[z_name])
        return forward(params, tokens, cfg, ops, keep, edits, start_layer=first,
                       resid=clean_cache[f"blocks.{first}.hook_resid_pre"])
    return forward(params, tokens, cfg, ops, keep, edits)


def ablated_per_token_losses(params, tokens, cfg: ModelConfig, ablation: Ablation | None = None,
                             backend: str = "numpy", clean_cache: dict | None = None):
    """-log p(t[b, i+1] | t[b, :i+1]) of the ablated model: [B, T-1], the loss at each
    prediction before any mean."""
    tokens = check_tokens(tokens, cfg, min_len=2)
    logits, _ = run_with_ablation(params, tokens, cfg, ablation, backend, clean_cache)
    return get_backend(backend).per_token_loss(logits, tokens)
