"""The transformer: the one forward, its backward, and the public entry points.

    logits, cache = run_with_cache(params, tokens, cfg)
    loss, grads   = loss_and_grads(params, tokens, cfg)

`forward` is the only place where the model's steps are written; everything that runs
the model (training, the cache for interpretability, every ablation, the path
expansion) runs it. The steps, for tokens t [B, T]:

  1. x = W_E[t], plus W_pos[:T] when positional is "standard".              embed
  2. for each layer l:                                                      layer
       h = LN1(x) (LayerNorm: (x - mean) / sqrt(var + 1e-5) * w + b, var biased), else x
       qk_in = h + W_pos[:T] for "shortformer", else h
       per head: q = qk_in @ W_Q[h], k = qk_in @ W_K[h], v = h @ W_V[h]   attention_heads
       smeared keys: k'[0] = k[0], k'[j] = s k[j] + (1 - s) k[j-1], s = sigmoid(smear[h])
       scores = q @ k'^T / sqrt(E), causal mask; pattern = softmax(scores) over keys
       z = pattern @ v
       x = x + sum_h z_h @ W_O[h]                                           attention_block
       with an MLP (d_mlp > 0), after the attention:                       mlp_block
       h2 = LN2(x) (LayerNorm), else x
       pre = h2 @ W_in + b_in; post = gelu(pre) (tanh form); x = x + post @ W_out + b_out
  3. logits = LNfinal(x) @ W_U (without LayerNorm: x @ W_U).               unembed

Every intermediate value passes a named hook point (the TransformerLens cache names,
e.g. "blocks.1.attn.hook_pattern"; hook_names lists them). At each, `edits[name]`, if
there is one, replaces the value: a function is called with the value computed there
and returns the value that flows on; an array is used instead of computing it
(HookPoints). The cache keeps the values (which ones: `keep`). An ablation is a few
edits: zero a head's hook_z, or give the clean run's hook_pattern and ln.hook_scale.
With no edit, forward is the plain model.

The backward reads the same cache, so interpretability and backprop read one dict.

A backend is a module with the op functions of minih.ops (NumPy, the reference) or
minih.kernels (Numba: the reference with fast twins), chosen by name with `backend=`.
The Numba backend also has a fused attention that keeps no pattern; forward uses it
only where nothing may read or change the pattern (training, keep="backward"). And for
training it has the whole step of each shard of the batch in one kernel
(minih/kernels/step.py): these same steps and their backward, written once more as a
single jitted function, checked against this file by tests/test_step.py; loss_and_grads
uses it with backend="numba". Everything that reads or edits activations runs forward.

Shape legend: B = batch, T = positions, D = d_model, H = n_heads, E = d_head, V = d_vocab,
M = d_mlp
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
    if not isinstance(name, str) or name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {sorted(BACKENDS)}")
    return importlib.import_module(BACKENDS[name])


# --- hook points ---------------------------------------------------------------------

KEEP = ("all", "patterns", "backward")     # forward's choices of what to cache, most first
# [B,H,T,T] and [B,T,H,D] arrays that only interpretability reads: kept by "all" alone
_INTERPRETABILITY_ONLY = ("attn.hook_attn_scores", "attn.hook_result")


def hook_names(cfg: ModelConfig) -> list[str]:
    """The names of forward's hook points for this config, in the order forward meets them.

    Each is also a cache key of run_with_cache. The cache has three more entries that
    are records, not hook points: hook_pos_embed (W_pos[:T], broadcast to [B,T,D]) and,
    when the fused attention ran, blocks.{l}.attn.lse.
    """
    names = ["hook_embed"]
    for l in range(cfg.n_layers):
        p = f"blocks.{l}."
        names.append(p + "hook_resid_pre")
        if cfg.layernorm:
            names += [p + "ln1.hook_scale", p + "ln1.hook_normalized"]
        names += [p + "attn.hook_q", p + "attn.hook_k", p + "attn.hook_v"]
        if cfg.smeared_keys:
            names.append(p + "attn.hook_k_smeared")
        names += [p + "attn.hook_attn_scores", p + "attn.hook_pattern", p + "attn.hook_z",
                  p + "attn.hook_result", p + "hook_attn_out"]
        if cfg.d_mlp:
            names.append(p + "hook_resid_mid")
            if cfg.layernorm:
                names += [p + "ln2.hook_scale", p + "ln2.hook_normalized"]
            names += [p + "mlp.hook_pre", p + "mlp.hook_post", p + "hook_mlp_out"]
        names.append(p + "hook_resid_post")
    names.append("hook_resid_final")
    if cfg.layernorm:
        names.append("ln_final.hook_scale")
    names.append("ln_final.hook_normalized")
    return names


class HookPoints:
    """The hook points of one forward run: the caller's edits, and the cache they fill.

    An edit at a hook point is either
      a function  called with the value computed there; what it returns flows on;
      an array    the value that flows on, given instead of computed: what would only feed
                  it is then not computed at all (a given attn.hook_pattern skips the
                  queries, keys and scores; a given attn.hook_z the whole read of the layer's
                  heads; a given ln.hook_scale LayerNorm's statistics). Frozen patterns and
                  scales, and the clean z of a layer whose input is unchanged, are given so.
    hooks(name, value) applies the edit at `name` to value, stores the result in
    hooks.cache if `keep` keeps that name, and returns it. `keep`:
      "all"       every value (run_with_cache);
      "patterns"  all but hook_attn_scores and hook_result (per-head writes), which
                  interpretability alone reads: the clean runs ablations start from;
      "backward"  the same, and the attention may run fused (training): then the cache
                  holds attn.lse, each row's log-sum-exp, instead of hook_pattern.
    """

    def __init__(self, keep: str = "all", edits: dict | None = None):
        if keep not in KEEP:
            raise ValueError(f"keep must be one of {KEEP}, got {keep!r}")
        edits = {} if edits is None else edits
        if not isinstance(edits, dict):
            raise ValueError(f"edits must be a dict {{hook name: function or array}}, "
                             f"got {type(edits).__name__}")
        for name, edit in edits.items():
            if not (callable(edit) or isinstance(edit, np.ndarray)):
                raise ValueError(f"edits[{name!r}] must be a function of the value computed there "
                                 f"or an array to use instead, got {type(edit).__name__}")
        self.keep, self.edits, self.cache = keep, edits, {}

    def __call__(self, name: str, value=None):
        edit = self.edits.get(name)
        if callable(edit):
            value = edit(value)
        elif edit is not None:
            value = edit                                 # given: value was not computed
        if self.keeps(name):
            self.cache[name] = value
        return value

    def keeps(self, name: str) -> bool:
        return self.keep == "all" or not name.endswith(_INTERPRETABILITY_ONLY)

    def edited(self, name: str) -> bool:
        return name in self.edits

    def given(self, name: str) -> bool:
        """Whether the value at `name` is given (an array), so need not be computed."""
        return isinstance(self.edits.get(name), np.ndarray)


# --- the forward, step by step ---------------------------------------------------------

def forward(params, tokens, cfg: ModelConfig, ops, keep: str = "all", edits: dict | None = None,
            start_layer: int = 0, resid=None):
    """Run the model; return logits [B,T,V] and the cache dict (TransformerLens names).

    keep        which values the cache keeps: "all", "patterns" or "backward" (HookPoints)
    edits       {hook name: function or array} (hook_names lists the names): a function
                gets the value computed at that hook point and returns the value that
                flows on; an array is the value, given instead of computed (HookPoints)
    start_layer, resid
                start at layer `start_layer` from the residual stream `resid` [B,T,D]
                (its hook_resid_pre) instead of from the tokens: the layers before it
                are neither run nor cached. A head-by-head ablation sweep starts at the
                first ablated layer from the clean run's stream.
    Inputs are assumed checked (see run_with_cache).
    """
    hooks = HookPoints(keep, edits)
    unknown = sorted(set(hooks.edits) - set(hook_names(cfg)))
    if unknown:
        raise ValueError(f"edits name no hook point of this model: {unknown}; "
                         f"the names are those of hook_names(cfg), e.g. 'blocks.0.attn.hook_pattern'")
    B, T = tokens.shape
    if not 0 <= start_layer <= cfg.n_layers:
        raise ValueError(f"start_layer must be in 0..{cfg.n_layers}, got {start_layer}")
    if start_layer == 0:
        x = embed(params, tokens, cfg, ops, hooks)                          # [B,T,D]
    else:
        if resid is None or np.shape(resid) != (B, T, cfg.d_model):
            raise ValueError(f"resid must be the [B, T, D] = {(B, T, cfg.d_model)} residual stream "
                             f"before layer {start_layer}, got {None if resid is None else np.shape(resid)}")
        x = resid
    for l in range(start_layer, cfg.n_layers):
        x = layer(params, x, l, cfg, ops, hooks)                            # [B,T,D]
    logits = unembed(params, x, cfg, ops, hooks)                            # [B,T,V]
    return logits, hooks.cache


def embed(params, tokens, cfg: ModelConfig, ops, hooks: HookPoints):
    """Step 1: x = W_E[t], plus W_pos[:T] when positional is "standard".  tokens [B,T] -> x [B,T,D]"""
    T = tokens.shape[1]
    W_pos = params["pos_embed.W_pos"][:T]                                   # [T,D]
    x = hooks("hook_embed", ops.embed_forward(params["embed.W_E"], tokens))  # [B,T,D]
    hooks.cache["hook_pos_embed"] = np.broadcast_to(W_pos, x.shape)         # [B,T,D] view, a record
    if cfg.positional == "standard":
        x = x + W_pos
    return x


def layer(params, x, l: int, cfg: ModelConfig, ops, hooks: HookPoints):
    """Step 2 for layer l: the residual stream before it -> after it.  x [B,T,D] -> [B,T,D]

    Each sub-block reads the stream and adds its output to it: the attention, then (in
    a model with MLPs) the MLP, which reads the stream the attention wrote to.
    """
    p = f"blocks.{l}."
    x = hooks(p + "hook_resid_pre", x)
    x = x + attention_block(params, x, l, cfg, ops, hooks)                 # [B,T,D]
    if cfg.d_mlp:
        x = hooks(p + "hook_resid_mid", x)
        x = x + mlp_block(params, x, l, cfg, ops, hooks)                   # [B,T,D]
    return hooks(p + "hook_resid_post", x)


def layernorm(x, w, b, name: str, ops, hooks: HookPoints):
    """y = (x - mean) / scale * w + b, hooking the scale ("{name}.hook_scale") and y
    ("{name}.hook_normalized").  x [B,T,D] -> y [B,T,D]

    With the scale edited (e.g. frozen at the clean run's: then y is linear in x) it is
    computed unless given, edited, then used; otherwise one call computes both (fused in
    the Numba backend).
    """
    scale_name = name + ".hook_scale"
    if hooks.edited(scale_name):
        scale = hooks(scale_name, None if hooks.given(scale_name) else ops.layernorm_scale(x))
        y = ops.layernorm_normalize(x, scale, w, b)                         # [B,T,D]
    else:
        y, scale = ops.layernorm_forward(x, w, b)                           # [B,T,D], [B,T,1]
        hooks(scale_name, scale)                                            # [B,T,1]
    return hooks(name + ".hook_normalized", y)


def attention_block(params, x, l: int, cfg: ModelConfig, ops, hooks: HookPoints):
    """Layer l's attention: its heads read the stream x, then their summed write.

    x [B,T,D] -> attn_out [B,T,D] (hook_attn_out). Each head's own write, hook_result
    [B,T,H,D], is computed when kept or edited; when edited, attn_out is the sum of the
    edited writes.
    """
    p = f"blocks.{l}."
    W_O = params[p + "attn.W_O"]                                            # [H,E,D]
    if hooks.given(p + "attn.hook_z"):
        z = hooks(p + "attn.hook_z")                  # given: the heads' read is not computed
    else:
        z = hooks(p + "attn.hook_z", attention_heads(params, x, l, cfg, ops, hooks))  # [B,T,H,E]
    # attn_out = sum_h z_h @ W_O[h]
    result_name = p + "attn.hook_result"
    if hooks.edited(result_name):
        attn_out = hooks(result_name, ops.head_results(z, W_O)).sum(axis=2)  # [B,T,D]
    else:
        if hooks.keeps(result_name):
            hooks(result_name, ops.head_results(z, W_O))                    # [B,T,H,D]
        attn_out = ops.output_forward(z, W_O)                               # [B,T,D]
    return hooks(p + "hook_attn_out", attn_out)


def attention_heads(params, x, l: int, cfg: ModelConfig, ops, hooks: HookPoints):
    """Layer l's heads reading the stream: x [B,T,D] -> z [B,T,H,E] (before hook_z)."""
    p = f"blocks.{l}."
    T = x.shape[1]
    # h = LN1(x) with LayerNorm, else h = x
    h = layernorm(x, params[p + "ln1.w"], params[p + "ln1.b"], p + "ln1", ops, hooks) \
        if cfg.layernorm else x                                             # [B,T,D]
    # per head: v = h @ W_V[h]
    v = hooks(p + "attn.hook_v", ops.project_forward(h, params[p + "attn.W_V"]))      # [B,T,H,E]
    if hooks.given(p + "attn.hook_pattern"):
        # a given pattern (frozen): the queries, keys and scores that make it are not needed
        return ops.attention_z(hooks(p + "attn.hook_pattern"), v)          # [B,T,H,E]
    # qk_in = h + W_pos[:T] for shortformer, else h
    qk_in = h + params["pos_embed.W_pos"][:T] if cfg.positional == "shortformer" else h
    # per head: q = qk_in @ W_Q[h], k = qk_in @ W_K[h]
    q = hooks(p + "attn.hook_q", ops.project_forward(qk_in, params[p + "attn.W_Q"]))  # [B,T,H,E]
    k = hooks(p + "attn.hook_k", ops.project_forward(qk_in, params[p + "attn.W_K"]))  # [B,T,H,E]
    # smeared keys: k'[j] = s*k[j] + (1-s)*k[j-1]
    if cfg.smeared_keys:
        k = hooks(p + "attn.hook_k_smeared", ops.smear_forward(k, params[p + "attn.smear"]))
    # scores = q @ k'^T / sqrt(E), causal mask; pattern = softmax(scores); z = pattern @ v
    fused = (hooks.keep == "backward" and hasattr(ops, "fused_attention_forward")
             and not hooks.edited(p + "attn.hook_attn_scores")
             and not hooks.edited(p + "attn.hook_pattern"))
    if fused:
        # the Numba backend's trick: no [B,H,T,T] array; lse [B,H,T] lets the backward
        # recompute the pattern as exp(scores - lse)
        z, hooks.cache[p + "attn.lse"] = ops.fused_attention_forward(q, k, v)
        return z                                                            # [B,T,H,E]
    scores = hooks(p + "attn.hook_attn_scores", ops.attention_scores(q, k))  # [B,H,T,T]
    pattern = hooks(p + "attn.hook_pattern", ops.attention_pattern(scores))  # [B,H,T,T]
    return ops.attention_z(pattern, v)                                      # [B,T,H,E]


def mlp_block(params, x, l: int, cfg: ModelConfig, ops, hooks: HookPoints):
    """Layer l's MLP: x [B,T,D] (hook_resid_mid) -> mlp_out [B,T,D] (hook_mlp_out).

    h2 = LN2(x) (LayerNorm), else x; pre = h2 @ W_in + b_in; post = gelu(pre);
    mlp_out = post @ W_out + b_out. Every position is processed alone: the MLP moves no
    information between positions, only the attention does.
    """
    p = f"blocks.{l}."
    h2 = layernorm(x, params[p + "ln2.w"], params[p + "ln2.b"], p + "ln2", ops, hooks) \
        if cfg.layernorm else x                                             # [B,T,D]
    pre = hooks(p + "mlp.hook_pre",
                ops.linear_forward(h2, params[p + "mlp.W_in"], params[p + "mlp.b_in"]))  # [B,T,M]
    post = hooks(p + "mlp.hook_post", ops.gelu_forward(pre))                # [B,T,M]
    out = ops.linear_forward(post, params[p + "mlp.W_out"], params[p + "mlp.b_out"])  # [B,T,D]
    return hooks(p + "hook_mlp_out", out)


def unembed(params, x, cfg: ModelConfig, ops, hooks: HookPoints):
    """Step 3: logits = LNfinal(x) @ W_U.  x [B,T,D] -> logits [B,T,V]"""
    x = hooks("hook_resid_final", x)
    if cfg.layernorm:
        x = layernorm(x, params["ln_final.w"], params["ln_final.b"], "ln_final", ops, hooks)
    else:
        x = hooks("ln_final.hook_normalized", x)                            # [B,T,D]
    return ops.unembed_forward(x, params["unembed.W_U"])                    # [B,T,V] = x @ W_U


# --- the backward ------------------------------------------------------------------------

def backward(d_logits, params, tokens, cache, cfg: ModelConfig, ops):
    """Gradients of every parameter given d loss / d logits; reads the forward's cache.

    Runs the forward's steps in reverse (a forward without edits, from layer 0); each
    step names the forward line it inverts.
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
        if cfg.d_mlp:
            d_x = _mlp_backward(d_x, params, cache, l, cfg, ops, grads)
        # forward 2: x = x + attn_out; the residual passes d_x through unchanged
        # forward: attn_out = sum_h z_h @ W_O[h]
        d_z, grads[p + "attn.W_O"] = ops.output_backward(d_x, cache[p + "attn.hook_z"],
                                                         params[p + "attn.W_O"])
        # forward: z = softmax(q k'^T / sqrt(E) + mask) @ v
        q, v = cache[p + "attn.hook_q"], cache[p + "attn.hook_v"]
        k_used = cache[p + "attn.hook_k_smeared"] if cfg.smeared_keys else cache[p + "attn.hook_k"]
        if p + "attn.lse" in cache:      # the fused forward ran: its fused backward
            d_q, d_k, d_v = ops.fused_attention_backward(d_z, q, k_used, v, cache[p + "attn.hook_z"],
                                                         cache[p + "attn.lse"])
        else:                            # the reference's passes, from the pattern they made
            d_q, d_k, d_v = ops.attention_backward(d_z, q, k_used, v, cache[p + "attn.hook_pattern"])
        # forward: k' = smear(k)
        if cfg.smeared_keys:
            d_k, grads[p + "attn.smear"] = ops.smear_backward(d_k, cache[p + "attn.hook_k"],
                                                              params[p + "attn.smear"])
        # forward: q, k from qk_in; v from h
        x_in = cache[p + "hook_resid_pre"]
        h = cache[p + "ln1.hook_normalized"] if cfg.layernorm else x_in
        qk_in = h + params["pos_embed.W_pos"][:T] if cfg.positional == "shortformer" else h
        d_qk_in, grads[p + "attn.W_Q"] = ops.project_backward(d_q, qk_in, params[p + "attn.W_Q"])
        d_qk_k, grads[p + "attn.W_K"] = ops.project_backward(d_k, qk_in, params[p + "attn.W_K"])
        d_h, grads[p + "attn.W_V"] = ops.project_backward(d_v, h, params[p + "attn.W_V"])
        d_qk_in += d_qk_k
        # forward: qk_in = h + W_pos[:T] (shortformer) or h
        d_h += d_qk_in
        if cfg.positional == "shortformer":
            d_W_pos_rows += d_qk_in.sum(axis=0)
        # forward: h = LN1(x); and the residual x passes straight on
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


def _mlp_backward(d_x, params, cache, l: int, cfg: ModelConfig, ops, grads: dict):
    """Layer l's MLP in reverse: d loss / d hook_resid_post -> d loss / d hook_resid_mid,
    filling grads with the MLP's (and LN2's) parameters.  d_x [B,T,D] -> [B,T,D]"""
    p = f"blocks.{l}."
    # forward: x = x + mlp_out; the residual passes d_x through, and d_x reaches mlp_out
    # forward: mlp_out = post @ W_out + b_out
    d_post, grads[p + "mlp.W_out"], grads[p + "mlp.b_out"] = ops.linear_backward(
        d_x, cache[p + "mlp.hook_post"], params[p + "mlp.W_out"])          # [B,T,M]
    # forward: post = gelu(pre)
    d_pre = ops.gelu_backward(d_post, cache[p + "mlp.hook_pre"])            # [B,T,M]
    # forward: pre = h2 @ W_in + b_in
    x_mid = cache[p + "hook_resid_mid"]
    h2 = cache[p + "ln2.hook_normalized"] if cfg.layernorm else x_mid
    d_h2, grads[p + "mlp.W_in"], grads[p + "mlp.b_in"] = ops.linear_backward(
        d_pre, h2, params[p + "mlp.W_in"])                                  # [B,T,D]
    # forward: h2 = LN2(x) (or x)
    if cfg.layernorm:
        d_h2, grads[p + "ln2.w"], grads[p + "ln2.b"] = ops.layernorm_backward(
            d_h2, x_mid, cache[p + "ln2.hook_scale"], params[p + "ln2.w"])
    return d_x + d_h2


# --- entry points --------------------------------------------------------------------------

def run_with_cache(params, tokens, cfg: ModelConfig, backend: str = "numpy"):
    """Logits [B,T,V] and the full activation cache (TransformerLens names).

    Cache keys, per layer l: blocks.{l}.hook_resid_pre, blocks.{l}.ln1.hook_scale and
    .hook_normalized (LayerNorm only), blocks.{l}.attn.hook_q / hook_k / hook_v
    [B,T,H,E] (hook_k before smearing; blocks.{l}.attn.hook_k_smeared after it),
    hook_attn_scores and hook_pattern [B,H,T,T] (scores scaled by 1/sqrt(E) and -inf
    above the diagonal), hook_z [B,T,H,E], hook_result [B,T,H,D], blocks.{l}.hook_attn_out,
    blocks.{l}.hook_resid_post; with MLPs (d_mlp > 0) also blocks.{l}.hook_resid_mid
    (after the attention, before the MLP), blocks.{l}.ln2.hook_scale and .hook_normalized
    (LayerNorm only), blocks.{l}.mlp.hook_pre and .hook_post [B,T,M] (before and after
    the GELU) and blocks.{l}.hook_mlp_out [B,T,D]; and hook_embed, hook_pos_embed,
    hook_resid_final, ln_final.hook_scale, ln_final.hook_normalized.
    """
    ops = get_backend(backend)
    check_params(params, cfg)
    tokens = check_tokens(tokens, cfg)
    return forward(params, tokens, cfg, ops, keep="all")


def loss_and_grads(params, tokens, cfg: ModelConfig, backend: str = "numpy", *, check: bool = True):
    """Mean next-token cross-entropy and its gradient for every parameter.

    Returns (loss: float, grads: dict with the keys and shapes of params).
    check=False skips check_params (keys, shapes, dtype, finite values): for a training
    loop whose params only its own updates have changed since it checked them (0.1-0.3
    ms a step of small models, most of it the finiteness test).
    """
    ops = get_backend(backend)
    if check:
        check_params(params, cfg)
    tokens = check_tokens(tokens, cfg, min_len=2)
    if hasattr(ops, "fused_loss_and_grads") and ops.fused_step_applies(tokens):
        # the Numba backend's whole step in one kernel call per shard of the batch: these
        # same steps, written once more as a single jitted function (minih/kernels/step.py)
        loss, grads = ops.fused_loss_and_grads(params, tokens, cfg)
        return loss, {key: grads[key] for key in params}                # params' key order
    step = lambda t: _loss_and_grads(params, t, cfg, ops)               # noqa: E731
    if hasattr(ops, "over_batch_shards"):
        # the Numba backend's data parallelism: the loss is a mean over sequences, so it
        # computes fixed shards of the batch side by side, one thread each, and adds their
        # means weighted by size (minih/kernels/shards.py)
        return ops.over_batch_shards(step, tokens)
    return step(tokens)                                                 # the reference: plainly


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

    The loss at each prediction, before the mean over batch and positions; its mean is
    loss_fn.
    """
    ops = get_backend(backend)
    check_params(params, cfg)
    tokens = check_tokens(tokens, cfg, min_len=2)
    if hasattr(ops, "fused_per_token_losses") and ops.fused_step_applies(tokens):
        # the Numba backend: the whole-step kernel's forward, one call per shard
        return ops.fused_per_token_losses(params, tokens, cfg)
    logits, _ = forward(params, tokens, cfg, ops, keep="backward")
    return ops.per_token_loss(logits, tokens)
