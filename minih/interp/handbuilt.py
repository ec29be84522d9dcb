"""A 2-layer induction model built by hand: weights written down, not trained.

    cfg, params = induction_model(d_vocab=16, n_ctx=64, n_heads=1)

It is the known-answer oracle for the metrics and ablations: its layer-0 head
(head 0.0) attends to the previous token, its layer-1 head (head 1.0) does
induction by K-composition, and head 1.0's OV circuit copies. So on a sequence
``... A B ... A`` it predicts ``B``: low loss on the second repeat of a random
sequence, chance-level loss on the first.

The residual stream, in four blocks of one-hot "slots" (V = d_vocab, N = n_ctx)::

    dims [0, V)          TOK   the current token t[i]      (written by W_E)
    dims [V, V+N)        POS   position i                  (rows of W_pos; see below)
    dims [V+N, 2V+N)     PREV  the previous token t[i-1]   (written by head 0.0)
    dims [2V+N, 3V+N)    OUT   the predicted next token    (written by head 1.0, read by W_U)

    d_model = 3V + N,  d_head = max(N, V + 1)

Shape legend: V d_vocab, N n_ctx, D d_model, E d_head, H n_heads

Why these settings:

* ``positional="shortformer"``: W_pos is added to the inputs of queries and keys
  only, never to the residual stream. So position can steer attention (head 0.0
  needs it) while the values, and therefore what heads write, hold token identity
  alone. The POS slot is never present in the residual stream itself; it exists
  only in ``qk_in = x + W_pos[:T]``.
* ``layernorm=False``: without LayerNorm every read of the residual stream is a
  plain linear map, so each slot is read exactly as it was written. (LayerNorm
  would centre and rescale the one-hot vectors, mixing the slots.)
* ``dtype="float64"``: the attention strengths below are large (softmax of scores
  of ~30), and float64 keeps every near-0/near-1 attention weight exact enough
  for tests to compare against 0 and 1 tightly.

The heads, with scores already divided by sqrt(d_head) as the forward pass does:

* Head 0.0, previous token. Query at position i reads its POS slot and emits the
  head vector e_i; key at position j emits e_{j+1}. So score(i, j) =
  ``prev_strength * [j == i - 1]``: position i attends to i - 1 (position 0 can
  only see itself). Its OV circuit reads TOK and writes PREV: after layer 0 the
  residual at position j holds t[j] in TOK and t[j-1] in PREV.
* Head 1.0, induction by K-composition. Query at position i reads TOK (t[i]);
  key at position j reads PREV (t[j-1], which head 0.0 put there: this is
  K-composition). So score(i, j) = ``induction_strength * [t[j-1] == t[i]]``:
  position i attends to the token *after* an earlier copy of t[i]. One extra
  head dimension gives key 0 a score of ``-induction_strength`` (its PREV slot
  holds t[0] itself, because position 0 attended to itself; without the penalty a
  query equal to t[0] would also look at position 0). The query side of that
  dimension is the constant 1 = the sum of the TOK one-hot. Its OV circuit reads
  TOK and writes OUT: it copies the attended token.
* ``W_U`` reads OUT with gain ``copy_strength``: logits = copy_strength * (the
  attention-weighted one-hot of the tokens head 1.0 attended to). The direct path
  W_E @ W_U is zero, so without the induction head the model predicts uniformly.
* Heads 1..n_heads-1 of each layer ("unrelated heads"): small random weights
  (std ``other_std``, from ``seed``); they attend nearly uniformly and write
  near-zero output. ``other_std=0`` makes them exactly zero (uniform attention,
  no output).

Where the first repeat has no earlier copy, head 1.0's scores are all 0 (but key
0's) and it attends uniformly: the model predicts the average of the earlier
tokens. On a segment of distinct tokens those are all wrong, so the first repeat's
loss is *above* chance (log d_vocab): about 4-15 nats for the defaults. On the
second repeat it predicts the right token with probability ~ 1 - (V-1)e^-copy_strength
(loss ~ 5e-6 nats for the defaults).
"""
from __future__ import annotations

import numpy as np

from ..config import ModelConfig, check_int
from ..params import param_shapes

# Block offsets of the residual-stream slots, as a function of (V, N); see the module doc.
def slots(d_vocab: int, n_ctx: int) -> dict[str, slice]:
    """The residual-stream slots of the hand-built model: name -> slice of d_model."""
    V, N = d_vocab, n_ctx
    return {"TOK": slice(0, V), "POS": slice(V, V + N),
            "PREV": slice(V + N, 2 * V + N), "OUT": slice(2 * V + N, 3 * V + N)}


