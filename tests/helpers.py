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


def handbuilt_with_mlps(d_vocab=16, n_ctx=32, n_heads=2, bigram=0.5, copy_strength=15.0):
    """(cfg, params, cfg0, params0): the hand-built induction model (minih/interp/handbuilt.py)
    with an MLP in each layer, and the attention-only model it was built from.

    Layer 0's MLP is a bigram guess: it reads the TOK slot (pre = one-hot of t[i], so
    post = gelu(1) = 0.84 at t[i], 0 elsewhere) and writes `bigram` into the OUT slot at
    token t[i] + 1 (mod V), which W_U reads: the model now also predicts "the next token
    id", whatever the context. Layer 1's MLP computes (random W_in, b_in) but writes 0.
    The designed heads 0.0 and 1.0 read only TOK, POS and PREV, so their patterns and
    values are those of the attention-only model; the logits are not (the MLP responds).
    """
    import numpy as np

    from minih.interp.handbuilt import induction_model, slots
    cfg0, params0 = induction_model(d_vocab=d_vocab, n_ctx=n_ctx, n_heads=n_heads,
                                    copy_strength=copy_strength)
    V, D = d_vocab, cfg0.d_model
    cfg = cfg0.replace(d_mlp=V)
    s = slots(V, n_ctx)
    tok, out = np.arange(D)[s["TOK"]], np.arange(D)[s["OUT"]]
    rng = np.random.default_rng(0)
    W_in0 = np.zeros((D, V))
    W_in0[tok, np.arange(V)] = 1.0                               # TOK v -> unit v
    W_out0 = np.zeros((V, D))
    W_out0[np.arange(V), out[(np.arange(V) + 1) % V]] = bigram  # unit v -> OUT v+1
    params = dict(params0)
    params.update({"blocks.0.mlp.W_in": W_in0, "blocks.0.mlp.b_in": np.zeros(V),
                   "blocks.0.mlp.W_out": W_out0, "blocks.0.mlp.b_out": np.zeros(D),
                   "blocks.1.mlp.W_in": rng.standard_normal((D, V)), "blocks.1.mlp.b_in": rng.standard_normal(V),
                   "blocks.1.mlp.W_out": np.zeros((V, D)), "blocks.1.mlp.b_out": np.zeros(D)})
    return cfg, params, cfg0, params0
