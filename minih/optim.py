"""AdamW on the params dict, with global-norm gradient clipping, and one training step.

    opt = AdamWConfig(lr=3e-3)                      # the optimizer's settings, in one place
    state = adamw_init(params)
    loss, norm = train_step(params, state, tokens, cfg, opt, lr=3e-3)   # lr: this step's rate

The optimizer state is a plain dict with the params' keys (`m`, `v`) and a step
counter, so it is saved in checkpoints exactly like the params.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .config import ModelConfig
from .model import get_backend, loss_and_grads


@dataclass(frozen=True)
class AdamWConfig:
    lr: float = 1e-3             # peak learning rate (a schedule scales it per step)
    beta1: float = 0.9           # decay of the first moment (mean of the gradient)
    beta2: float = 0.999         # decay of the second moment (mean of its square)
    eps: float = 1e-8            # added to sqrt(v): keeps tiny second moments from exploding
    weight_decay: float = 0.01   # decoupled; applied to matrices only (see decays())
    grad_clip: float = 1.0       # max global L2 norm of the gradient; 0 disables clipping

    def __post_init__(self):
        rules = {"lr": (lambda x: x >= 0, ">= 0"), "beta1": (lambda x: 0 <= x < 1, "in [0, 1)"),
                 "beta2": (lambda x: 0 <= x < 1, "in [0, 1)"), "eps": (lambda x: x > 0, "> 0"),
                 "weight_decay": (lambda x: x >= 0, ">= 0"),
                 "grad_clip": (lambda x: x >= 0, ">= 0 (0 = off)")}
        for name, (ok, allowed) in rules.items():
            value = getattr(self, name)
            # NaN fails every comparison and inf passes ">= 0": both are refused here,
            # so a bad value is named now rather than blamed on the lr when training diverges
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not math.isfinite(value) or not ok(value):
                raise ValueError(f"AdamWConfig.{name} must be {allowed} (a finite number), got {value!r}")

    def to_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def decays(key: str, value: np.ndarray) -> bool:
    """Weight decay applies to matrices (embeddings, W_Q/K/V/O, W_U), not to LayerNorm
    gains and biases nor to smear logits: nanoGPT's rule (decay iff ndim >= 2). (minGPT
    also exempts the embeddings; minih decays them, as nanoGPT does.)"""
    return value.ndim >= 2


def adamw_init(params: dict) -> dict:
    """Fresh optimizer state: zero first and second moments, step 0."""
    return {"step": 0,
            "m": {k: np.zeros_like(v) for k, v in params.items()},
            "v": {k: np.zeros_like(v) for k, v in params.items()}}


def global_norm(grads: dict) -> float:
    """sqrt(sum of squares of every gradient entry), accumulated in float64.

    NaN or inf if any entry is (float32 squares cannot overflow a float64 sum).
    """
    return float(np.sqrt(sum(float(np.vdot(g, g)) for g in grads.values())))


def adamw_step(params: dict, grads: dict, state: dict, opt: AdamWConfig, lr: float | None = None,
               backend: str = "numpy") -> float:
    """Update params and state in place; return the gradient norm before clipping.

    Clipping: if the global norm exceeds opt.grad_clip, every gradient is scaled by
    grad_clip / norm (folded into the update, so grads are not modified).
    A NaN or inf gradient would turn every weight NaN: then nothing is updated (params
    and state stay as they were) and the non-finite norm is returned for the caller.
    """
    ops = get_backend(backend)
    lr = opt.lr if lr is None else lr
    norm = global_norm(grads)
    if not math.isfinite(norm):
        return norm
    scale = opt.grad_clip / norm if opt.grad_clip and norm > opt.grad_clip else 1.0
    state["step"] += 1
    for key, p in params.items():
        ops.adamw_update(p, grads[key], state["m"][key], state["v"][key], lr, opt.beta1, opt.beta2,
                         opt.eps, opt.weight_decay if decays(key, p) else 0.0, state["step"], scale)
    return norm


def train_step(params: dict, state: dict, tokens, cfg: ModelConfig, opt: AdamWConfig,
               lr: float | None = None, backend: str = "numpy", *,
               check: bool = True) -> tuple[float, float]:
    """One training step on a batch [B, T]: loss, gradients, AdamW update at `lr`
    (default opt.lr; a schedule passes the step's rate). Returns (loss, grad_norm).

    If the loss or the gradient norm is not finite, params and state are left as they
    were: check both and stop (minih.train raises TrainingDiverged). check=False skips
    the check of params (model.loss_and_grads): minih.train checks them once, before
    its first step.
    """
    # overflow warnings are silenced: a non-finite loss or norm is returned instead
    with np.errstate(over="ignore", invalid="ignore"):
        loss, grads = loss_and_grads(params, tokens, cfg, backend=backend, check=check)
    if not math.isfinite(loss):
        return loss, float("nan")
    return loss, adamw_step(params, grads, state, opt, lr=lr, backend=backend)
