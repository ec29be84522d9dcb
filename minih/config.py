"""ModelConfig: the one frozen dataclass that describes a model, plus named presets.

The fields and their meaning are minih's public contract (docs/01_notation.md), with
TransformerLens' names where it has one; the initialisation fields (``init_*``, ``smear_init``) are minih's additions, because
the initial scales decide whether induction heads form at all (docs/03_training.md).
"""
from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass

POSITIONAL_MODES = ("shortformer", "standard")
DTYPES = ("float32", "float64")
POS_INITS = ("normal", "sinusoidal")


def check_int(value, name: str, minimum: int | None = None) -> int:
    """`value` as a Python int (NumPy integers accepted), or ValueError naming `name`.

    bool is refused (True is not a size), and so are floats, even whole ones."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an int, got {value!r} ({type(value).__name__})")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def check_number(value, name: str, minimum: float | None = None) -> float:
    """`value` as a finite Python float (ints and NumPy numbers accepted), or ValueError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


@dataclass(frozen=True)
class ModelConfig:
    n_layers: int = 2            # attention layers; 0 = the direct path W_E -> W_U only
    n_heads: int = 4             # heads per layer
    d_model: int = 64            # residual stream width
    d_head: int = 16             # width of one head's query/key/value space
    n_ctx: int = 128             # longest sequence the model accepts (rows of W_pos)
    d_vocab: int = 256           # vocabulary size (256 = bytes)
    layernorm: bool = True       # pre-LN before every attention layer and before W_U
    positional: str = "shortformer"  # "shortformer": W_pos enters queries and keys only;
                                     # "standard": W_pos is added to the residual stream once
    smeared_keys: bool = False   # per-head learned smearing of each key with the previous one
    d_mlp: int = 0               # width of each layer's MLP (after its attention); 0 = attention-only
    dtype: str = "float32"       # "float32" (training) or "float64" (gradient checks)
    # --- initialisation (minih's additions; see docs/03_training.md for why) ---
    init_embed_std: float = 1.0  # std of W_E. 1.0 keeps token identity visible in the
                                 # residual stream next to the heads' writes; GPT-2's 0.02
                                 # delayed the induction head 2-2.3x in the induction-2l
                                 # preset (docs/03_training.md) and, in a slower PyTorch
                                 # setting tried before minih, prevented it for 16M tokens.
    init_pos_std: float = 1.0    # std of W_pos (same scale as the tokens it is added to)
    init_pos: str = "normal"     # "normal": W_pos ~ N(0, init_pos_std^2); "sinusoidal": sines and
                                 # cosines of the position at geometric frequencies (Vaswani et
                                 # al. 2017), scaled to std init_pos_std, then trained as usual
    init_attn_std: float = 0.0   # std of W_Q, W_K, W_V; 0 means 1/sqrt(d_model) (fan-in)
    init_out_std: float = 0.0    # std of W_O; 0 means 1/sqrt(n_heads * d_head) (fan-in)
    init_unembed_std: float = 0.0  # std of W_U; 0 means 1/sqrt(d_model) (fan-in)
    init_mlp_in_std: float = 0.0   # std of each MLP's W_in; 0 means 1/sqrt(d_model) (fan-in)
    init_mlp_out_std: float = 0.0  # std of each MLP's W_out; 0 means 1/sqrt(d_mlp) (fan-in)
    smear_init: float = 0.0      # initial smear logit alpha; s = sigmoid(alpha) = 0.5 at 0

    def __post_init__(self):
        positive = ("n_heads", "d_model", "d_head", "n_ctx", "d_vocab")
        for name in positive + ("n_layers", "d_mlp"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise ValueError(f"ModelConfig.{name} must be an int, got {value!r}")
            object.__setattr__(self, name, int(value))      # NumPy integers become ints
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"ModelConfig.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("n_layers", "d_mlp"):
            if getattr(self, name) < 0:
                raise ValueError(f"ModelConfig.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("layernorm", "smeared_keys"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"ModelConfig.{name} must be True or False, got {getattr(self, name)!r}")
        if self.positional not in POSITIONAL_MODES:
            raise ValueError(f"ModelConfig.positional must be one of {POSITIONAL_MODES}, "
                             f"got {self.positional!r}")
        if self.init_pos not in POS_INITS:
            raise ValueError(f"ModelConfig.init_pos must be one of {POS_INITS}, got {self.init_pos!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"ModelConfig.dtype must be one of {DTYPES}, got {self.dtype!r}")
        for name in ("init_embed_std", "init_pos_std", "init_attn_std", "init_out_std",
                     "init_unembed_std", "init_mlp_in_std", "init_mlp_out_std"):
            value = getattr(self, name)
            if not _is_finite_number(value) or not value >= 0:
                raise ValueError(f"ModelConfig.{name} must be a number >= 0 (finite), got {value!r}")
            object.__setattr__(self, name, float(value))    # NumPy floats become floats
        if not _is_finite_number(self.smear_init):
            raise ValueError(f"ModelConfig.smear_init must be a finite number, got {self.smear_init!r}")
        object.__setattr__(self, "smear_init", float(self.smear_init))

    def replace(self, **changes) -> "ModelConfig":
        """A copy with some fields changed (validated again)."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ValueError(f"ModelConfig has no field(s) {sorted(unknown)}; "
                             f"fields are {[f.name for f in dataclasses.fields(self)]}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        if not isinstance(d, dict):
            raise ValueError(f"ModelConfig.from_dict expects a dict of fields, got {type(d).__name__}")
        return cls().replace(**d)

    @classmethod
    def preset(cls, name: str, **overrides) -> "ModelConfig":
        """A named preset (see PRESETS), optionally with fields overridden."""
        if not isinstance(name, str) or name not in PRESETS:
            raise ValueError(f"unknown model preset {name!r}; presets are {sorted(PRESETS)}")
        return cls().replace(**{**PRESETS[name], **overrides})   # unknown fields: a ValueError


def _is_finite_number(value) -> bool:
    """An int or float that is neither NaN nor infinite (an init std of inf or NaN would
    only show up later, as a diverged run blamed on the learning rate)."""
    return (not isinstance(value, bool) and isinstance(value, numbers.Real)
            and math.isfinite(value))                      # NumPy numbers too


# Named model shapes. Training presets (data, steps, learning rate) live in
# minih/training/presets.py; these are only the architectures.
PRESETS: dict[str, dict] = {
    # a model small enough for finite differences in a fraction of a second
    "tiny": dict(n_layers=2, n_heads=2, d_model=8, d_head=4, n_ctx=6, d_vocab=11),
    # SMALL: the benchmark's small shape (docs/04_numba.md) / the dense-repeat phase-change model
    "small": dict(n_layers=2, n_heads=4, d_model=64, d_head=16, n_ctx=128, d_vocab=64),
    # REF: the benchmark's reference shape (speed against PyTorch, docs/04_numba.md)
    "ref": dict(n_layers=2, n_heads=8, d_model=128, d_head=16, n_ctx=256, d_vocab=256),
}
