"""TrainConfig: everything that decides a run's weights (with the seed), and its named presets.

    minih.TrainConfig.preset("induction-2l", steps=100)     # or: python -m minih train induction-2l
    tc.optim.lr                                              # the optimizer's settings: an AdamWConfig
    tc.replace(lr=1e-3)                                      # optimizer fields may be named directly

The optimizer's settings (lr, beta1, beta2, eps, weight_decay, grad_clip) are declared
once, in minih.optim.AdamWConfig, and a TrainConfig holds one as `optim`: the step
function takes exactly that object, so the loop cannot train with settings other than
the ones the run records. The schedule (warmup, cosine decay) stays here: it is about
the run's length, not about one update.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ..config import ModelConfig
from ..data import RepeatedTokens, source_from_dict, source_to_dict
from ..optim import AdamWConfig
from .presets import PRESET_SETTINGS

SCHEDULES = ("constant", "cosine")
OPTIM_FIELDS = tuple(f.name for f in dataclasses.fields(AdamWConfig))


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides the weights of a run (with the seed): model, data, optimizer, schedule."""
    model: ModelConfig = field(default_factory=ModelConfig)
    data: object = field(default_factory=RepeatedTokens)   # a minih.data source
    optim: AdamWConfig = field(default_factory=AdamWConfig)  # lr (the peak rate), betas, eps,
                                                             # weight_decay, grad_clip
    steps: int = 1000            # optimizer steps
    batch: int = 64              # sequences per step
    seq_len: int = 0             # positions per sequence; 0 = model.n_ctx
    warmup: int = 0              # steps of linear warmup from lr/warmup to lr
    schedule: str = "constant"   # after warmup: "constant" or "cosine" (decay to min_lr_frac * lr)
    min_lr_frac: float = 0.1     # cosine only: final lr as a fraction of lr
    seed: int = 0                # initial weights and the training batches
    n_eval: int = 64             # evaluation sequences (the same at every snapshot)
    eval_seed: int = 1_000_003   # seed of the evaluation set (fixed across training seeds,
                                 # so runs with different seeds are scored on the same data)
    log_snapshots: int = 40      # snapshots at log-spaced steps 1 .. steps
    linear_snapshots: int = 20   # snapshots at evenly spaced steps (plus step 0 and the last)

    def __post_init__(self):
        if not isinstance(self.model, ModelConfig):
            raise ValueError(f"TrainConfig.model must be a ModelConfig, got {type(self.model).__name__}")
        if not hasattr(self.data, "sample") or not hasattr(self.data, "d_vocab"):
            raise ValueError(f"TrainConfig.data must be a minih.data source, got {self.data!r}")
        if not isinstance(self.optim, AdamWConfig):
            raise ValueError(f"TrainConfig.optim must be a minih.AdamWConfig, got {type(self.optim).__name__}")
        for name in ("steps", "batch", "seq_len", "warmup", "seed", "n_eval", "eval_seed",
                     "log_snapshots", "linear_snapshots"):
            v = getattr(self, name)
            low = 1 if name in ("steps", "batch", "n_eval") else 0
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ValueError(f"TrainConfig.{name} must be an int >= {low}, got {v!r}")
        if not self.optim.lr > 0:
            raise ValueError(f"TrainConfig lr must be > 0, got {self.optim.lr}")
        frac = self.min_lr_frac
        if isinstance(frac, bool) or not isinstance(frac, (int, float)) or not 0 <= frac <= 1:
            raise ValueError(f"TrainConfig.min_lr_frac must be a number in [0, 1], got {frac!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"TrainConfig.schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.seq_len > self.model.n_ctx:
            raise ValueError(f"TrainConfig.seq_len={self.seq_len} is longer than the model's n_ctx={self.model.n_ctx}")
        if self.seq_len == 1 or self.model.n_ctx < 2 and self.seq_len == 0:
            raise ValueError("TrainConfig.seq_len must be >= 2 (the loss predicts the next token)")
        if self.data.d_vocab > self.model.d_vocab:
            raise ValueError(f"the data has d_vocab={self.data.d_vocab} tokens but the model only "
                             f"d_vocab={self.model.d_vocab}; set the model's d_vocab to at least that")

    @property
    def T(self) -> int:
        """Positions per training sequence."""
        return self.seq_len or self.model.n_ctx

    @property
    def tokens_per_step(self) -> int:
        return self.batch * self.T

    def replace(self, **changes) -> "TrainConfig":
        """A copy with fields changed (validated again). The optimizer's fields (lr, beta1,
        ...) may be given by name: replace(lr=1e-3) is replace(optim=AdamWConfig(lr=1e-3, ...))."""
        own = {f.name for f in dataclasses.fields(self)}
        unknown = set(changes) - own - set(OPTIM_FIELDS)
        if unknown:
            raise ValueError(f"TrainConfig has no field(s) {sorted(unknown)}; fields are "
                             f"{sorted(own)}, and the optimizer's {list(OPTIM_FIELDS)}")
        optim_changes = {k: changes.pop(k) for k in OPTIM_FIELDS if k in changes}
        if optim_changes:
            changes["optim"] = dataclasses.replace(changes.get("optim", self.optim), **optim_changes)
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["model"] = self.model.to_dict()
        d["data"] = source_to_dict(self.data)
        d["optim"] = self.optim.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """The TrainConfig of to_dict(d). Also reads the layout of older run directories,
        where lr, beta1, beta2, weight_decay and grad_clip sat beside steps. ValueError
        naming the field when something is missing or of the wrong kind."""
        if not isinstance(d, dict):
            raise ValueError(f"a TrainConfig must be a dict of its fields, got {type(d).__name__}")
        d = dict(d)
        optim = d.pop("optim", {})
        if not isinstance(optim, dict):
            raise ValueError(f"TrainConfig 'optim' must be a dict of AdamWConfig fields, got {optim!r}")
        optim = {**optim, **{k: d.pop(k) for k in OPTIM_FIELDS if k in d}}   # the older flat layout
        own = {f.name for f in dataclasses.fields(cls)} - {"optim"}
        missing, unknown = {"model", "data"} - set(d), set(d) - own
        unknown_optim = set(optim) - set(OPTIM_FIELDS)
        if missing or unknown or unknown_optim:
            raise ValueError(f"TrainConfig fields: missing {sorted(missing)}, unknown "
                             f"{sorted(unknown | unknown_optim)}")
        for name in ("model", "data"):
            if not isinstance(d[name], dict) or (name == "data" and "name" not in d[name]):
                raise ValueError(f"TrainConfig {name!r} must be a dict of its fields"
                                 f"{' with a name' if name == 'data' else ''}, got {d[name]!r}")
        try:
            return cls(model=ModelConfig.from_dict(d.pop("model")), data=source_from_dict(d.pop("data")),
                       optim=AdamWConfig(**optim), **d)
        except TypeError as e:                  # e.g. a number where a data option wants a string
            raise ValueError(f"TrainConfig: {e}") from None

    @classmethod
    def preset(cls, name: str, **changes) -> "TrainConfig":
        """A named training preset (minih/training/presets.py), with fields changed."""
        if name not in TRAIN_PRESETS:
            raise ValueError(f"unknown training preset {name!r}; presets are {sorted(TRAIN_PRESETS)}")
        return TRAIN_PRESETS[name].replace(**changes)


# name -> TrainConfig: the settings of minih/training/presets.py, validated once
TRAIN_PRESETS: dict[str, TrainConfig] = {name: TrainConfig().replace(**settings)
                                         for name, settings in PRESET_SETTINGS.items()}
