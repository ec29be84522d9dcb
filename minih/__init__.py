"""minih: watch induction heads form, on a CPU, in code you can read.

Public entry points (docs/01_notation.md):
    cfg = minih.ModelConfig(...)            or minih.ModelConfig.preset("small")
    params = minih.init_params(cfg, seed)
    logits, cache = minih.run_with_cache(params, tokens, cfg, backend="numpy")
    loss, grads = minih.loss_and_grads(params, tokens, cfg, backend="numpy")
"""
from .version import __version__

from .config import ModelConfig, PRESETS
from .params import init_params, param_shapes, check_params, check_tokens
from .model import run_with_cache, loss_and_grads, loss_fn, per_token_losses, BACKENDS
from .optim import AdamWConfig, adamw_init, adamw_step, train_step
from .gradcheck import gradcheck
from .training import run
from .training.run import load_run, Run, RunWriter
from .training.config import TrainConfig
from .training.loop import train, TrainingDiverged
from . import data
from .interp import metrics, handbuilt
from .interp.analysis import analyze, Analysis