def induction_model(d_vocab: int = 16, n_ctx: int = 64, n_heads: int = 1,
                    prev_strength: float = 30.0, induction_strength: float = 30.0,
                    copy_strength: float = 15.0, other_std: float = 0.02,
                    seed: int = 0) -> tuple[ModelConfig, dict[str, np.ndarray]]:
    """Config and hand-written weights of a 2-layer attention-only induction model.

    Head 0.0 attends to the previous token and writes it into the PREV slot; head
    1.0 matches its query token against the keys' PREV slot (K-composition) and
    copies the attended token to the output. See the module docstring for the
    residual-stream layout and why layernorm=False, positional="shortformer",
    dtype="float64".

    Args:
        d_vocab, n_ctx: vocabulary size and longest sequence (d_model = 3*d_vocab + n_ctx).
        n_heads: heads per layer; heads 1.. of each layer are the "unrelated" heads.
        prev_strength: attention score of head 0.0 on the previous token (others 0).
        induction_strength: score of head 1.0 on keys whose previous token equals the query's.
        copy_strength: logit gain of W_U on the OUT slot (larger = more confident copying).
        other_std: std of the unrelated heads' random weights (0 = exactly zero).
        seed: seed for the unrelated heads' weights.

    Returns:
        (cfg, params): a ModelConfig and a params dict with minih's usual keys (minih.init_params).
    """
    d_vocab, n_ctx, n_heads = (check_int(value, f"induction_model: {name}", minimum=1)
                               for name, value in (("d_vocab", d_vocab), ("n_ctx", n_ctx),
                                                   ("n_heads", n_heads)))
    if d_vocab < 2 or n_ctx < 2:
        raise ValueError(f"induction_model needs d_vocab >= 2 and n_ctx >= 2, "
                         f"got d_vocab={d_vocab}, n_ctx={n_ctx}")
    if other_std < 0:
        raise ValueError(f"induction_model: other_std must be >= 0, got {other_std}")
    V, N = d_vocab, n_ctx
    E = max(N, V + 1)                     # head width: room for one-hot positions or tokens+1
    D = 3 * V + N
    cfg = ModelConfig(n_layers=2, n_heads=n_heads, d_model=D, d_head=E, n_ctx=N, d_vocab=V,
                      layernorm=False, positional="shortformer", smeared_keys=False,
                      dtype="float64")
    s = slots(V, N)
    tok, pos, prev, out = (np.arange(D)[s[k]] for k in ("TOK", "POS", "PREV", "OUT"))
    rng = np.random.default_rng(seed)
    # start every weight as small noise (only the unrelated heads keep it), then write
    # the designed heads and embeddings exactly
    params = {key: rng.standard_normal(shape) * other_std for key, shape in param_shapes(cfg).items()}
    root_E = np.sqrt(E)                   # the forward divides scores by sqrt(d_head)

    # embeddings: token v -> one-hot in TOK; position i -> one-hot in POS (qk inputs only)
    W_E = np.zeros((V, D))
    W_E[np.arange(V), tok] = 1.0
    W_pos = np.zeros((N, D))
    W_pos[np.arange(N), pos] = 1.0
    params["embed.W_E"], params["pos_embed.W_pos"] = W_E, W_pos

    # head 0.0: previous-token head
    W_Q0 = np.zeros((D, E)); W_K0 = np.zeros((D, E)); W_V0 = np.zeros((D, E)); W_O0 = np.zeros((E, D))
    W_Q0[pos, np.arange(N)] = np.sqrt(prev_strength * root_E)          # pos i   -> e_i
    W_K0[pos[:-1], np.arange(1, N)] = np.sqrt(prev_strength * root_E)  # pos j   -> e_{j+1}
    W_V0[tok, np.arange(V)] = 1.0                                      # TOK v   -> e_v
    W_O0[np.arange(V), prev] = 1.0                                     # e_v     -> PREV v
    _set_head(params, 0, W_Q0, W_K0, W_V0, W_O0)

    # head 1.0: induction head (K-composition with head 0.0) whose OV circuit copies
    W_Q1 = np.zeros((D, E)); W_K1 = np.zeros((D, E)); W_V1 = np.zeros((D, E)); W_O1 = np.zeros((E, D))
    a = np.sqrt(induction_strength * root_E)
    W_Q1[tok, np.arange(V)] = a                 # query: current token t[i]   -> e_{t[i]}
    W_K1[prev, np.arange(V)] = a                # key: previous token t[j-1]  -> e_{t[j-1]}
    W_Q1[tok, V] = a                            # query: constant 1 (TOK one-hot sums to 1)
    W_K1[pos[0], V] = -a                        # key at position 0: score -induction_strength
    W_V1[tok, np.arange(V)] = 1.0               # TOK v -> e_v
    W_O1[np.arange(V), out] = 1.0               # e_v   -> OUT v
    _set_head(params, 1, W_Q1, W_K1, W_V1, W_O1)

    # unembedding: read the OUT slot only, with gain copy_strength
    W_U = np.zeros((D, V))
    W_U[out, np.arange(V)] = copy_strength
    params["unembed.W_U"] = W_U
    return cfg, {k: np.ascontiguousarray(v, dtype=np.float64) for k, v in params.items()}


def _set_head(params: dict, layer: int, W_Q, W_K, W_V, W_O) -> None:
    """Write head 0 of `layer` (the designed head); other heads keep their noise."""
    p = f"blocks.{layer}.attn."
    for name, value in (("W_Q", W_Q), ("W_K", W_K), ("W_V", W_V), ("W_O", W_O)):
        params[p + name][0] = value


def repeated_random_tokens(d_vocab: int, seq_len: int, n_repeats: int = 2, batch: int = 1,
                           seed: int | np.random.Generator = 0) -> np.ndarray:
    """[batch, seq_len * n_repeats] int64: a random segment of `seq_len` tokens, repeated.

    When seq_len <= d_vocab the segment's tokens are distinct (a random slice of a
    permutation of [0, d_vocab)), so every token of a later repeat has exactly one
    possible continuation and a perfect induction model has loss ~0 there; otherwise
    they are drawn uniformly with replacement. The segment always starts at position
    0: fine for the hand-built model, whose induction head ignores position.
    """
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    if seq_len <= d_vocab:
        segment = np.stack([rng.permutation(d_vocab)[:seq_len] for _ in range(batch)])
    else:
        segment = rng.integers(0, d_vocab, size=(batch, seq_len))  # [B, seq_len]
    return np.tile(segment, (1, n_repeats)).astype(np.int64)        # [B, seq_len*n_repeats]
