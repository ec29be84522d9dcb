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
from ..data import BPEText, MarkovChains, RepeatedTokens, StdlibText

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
    # three layers: the induction head may sit in layer 1 or 2
    "induction-3l": dict(model=_SMALL.replace(n_layers=3), data=_DENSE, **_FAST),
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

# --- plain real text: BPE tokens of the stdlib with its tests, no repeats added ---------
# An ordinary language model on the stdlib's code (tests included) as 1024 BPE tokens
# forms an induction head with a phase change (prefix matching 0.5 at step 8000 with
# seed 0 and step 5000 with seed 1; ICL score down ~0.4-0.5 nats; docs/real_text_
# experiments.md). What it takes: many small steps (batch 4 x 256 tokens: the optimizer
# step, not the token, is the clock) at lr 1e-2, and sinusoidal initial positions: with
# N(0, 1) positions the first previous-token head grew in layer 1 for seeds 1 and 2 (no
# induction head then), in layer 0 only for seed 0. Still seed-dependent: seeds 0, 1, 3
# and 4 form the head (steps 5000-8000); seed 2 put its previous-token head in layer 1
# and formed none in 12,000 steps. The 1-layer control, same settings, forms none.
# The -mlp twins on text form theirs later (seed 0: not yet at step 12,000).
_TEXT_MODEL = ModelConfig(n_layers=2, n_heads=4, d_model=64, d_head=16, n_ctx=256, d_vocab=1024,
                          init_pos="sinusoidal")
_TEXT = dict(data=BPEText(corpus="stdlib+tests", vocab_size=1024), steps=10000, batch=4, lr=1e-2,
             warmup=200, n_eval=512, log_snapshots=20, linear_snapshots=40)
PRESET_SETTINGS.update({
    "text-2l": dict(model=_TEXT_MODEL, **_TEXT),
    "text-1l": dict(model=_TEXT_MODEL.replace(n_layers=1), **_TEXT),
    "text-3l": dict(model=_TEXT_MODEL.replace(n_layers=3), **_TEXT),
})

# --- models with MLPs: the paper's second family ------------------------------------------
# The same models with an MLP after every attention layer, 4 d_model wide (GPT-2's ratio),
# on the same data and schedules ("-mlp" after the attention-only preset's name). On the
# induction task the 2-layer model with MLPs forms its induction head when the
# attention-only one does (docs/03_training.md, "Models with MLPs").
MLP_RATIO = 4
for _name in ("induction-1l", "induction-2l", "induction-3l", "text-1l", "text-2l", "text-3l"):
    _model = PRESET_SETTINGS[_name]["model"]
    PRESET_SETTINGS[_name + "-mlp"] = dict(PRESET_SETTINGS[_name],
                                           model=_model.replace(d_mlp=MLP_RATIO * _model.d_model))
