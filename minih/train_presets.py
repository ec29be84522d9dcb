"""Training presets: a model, its data and its schedule, known to work on a laptop CPU.

Each preset's evidence (when its induction head forms, in tokens and seconds on a
2-core machine, and the prefix-matching score it reaches) is in docs/03_training.md.

    minih.TrainConfig.preset("induction-2l")              # or: python -m minih train induction-2l
"""
from __future__ import annotations

from .config import ModelConfig
from .data import MarkovChains, RepeatedTokens, StdlibText
from .train import TrainConfig

# the 2-layer model of the dense-repeat experiments, shortened to 64 positions
_SMALL = ModelConfig(n_layers=2, n_heads=4, d_model=64, d_head=16, n_ctx=64, d_vocab=64)
_DENSE = RepeatedTokens(d_vocab=64, mode="dense", min_len=8, max_len=30)

TRAIN_PRESETS: dict[str, TrainConfig] = {
    # a 2-layer model forms an induction head (prefix matching of a layer-1 head > 0.5)
    "induction-2l": TrainConfig(model=_SMALL, data=_DENSE, steps=1500, batch=32, lr=1e-3),
    # the same with one layer: no earlier head to K-compose with, so no induction head
    "induction-1l": TrainConfig(model=_SMALL.replace(n_layers=1), data=_DENSE, steps=1500,
                                batch=32, lr=1e-3),
    # one layer with smeared keys: the key already carries the previous token, so it can
    "smeared-1l": TrainConfig(model=_SMALL.replace(n_layers=1, smeared_keys=True), data=_DENSE,
                              steps=1500, batch=32, lr=1e-3),
    # real text: the Python standard library as bytes
    "stdlib-2l": TrainConfig(model=ModelConfig(n_layers=2, n_heads=4, d_model=64, d_head=16,
                                               n_ctx=128, d_vocab=256),
                             data=StdlibText(), steps=3000, batch=32, lr=1e-3),
    # in-context Markov chains (Edelman et al. 2024): compare the loss to the Bayes floor
    "markov-2l": TrainConfig(model=_SMALL.replace(d_vocab=8), data=MarkovChains(d_vocab=8),
                             steps=1500, batch=32, lr=1e-3),
}
