"""Parameters: a flat dict of NumPy arrays with TransformerLens names.

The same keys and shapes serve for gradients, optimizer state and snapshot files
(docs/01_notation.md, "Config and parameters"). Shapes, with the legend used across minih:

    V = d_vocab, N = n_ctx, D = d_model, H = n_heads, E = d_head, M = d_mlp

    embed.W_E               [V, D]
    pos_embed.W_pos         [N, D]
    blocks.{l}.ln1.w / .b   [D]        (layernorm only)
    blocks.{l}.attn.W_Q     [H, D, E]  (also W_K, W_V)
    blocks.{l}.attn.W_O     [H, E, D]
    blocks.{l}.attn.smear   [H]        (smeared_keys only)
    blocks.{l}.ln2.w / .b   [D]        (d_mlp > 0 and layernorm only)
    blocks.{l}.mlp.W_in     [D, M]     (d_mlp > 0 only)
    blocks.{l}.mlp.b_in     [M]        (d_mlp > 0 only)
    blocks.{l}.mlp.W_out    [M, D]     (d_mlp > 0 only)
    blocks.{l}.mlp.b_out    [D]        (d_mlp > 0 only)
    ln_final.w / .b         [D]        (layernorm only)
    unembed.W_U             [D, V]
"""
from __future__ import annotations

import numpy as np

from .config import ModelConfig, check_int


def check_config(cfg, name: str = "cfg") -> ModelConfig:
    """Raise ValueError unless `cfg` is a ModelConfig (e.g. ModelConfig.preset("tiny"))."""
    if not isinstance(cfg, ModelConfig):
        raise ValueError(f"{name} must be a ModelConfig, e.g. minih.ModelConfig.preset('tiny'), "
                         f"got {type(cfg).__name__}")
    return cfg


