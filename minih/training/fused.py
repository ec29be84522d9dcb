"""Training with the numba backend's whole-step kernel, the weights kept in its layout.

`optim.train_step` works on the params dict: each step lays the weights out for the
kernel (kernels/step.py's `stacked`), turns the flat gradients back into the params'
shapes and updates each parameter with its own AdamW call. On the reproduction's small
models that was 11-18% of a step on one thread (docs/04_numba.md). `FusedTraining` keeps
the weights and AdamW's moments for the whole run in the kernel's layout, in three flat
arrays (`stacked_raw`: the gradients' own layout);
`minih.train` uses it with the numba backend and writes the weights back into the
params dict before every snapshot and checkpoint (`sync`). AdamW then makes one call
per weight of that layout (up to 18, each stacked over the layers) instead of one per
parameter (11 to 41 for the reproduction's models).

The steps are the same bits as `train_step`'s: the same kernel and gradients, the
gradient norm summed per parameter in the params' order as `optim.global_norm` does,
and AdamW's arithmetic on each number unchanged (tests/test_fused_training.py).
"""
from __future__ import annotations

import math

import numpy as np

from ..config import ModelConfig
from ..kernels.adamw import _adamw_update
from ..kernels.step import flat_loss_and_grads, fused_step_applies, gated, stacked_raw, unstacked
from ..model import check_tokens
from ..optim import AdamWConfig, decays, global_norm


class FusedTraining:
    """The params, AdamW's moments and its step count, in the whole-step kernel's layout.

        fused = FusedTraining(params, opt_state, cfg)
        loss, norm = fused.step(tokens, opt, lr)          # as optim.train_step(..., lr=lr)
        fused.sync(params, opt_state)                      # the dicts, up to date

    The same bits as train_step with the numba backend where the whole-step kernel
    applies (FusedTraining.applies(B, T); elsewhere train_step runs op by op). Between
    syncs the dicts are not read: a change made to them is lost at the next sync.
    """

    @staticmethod
    def applies(batch: int, T: int) -> bool:
        """Whether a batch of that shape runs the whole-step kernel (fused_step_applies)."""
        return fused_step_applies(np.broadcast_to(0, (batch, T)))

    def __init__(self, params: dict, opt_state: dict, cfg: ModelConfig):
        self.cfg, self.keys, self.step_count = cfg, list(params), int(opt_state["step"])
        layout = stacked_raw(params, cfg, copy=True)
        self.shapes = [a.shape for a in layout]
        sizes = [a.size for a in layout]
        self.bounds = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.W = np.concatenate([a.ravel() for a in layout])                  # the weights
        self.M = np.concatenate([a.ravel() for a in stacked_raw(opt_state["m"], cfg, copy=True)])
        self.V = np.concatenate([a.ravel() for a in stacked_raw(opt_state["v"], cfg, copy=True)])
        self.weights = self._views(self.W)                                    # views of W
        # which weights AdamW decays: optim.decays of the params each one holds (found by
        # laying out each weight's index and reading it back in the params' shapes)
        marks = np.repeat(np.arange(len(sizes)), sizes).astype(self.W.dtype)
        decayed = {int(m.flat[0]): decays(key, params[key])
                   for key, m in unstacked(marks, layout, cfg).items() if m.size}
        self.segments = [((int(a), int(b)), decayed[i])                   # (not the zeros that
                         for i, (a, b) in enumerate(zip(self.bounds, self.bounds[1:]))
                         if i in decayed]                                 # stand for no smear)

    def _views(self, flat) -> list:
        return [flat[a:b].reshape(shape) for a, b, shape in zip(self.bounds, self.bounds[1:], self.shapes)]

    def step(self, tokens, opt: AdamWConfig, lr: float | None = None) -> tuple[float, float]:
        """optim.train_step(..., lr=lr): (loss, gradient norm); nothing changes when either
        is not finite. The tokens are checked (the kernel itself does not check them)."""
        tokens = check_tokens(tokens, self.cfg, min_len=2)                    # [B, T]
        lr = opt.lr if lr is None else lr
        weights = gated(self.weights, self.cfg)                               # s = sigmoid(smear)
        with np.errstate(over="ignore", invalid="ignore"):
            loss, G = flat_loss_and_grads(weights, tokens, self.cfg)
        if not math.isfinite(loss):
            return loss, float("nan")
        grads = unstacked(G, weights, self.cfg)                               # the params' shapes
        norm = global_norm({key: grads[key] for key in self.keys})           # in the params' order
        if not math.isfinite(norm):
            return loss, norm
        scale = opt.grad_clip / norm if opt.grad_clip and norm > opt.grad_clip else 1.0
        self.step_count += 1
        f = self.W.dtype.type                                                 # as adamw_update
        hyper = (f(lr), f(opt.beta1), f(opt.beta2), f(opt.eps))
        bias = (f(1 - opt.beta1 ** self.step_count), f(1 - opt.beta2 ** self.step_count), f(scale))
        # one call per weight of the layout (18 at most, each stacked over the layers), to
        # the function adamw_update calls, which rounds each number alike wherever it sits
        for (a, b), decayed in self.segments:
            _adamw_update(self.W[a:b], G[a:b], self.M[a:b], self.V[a:b], *hyper,
                          f(opt.weight_decay if decayed else 0.0), *bias)
        return loss, norm

    def sync(self, params: dict, opt_state: dict) -> None:
        """Write the weights, moments and step count into the dicts, in place."""
        for flat, tree in ((self.W, params), (self.M, opt_state["m"]), (self.V, opt_state["v"])):
            values = unstacked(flat, self.weights, self.cfg)
            for key in self.keys:
                np.copyto(tree[key], values[key])
        opt_state["step"] = self.step_count
