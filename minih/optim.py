"""AdamW on the params dict, with global-norm gradient clipping, and one training step.

The optimizer state is a plain dict with the params' keys (`m`, `v`) and a step
counter, so it is saved in checkpoints exactly like the params.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import ModelConfig
from .model import get_backend, loss_and_grads


@dataclass(frozen=True)
class AdamWConfig:
    lr: float = 1e-3             # peak learning rate (schedules scale it per step)
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.01   # decoupled; applied to matrices only (see decays())
    grad_clip: float = 1.0       # max global L2 norm of the gradient; 0 disables clipping

    def __post_init__(self):
        checks = {"lr": self.lr >= 0, "beta1": 0 <= self.beta1 < 1, "beta2": 0 <= self.beta2 < 1,
                  "eps": self.eps > 0, "weight_decay": self.weight_decay >= 0,
                  "grad_clip": self.grad_clip >= 0}
        allowed = {"lr": ">= 0", "beta1": "in [0, 1)", "beta2": "in [0, 1)", "eps": "> 0",
                   "weight_decay": ">= 0", "grad_clip": ">= 0 (0 = off)"}
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"AdamWConfig.{name} must be {allowed[name]}, got {getattr(self, name)}")


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
    """sqrt(sum of squares of every gradient entry), accumulated in float64."""
    return float(np.sqrt(sum(float(np.vdot(g, g)) for g in grads.values())))


def adamw_step(params: dict, grads: dict, state: dict, opt: AdamWConfig, lr: float | None = None,
               backend: str = "numpy") -> float:
    """Update params and state in place; return the gradient norm before clipping.

    Clipping: if the global norm exceeds opt.grad_clip, every gradient is scaled by
    grad_clip / norm (folded into the update, so grads are not modified).
    """
    ops = get_backend(backend)
    lr = opt.lr if lr is None else lr
    norm = global_norm(grads)
    scale = opt.grad_clip / norm if opt.grad_clip and norm > opt.grad_clip else 1.0
    state["step"] += 1
    for key, p in params.items():
        ops.adamw_update(p, grads[key], state["m"][key], state["v"][key], lr, opt.beta1, opt.beta2,
                         opt.eps, opt.weight_decay if decays(key, p) else 0.0, state["step"], scale)
    return norm


def train_step(params: dict, state: dict, tokens, cfg: ModelConfig, opt: AdamWConfig,
               lr: float | None = None, backend: str = "numpy") -> tuple[float, float]:
    """One training step on a batch: loss, gradients, AdamW update. Returns (loss, grad_norm)."""
    loss, grads = loss_and_grads(params, tokens, cfg, backend=backend)
    norm = adamw_step(params, grads, state, opt, lr=lr, backend=backend)
    return loss, norm
