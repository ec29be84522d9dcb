"""TrainConfig: everything that decides a run's weights (with the seed), and its named presets.

    minih.TrainConfig.preset("induction-2l", steps=100)     # or: python -m minih train induction-2l
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ..config import ModelConfig
from ..data import RepeatedTokens, source_from_dict, source_to_dict
from ..optim import AdamWConfig
from .presets import PRESET_SETTINGS

SCHEDULES = ("constant", "cosine")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides the weights of a run (with the seed): model, data, schedule."""
    model: ModelConfig = field(default_factory=ModelConfig)
    data: object = field(default_factory=RepeatedTokens)   # a minih.data source
    steps: int = 1000            # optimizer steps
    batch: int = 64              # sequences per step
    seq_len: int = 0             # positions per sequence; 0 = model.n_ctx
    lr: float = 1e-3             # peak learning rate
    warmup: int = 0              # steps of linear warmup from lr/warmup to lr
    schedule: str = "constant"   # after warmup: "constant" or "cosine" (decay to min_lr_frac * lr)
    min_lr_frac: float = 0.1     # cosine only: final lr as a fraction of lr
    weight_decay: float = 0.01   # AdamW decoupled weight decay (matrices only, see optim.decays)
    beta1: float = 0.9
    beta2: float = 0.999
    grad_clip: float = 1.0       # max global gradient norm; 0 = no clipping
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
        for name in ("steps", "batch", "seq_len", "warmup", "seed", "n_eval", "eval_seed",
                     "log_snapshots", "linear_snapshots"):
            v = getattr(self, name)
            low = 1 if name in ("steps", "batch", "n_eval") else 0
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ValueError(f"TrainConfig.{name} must be an int >= {low}, got {v!r}")
        for name, ok, allowed in (("lr", self.lr > 0, "> 0"), ("min_lr_frac", 0 <= self.min_lr_frac <= 1, "in [0, 1]")):
            if not ok:
                raise ValueError(f"TrainConfig.{name} must be {allowed}, got {getattr(self, name)}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"TrainConfig.schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.seq_len > self.model.n_ctx:
            raise ValueError(f"TrainConfig.seq_len={self.seq_len} is longer than the model's n_ctx={self.model.n_ctx}")
        if self.seq_len == 1 or self.model.n_ctx < 2 and self.seq_len == 0:
            raise ValueError("TrainConfig.seq_len must be >= 2 (the loss predicts the next token)")
        if self.data.d_vocab > self.model.d_vocab:
            raise ValueError(f"the data has d_vocab={self.data.d_vocab} tokens but the model only "
                             f"d_vocab={self.model.d_vocab}; set the model's d_vocab to at least that")
        self.adamw()                                         # validates beta1, beta2, ... early

    @property
    def T(self) -> int:
        """Positions per training sequence."""
        return self.seq_len or self.model.n_ctx

    @property
    def tokens_per_step(self) -> int:
        return self.batch * self.T

    def adamw(self) -> AdamWConfig:
        return AdamWConfig(lr=self.lr, beta1=self.beta1, beta2=self.beta2,
                           weight_decay=self.weight_decay, grad_clip=self.grad_clip)

    def replace(self, **changes) -> "TrainConfig":
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ValueError(f"TrainConfig has no field(s) {sorted(unknown)}; fields are "
                             f"{[f.name for f in dataclasses.fields(self)]}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["model"] = self.model.to_dict()
        d["data"] = source_to_dict(self.data)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        d = dict(d)
        d["model"] = ModelConfig.from_dict(d["model"])
        d["data"] = source_from_dict(d["data"])
        return cls(**d)

    @classmethod
    def preset(cls, name: str, **changes) -> "TrainConfig":
        """A named training preset (minih/training/presets.py), with fields changed."""
        if name not in TRAIN_PRESETS:
            raise ValueError(f"unknown training preset {name!r}; presets are {sorted(TRAIN_PRESETS)}")
        return TRAIN_PRESETS[name].replace(**changes)


# name -> TrainConfig: the settings of minih/training/presets.py, validated once
TRAIN_PRESETS: dict[str, TrainConfig] = {name: TrainConfig(**settings)
                                         for name, settings in PRESET_SETTINGS.items()}
