"""Training presets: a model, its data and its schedule, known to work on a laptop CPU.

Each preset's evidence (when its induction head forms, in tokens and seconds on a
2-core machine, and the prefix-matching score it reaches) is in docs/03_training.md.

    minih.TrainConfig.preset("induction-2l")              # or: python -m minih train induction-2l

Why these settings (docs/03_training.md, "Finding fast settings"): a short context
(32) makes a step cheap (attention costs T^2); dense repeats with short segments
(4-14 tokens) put 2-7 repeats in every sequence, so almost every token rewards an
induction head; a small vocabulary (32) leaves fewer embeddings to learn; lr 3e-3
with token and position embeddings at std 1.0 gets there in ~200 steps.
"""
from __future__ import annotations

from ..config import ModelConfig
from ..data import MarkovChains, RepeatedTokens, StdlibText

_SMALL = ModelConfig(n_layers=2, n_heads=4, d_model=64, d_head=16, n_ctx=32, d_vocab=32)
_DENSE = RepeatedTokens(d_vocab=32, mode="dense", min_len=4, max_len=14)
_FAST = dict(steps=800, batch=32, lr=3e-3)

# name -> TrainConfig fields (minih/training/config.py turns each into a TrainConfig;
# lr is the optimizer's field, given by name as TrainConfig.replace allows)
PRESET_SETTINGS: dict[str, dict] = {
    # a 2-layer model forms an induction head (prefix matching of a layer-1 head > 0.5)
    "induction-2l": dict(model=_SMALL, data=_DENSE, **_FAST),
    # the same with one layer: no earlier head to K-compose with, so no induction head
    "induction-1l": dict(model=_SMALL.replace(n_layers=1), data=_DENSE, **_FAST),
    # one layer with smeared keys: the key already carries the previous token, so it can
    "smeared-1l": dict(model=_SMALL.replace(n_layers=1, smeared_keys=True), data=_DENSE, **_FAST),
    # real text: the Python standard library as bytes. A quarter of the training
    # sequences are a window of stdlib text repeated back to back: without them no
    # induction head formed in 10M tokens; with them one forms near 3.5M tokens
    # (docs/03_training.md, "Real text"). Evaluation is on plain held-out files.
    "stdlib-2l": dict(model=ModelConfig(n_layers=2, n_heads=4, d_model=64, d_head=16,
                                               n_ctx=128, d_vocab=256),
                             data=StdlibText(repeat_fraction=0.25), steps=5000, batch=16, lr=3e-3),
    # in-context Markov chains (Edelman et al. 2024): compare the loss to the Bayes floor
    "markov-2l": dict(model=_SMALL.replace(n_ctx=64, d_vocab=4), data=MarkovChains(d_vocab=4),
                             steps=800, batch=32, lr=3e-3),
}
