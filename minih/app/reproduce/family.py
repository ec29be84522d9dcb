"""The model family the reproduction trains: which models, on what data, for how long.

All induction-task models share the data source, the evaluation set and the seed,
so their per-token losses live in one space (for the PCA of Argument 1) and their
curves can be compared point by point (Argument 6).

Sizes:
- "quick": the induction-task family (1, 2, 3 layers, attention-only and with MLPs, and
           the smeared-key models) and the Argument-4 model, short runs (minutes).
- "full":  the same, trained longer, plus 1-, 2- and 3-layer models on plain text (the
           stdlib's code and tests as BPE tokens: the text-1l/2l/3l presets).
- "tiny":  a few steps of very small models, the text ones on the small prose corpus:
           checks the pipeline, not the science (used by the test suite).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ...data.generality_tasks import GeneralityTasks
from ...training.config import TrainConfig
from ...training.presets import MLP_RATIO     # d_mlp = MLP_RATIO * d_model, as the presets

SIZES = ("tiny", "quick", "full")


@dataclass(frozen=True)
class Member:
    name: str               # "2L", "1L smeared", ... (used in figures and the report)
    train: TrainConfig
    group: str              # "induction" (the main family), "mlp" (the same with MLPs,
                            # Argument 6), "generality" (Argument 4), "text"

    @property
    def slug(self) -> str:
        return self.name.lower().replace(" ", "-")


def _base(size: str, seed: int) -> TrainConfig:
    tc = TrainConfig.preset("induction-2l", seed=seed)
    if size == "tiny":
        model = tc.model.replace(d_model=16, d_head=4, n_heads=2, n_ctx=32, d_vocab=16)
        data = dataclasses.replace(tc.data, d_vocab=16, min_len=4, max_len=10)
        return tc.replace(model=model, data=data, steps=12, batch=4, n_eval=6,
                          log_snapshots=5, linear_snapshots=3)
    if size == "full":
        return tc.replace(steps=tc.steps * 2)
    return tc


def family(size: str = "quick", seed: int = 0) -> list[Member]:
    """The models of one reproduction, in training order."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, got {size!r}")
    base = _base(size, seed)
    m = base.model
    gen_data = GeneralityTasks(d_vocab=m.d_vocab - m.d_vocab % 2, min_len=base.data.min_len,
                               max_len=base.data.max_len, n_classes=4 if m.d_vocab >= 16 else 2,
                               seed=seed)
    members = [
        Member("1L", base.replace(model=m.replace(n_layers=1)), "induction"),
        Member("2L", base, "induction"),
        Member("3L", base.replace(model=m.replace(n_layers=3)), "induction"),
        Member("1L smeared", base.replace(model=m.replace(n_layers=1, smeared_keys=True)), "induction"),
        Member("2L smeared", base.replace(model=m.replace(smeared_keys=True)), "induction"),
        Member("2L generality", base.replace(data=gen_data, steps=base.steps * 2), "generality"),
    ]
    # the paper's second family: the same models with an MLP after every attention layer,
    # MLP_RATIO d_model wide (GPT-2's ratio, TransformerLens' default), same data, seed, steps
    for n_layers in (1, 2, 3):
        members.append(Member(f"{n_layers}L MLP", base.replace(
            model=m.replace(n_layers=n_layers, d_mlp=MLP_RATIO * m.d_model)), "mlp"))
    if size in ("full", "tiny"):
        # plain text: the stdlib's code and tests as BPE tokens, an ordinary language model
        # (no repeated windows, no curriculum); the 1-layer model is the control
        for n_layers in (1, 2, 3):
            tc = TrainConfig.preset(f"text-{n_layers}l", seed=seed)
            if size == "tiny":       # the pipeline only: the small prose corpus, a few steps
                tc = tc.replace(model=tc.model.replace(d_model=16, d_head=4, n_heads=2, n_ctx=64,
                                                       d_vocab=300),
                                data=dataclasses.replace(tc.data, corpus="prose", vocab_size=300),
                                steps=12, n_eval=6, log_snapshots=5, linear_snapshots=3)
            members.append(Member(f"{n_layers}L text", tc, "text"))
    return members
