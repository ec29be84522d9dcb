"""Shared oracles for the tests (they live in minih.testing, also used by the exercises)."""
from minih.testing import assert_close, numerical_grad  # noqa: F401


def tiny_model(seed=0, **fields):
    """(cfg, params, tokens): the float64 "tiny" preset with some fields changed, its
    seeded params and 3 random sequences of n_ctx tokens."""
    import numpy as np

    import minih
    cfg = minih.ModelConfig.preset("tiny", dtype="float64", **fields)
    params = minih.init_params(cfg, seed)
    tokens = np.random.default_rng(seed).integers(0, cfg.d_vocab, (3, cfg.n_ctx))
    return cfg, params, tokens