def param_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Every parameter key of a model with this config, with its shape, in a fixed order."""
    V, N, D, H, E = cfg.d_vocab, cfg.n_ctx, cfg.d_model, cfg.n_heads, cfg.d_head
    shapes = {"embed.W_E": (V, D), "pos_embed.W_pos": (N, D)}
    for l in range(cfg.n_layers):
        if cfg.layernorm:
            shapes[f"blocks.{l}.ln1.w"] = (D,)
            shapes[f"blocks.{l}.ln1.b"] = (D,)
        for name in ("W_Q", "W_K", "W_V"):
            shapes[f"blocks.{l}.attn.{name}"] = (H, D, E)
        shapes[f"blocks.{l}.attn.W_O"] = (H, E, D)
        if cfg.smeared_keys:
            shapes[f"blocks.{l}.attn.smear"] = (H,)
        if cfg.d_mlp:
            M = cfg.d_mlp
            if cfg.layernorm:
                shapes[f"blocks.{l}.ln2.w"] = (D,)
                shapes[f"blocks.{l}.ln2.b"] = (D,)
            shapes.update({f"blocks.{l}.mlp.W_in": (D, M), f"blocks.{l}.mlp.b_in": (M,),
                           f"blocks.{l}.mlp.W_out": (M, D), f"blocks.{l}.mlp.b_out": (D,)})
    if cfg.layernorm:
        shapes["ln_final.w"] = (D,)
        shapes["ln_final.b"] = (D,)
    shapes["unembed.W_U"] = (D, V)
    return shapes


def init_params(cfg: ModelConfig, seed: int | np.random.Generator = 0) -> dict[str, np.ndarray]:
    """Fresh parameters for `cfg`, drawn from N(0, std^2) with the config's scales.

    Defaults (ModelConfig): W_E std `init_embed_std` (1.0), W_pos std `init_pos_std`
    (1.0), W_Q/W_K/W_V std 1/sqrt(d_model), W_O std 1/sqrt(n_heads*d_head), W_U std
    1/sqrt(d_model), MLP W_in std 1/sqrt(d_model) and W_out std 1/sqrt(d_mlp) (fan-in
    scaling: each projection keeps unit-scale inputs at unit scale; the init_* fields
    override them), LayerNorm w = 1, LayerNorm and MLP biases 0, smear logits =
    `smear_init` (0: s = 0.5).
    The embedding scales matter for the science: see docs/03_training.md.
    """
    check_config(cfg)
    if not isinstance(seed, np.random.Generator):
        seed = np.random.default_rng(check_int(seed, "seed", minimum=0))
    rng = seed
    dtype = np.dtype(cfg.dtype)
    std_attn = cfg.init_attn_std or 1.0 / np.sqrt(cfg.d_model)
    std_out = cfg.init_out_std or 1.0 / np.sqrt(cfg.n_heads * cfg.d_head)
    std_unembed = cfg.init_unembed_std or 1.0 / np.sqrt(cfg.d_model)
    std_mlp_in = cfg.init_mlp_in_std or 1.0 / np.sqrt(cfg.d_model)
    std_mlp_out = cfg.init_mlp_out_std or (1.0 / np.sqrt(cfg.d_mlp) if cfg.d_mlp else 0.0)
    params = {}
    for key, shape in param_shapes(cfg).items():
        name = key.rsplit(".", 1)[-1]
        if name == "w":
            value = np.ones(shape)
        elif name in ("b", "b_in", "b_out"):
            value = np.zeros(shape)
        elif name == "smear":
            value = np.full(shape, float(cfg.smear_init))
        else:
            std = {"W_E": cfg.init_embed_std, "W_pos": cfg.init_pos_std, "W_Q": std_attn,
                   "W_K": std_attn, "W_V": std_attn, "W_O": std_out, "W_U": std_unembed,
                   "W_in": std_mlp_in, "W_out": std_mlp_out}[name]
            value = rng.standard_normal(shape) * std
            if name == "W_pos" and cfg.init_pos == "sinusoidal":
                value = sinusoidal_positions(*shape) * std   # drawn above all the same, so the
                                                             # other weights match a "normal" run
        params[key] = value.astype(dtype)
    return params


def sinusoidal_positions(n_ctx: int, d_model: int, base: float = 10_000.0) -> np.ndarray:
    """[n_ctx, d_model] sines and cosines of the position, each column with std ~1.

    Column 2k is sin(i / base^(2k/d)), column 2k+1 the cosine at the same frequency
    (Vaswani et al. 2017), times sqrt(2) so that a column has mean square 1 like a
    N(0, 1) draw. Why it can help: a fixed offset (the previous token) is then the same
    rotation of every position's code, one linear map for the QK circuit to learn,
    instead of a pattern to carve into n_ctx independent random vectors.
    """
    i = np.arange(n_ctx)[:, None]                                         # [N,1]
    freq = base ** (-(np.arange(d_model) // 2 * 2) / d_model)[None, :]    # [1,D]
    angle = i * freq                                                      # [N,D]
    return np.sqrt(2.0) * np.where(np.arange(d_model) % 2 == 0, np.sin(angle), np.cos(angle))


def check_params(params: dict, cfg: ModelConfig) -> None:
    """Raise ValueError if `params` does not match `cfg` exactly (keys, shapes, dtype) or
    holds a NaN or an infinite value."""
    check_config(cfg)
    if not isinstance(params, dict):
        raise ValueError(f"params must be a dict of arrays, got {type(params).__name__}")
    shapes = param_shapes(cfg)
    missing = [k for k in shapes if k not in params]
    if missing:
        raise ValueError(f"params is missing key(s) {missing} required by the config "
                         f"(n_layers={cfg.n_layers}, layernorm={cfg.layernorm}, "
                         f"smeared_keys={cfg.smeared_keys}, d_mlp={cfg.d_mlp})")
    extra = [k for k in params if k not in shapes]
    if extra:
        raise ValueError(f"params has key(s) {extra} that this config does not use "
                         f"(n_layers={cfg.n_layers}, layernorm={cfg.layernorm}, "
                         f"smeared_keys={cfg.smeared_keys}, d_mlp={cfg.d_mlp})")
    for key, shape in shapes.items():
        value = params[key]
        if not isinstance(value, np.ndarray):
            raise ValueError(f"params[{key!r}] must be a numpy array, got {type(value).__name__}")
        if value.shape != shape:
            raise ValueError(f"params[{key!r}] has shape {value.shape}, expected {shape}")
        if value.dtype != np.dtype(cfg.dtype):
            raise ValueError(f"params[{key!r}] has dtype {value.dtype}, but the config says "
                             f"dtype={cfg.dtype!r}; convert with .astype({cfg.dtype!r})")
        if not np.isfinite(value).all():
            bad = np.argwhere(~np.isfinite(value))[0]
            raise ValueError(f"params[{key!r}] holds {int((~np.isfinite(value)).sum())} non-finite "
                             f"value(s) (NaN or inf), the first {value[tuple(bad)]} at index "
                             f"{tuple(int(i) for i in bad)}; parameters must be finite")


def check_tokens(tokens, cfg: ModelConfig, min_len: int = 1) -> np.ndarray:
    """Return `tokens` as an int array [batch, T] or raise ValueError saying what is wrong."""
    check_config(cfg)
    try:
        arr = np.asarray(tokens)
    except ValueError:                     # ragged nested lists
        raise ValueError("tokens must be a rectangular [batch, T] array of integers; "
                         "the sequences given have different lengths") from None
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.integer) or arr.size == 0):
        raise ValueError(f"tokens must be integers, got dtype {arr.dtype}")
    if arr.ndim != 2:
        hint = "; pass tokens[None] for a single sequence" if arr.ndim == 1 else ""
        raise ValueError(f"tokens must have shape [batch, T], got shape {arr.shape}{hint}")
    batch, T = arr.shape
    if batch < 1:
        raise ValueError(f"tokens must hold at least one sequence, got shape {arr.shape}")
    if T < min_len:
        raise ValueError(f"tokens need at least {min_len} position(s) here, got T={T}"
                         + (" (the loss needs a next token to predict)" if min_len == 2 else ""))
    if T > cfg.n_ctx:
        raise ValueError(f"sequence length T={T} is longer than n_ctx={cfg.n_ctx}")
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0 or hi >= cfg.d_vocab:
        bad = lo if lo < 0 else hi
        raise ValueError(f"token value {bad} is outside [0, d_vocab) = [0, {cfg.d_vocab})")
    return arr.astype(np.int64, copy=False)
