"""Circuits read straight from the weights (FW, "A Mathematical Framework"): full OV and
QK circuits, eigenvalue copying, composition scores with a random baseline, and the
K-composition QK trace. No model run, no data.

How LayerNorm is handled (the papers analyse models without it; minih's choice):
LN(x) = P x / sigma(x) * w + b with P = I - 11^T/D the centring matrix. Its *linear
part* is L = P diag(w) (a [D, D] matrix); 1/sigma is a positive number per position
and b a constant vector. Where a circuit reads the residual stream through LN we use
L and drop 1/sigma and b ("folded weights", as TransformerLens' fold_ln, without
the biases). Two exceptions, where the input is a known vector: the *full* OV and QK
circuits start at the token embeddings, and there we apply LN1 exactly to each row
of W_E (the residual stream of a token before any head writes to it). The final LN
is always its linear part: 1/sigma only rescales all logits of a position, and
LN_final.b @ W_U adds the same logits for every source token.

Positions: the token circuits use W_E only. With positional="shortformer" (the
papers' setting) positions never enter the values, so OV circuits are exact; the
position terms of the QK circuit are split out by metrics.positional.

MLPs are ignored, by definition: every function here reads the embedding, the
attention weights, ln1 and the final LayerNorm, and the unembedding, never an MLP's
parameters nor LN2's. In a model with MLPs (d_mlp > 0) they describe the heads and the
direct paths between them as if the MLPs were absent: a head's write reaches a later
head or the unembedding straight through the residual stream, not through an MLP in
between. The numbers are those of the same weights in an attention-only config.

Row convention (TransformerLens): OV_h = W_V[h] @ W_O[h], QK_h = W_Q[h] @ W_K[h].T,
both [D, D]; a residual row vector x is read as x @ OV_h.

Shape legend: L layers, H heads, D d_model, E d_head, V d_vocab
"""
from __future__ import annotations

import functools

import numpy as np

from ...config import ModelConfig
from ...ops.layernorm import layernorm_forward
from ...params import check_params
from . import _check


# --- LayerNorm, as the circuits see it ---------------------------------------------------

def ln_linear(params, cfg: ModelConfig, where) -> np.ndarray:
    """The linear part L = P @ diag(w) of a LayerNorm, [D, D] (identity without LayerNorm).

    `where` is a layer index (its ln1) or "final" (ln_final). P = I - 11^T/D centres.
    LN2 (models with MLPs) is never read: the circuits ignore the MLPs.
    """
    check_params(params, cfg)
    if where != "final":
        where = _check.layer(where, cfg, "where (a layer index or 'final')")
    D = cfg.d_model
    if not cfg.layernorm:
        return np.eye(D)
    w = params["ln_final.w"] if where == "final" else params[f"blocks.{where}.ln1.w"]
    P = np.eye(D) - np.full((D, D), 1.0 / D)                          # [D,D]
    return P * np.asarray(w, dtype=np.float64)[None, :]               # P @ diag(w)


def embed_through_ln(params, cfg: ModelConfig, layer: int) -> np.ndarray:
    """Each token's embedding as layer `layer`'s heads read it: LN1(W_E) exactly, [V, D].

    (W_E itself without LayerNorm.) This is the residual stream of a token before any
    head has written to it; positions are not added (see the module docstring). In a
    model with MLPs it is also the stream before any MLP has written (MLPs ignored).
    """
    check_params(params, cfg)
    layer = _check.layer(layer, cfg)
    W_E = np.asarray(params["embed.W_E"], dtype=np.float64)
    if not cfg.layernorm:
        return W_E
    p = f"blocks.{layer}.ln1."
    return layernorm_forward(W_E, np.asarray(params[p + "w"], np.float64),
                             np.asarray(params[p + "b"], np.float64))[0]


def folded_weights(params, cfg: ModelConfig) -> dict[str, np.ndarray]:
    """Head weights with each LayerNorm's linear part folded into the reads, float64.

    W_Q, W_K, W_V: [L, H, D, E] = L_l @ W (L_l = ln_linear of the head's layer);
    W_O: [L, H, E, D]; W_U: [D, V] = L_final @ W_U. Without LayerNorm: the weights as they are.
    The MLPs' weights are not among them (module docstring: MLPs ignored).
    """
    check_params(params, cfg)
    out = {name: np.zeros((cfg.n_layers, cfg.n_heads, cfg.d_model, cfg.d_head))
           for name in ("W_Q", "W_K", "W_V")}
    out["W_O"] = np.zeros((cfg.n_layers, cfg.n_heads, cfg.d_head, cfg.d_model))
    for l in range(cfg.n_layers):
        L = ln_linear(params, cfg, l)                                 # [D,D]
        for name in ("W_Q", "W_K", "W_V"):
            out[name][l] = L @ np.asarray(params[f"blocks.{l}.attn.{name}"], np.float64)  # [H,D,E]
        out["W_O"][l] = params[f"blocks.{l}.attn.W_O"]
    out["W_U"] = ln_linear(params, cfg, "final") @ np.asarray(params["unembed.W_U"], np.float64)
    return out


# --- full circuits -----------------------------------------------------------------------

def full_ov_circuits(params, cfg: ModelConfig) -> np.ndarray:
    """Full OV circuit of every head, [L, H, V, V] (FW "OV circuit"): row = source token
    (attended to), column = its effect on each output logit:

        OV_full[l, h] = LN1_l(W_E) @ W_V[l, h] @ W_O[l, h] @ (L_final @ W_U)

    i.e. what head h writes when it attends fully to a token, read by the unembedding
    (direct path only: later heads and MLPs ignored). LayerNorm as in the module docstring.
    """
    f = folded_weights(params, cfg)
    out = np.zeros((cfg.n_layers, cfg.n_heads, cfg.d_vocab, cfg.d_vocab))
    for l in range(cfg.n_layers):
        E_l = embed_through_ln(params, cfg, l)                        # [V,D]
        raw_V = np.asarray(params[f"blocks.{l}.attn.W_V"], np.float64)  # [H,D,E] (E_l is LN'd already)
        write = (E_l @ raw_V) @ f["W_O"][l]                            # [H,V,E] @ [H,E,D] -> [H,V,D]
        out[l] = write @ f["W_U"]                                     # [H,V,V]
    return out


def full_qk_circuits(params, cfg: ModelConfig) -> np.ndarray:
    """Full QK circuit of every head, [L, H, V, V] (FW "QK circuit"): row = query token,
    column = key token, entry = the attention score between them from tokens alone:

        QK_full[l, h] = LN1_l(W_E) @ W_Q[l, h] @ W_K[l, h].T @ LN1_l(W_E).T / sqrt(d_head)

    scaled by 1/sqrt(d_head) like hook_attn_scores (the paper's W_E^T W_QK W_E has no
    scale). For layer 0 with shortformer positions and no smeared keys this is exactly
    the token-token term of the scores (metrics.positional), and also with standard
    positions without LayerNorm. Not with smeared keys (the term's keys are then
    s k[j] + (1-s) k[j-1]), nor with standard positions and LayerNorm (LN1 sees token
    plus position: the token part is divided by each position's sigma and keeps LN's
    bias). For later layers it is the direct-path part only (no earlier head or MLP).
    """
    check_params(params, cfg)
    out = np.zeros((cfg.n_layers, cfg.n_heads, cfg.d_vocab, cfg.d_vocab))
    for l in range(cfg.n_layers):
        E_l = embed_through_ln(params, cfg, l)                        # [V,D]
        q = np.einsum("vd,hde->hve", E_l, np.asarray(params[f"blocks.{l}.attn.W_Q"], np.float64))
        k = np.einsum("vd,hde->hve", E_l, np.asarray(params[f"blocks.{l}.attn.W_K"], np.float64))
        out[l] = q @ k.transpose(0, 2, 1) / np.sqrt(cfg.d_head)       # [H,V,V]
    return out


# --- eigenvalue copying ------------------------------------------------------------------

def eigenvalue_positivity(matrix) -> float:
    """sum(lambda) / sum(|lambda|) over the eigenvalues of a square matrix, in [-1, 1].

    FW "Copying / Induction heads": 1 when all eigenvalues are positive reals (the
    matrix maps tokens to themselves: copying), -1 when all are negative. Complex
    eigenvalues come in conjugate pairs, so sum(lambda) = trace is real. NaN for the
    zero matrix (no eigenvalue has any size).
    """
    matrix = _check.floats(matrix, "matrix")
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"eigenvalue_positivity needs a square matrix, got shape {matrix.shape}")
    lam = np.linalg.eigvals(matrix)
    size = np.abs(lam).sum()
    return float(np.sum(lam).real / size) if size > 0 else float("nan")


def small_ov_circuits(params, cfg: ModelConfig, layer: int) -> np.ndarray:
    """[H, E, E]: W_O (L_final W_U) LN1(W_E) W_V for every head of `layer`. It has the
    nonzero eigenvalues of the full OV circuit LN1(W_E) W_V W_O (L_final W_U) [V, V]
    (AB and BA share them) and costs E^3 instead of V^3 to decompose. MLPs ignored."""
    f = folded_weights(params, cfg)
    layer = _check.layer(layer, cfg)
    E_l = embed_through_ln(params, cfg, layer)                        # [V,D]
    W_V = np.asarray(params[f"blocks.{layer}.attn.W_V"], np.float64)  # [H,D,E]
    return f["W_O"][layer] @ f["W_U"] @ E_l @ W_V                     # [H,E,E]


def eigenvalue_copying_scores(params, cfg: ModelConfig) -> np.ndarray:
    """Eigenvalue copying score of every head, [L, H] (FW, "copying" eigenvalues).

    eigenvalue_positivity of the full OV circuit LN1(W_E) W_V W_O (L_final W_U) [V, V],
    computed from small_ov_circuits, the [E, E] matrices with the same nonzero eigenvalues.
    MLPs are ignored (the direct path from the head to the unembedding).
    """
    check_params(params, cfg)
    return np.array([[eigenvalue_positivity(m) for m in small_ov_circuits(params, cfg, l)]
                     for l in range(cfg.n_layers)]).reshape(cfg.n_layers, cfg.n_heads)


# --- composition -------------------------------------------------------------------------

COMPOSITION_KINDS = ("Q", "K", "V")


def composition_score(M1, M2) -> float:
    """||M1 @ M2||_F / (||M1||_F ||M2||_F) for two matrices: the reference (FW).

    FW "Composition scores" (column convention W_QK^T W_OV etc.); in the row
    convention M1 = OV of the earlier head and M2 = QK (Q-composition), QK.T
    (K-composition) or OV (V-composition) of the later head. 1 when M1's output space
    is exactly what M2 reads, ~0 when unrelated. NaN if either matrix is zero.
    """
    M1, M2 = _check.floats(M1, "M1"), _check.floats(M2, "M2")
    denom = np.linalg.norm(M1) * np.linalg.norm(M2)
    return float(np.linalg.norm(M1 @ M2) / denom) if denom > 0 else float("nan")


def _factored_composition(A_left, A_right, B_left, B_right) -> np.ndarray:
    """composition_score(A_left @ A_right, B_left @ B_right) for stacks of factors.

    A_left [..., D, E], A_right [..., E, D] (first matrix, rank <= E), likewise B.
    Mirrors composition_score but works in the E-dim space: with G(X) = X^T X,
      ||A_l A_r B_l B_r||^2 = tr( C^T G(A_l) C (B_r B_r^T) ),  C = A_r @ B_l   [E, E]
      ||A_l A_r||^2 = tr( G(A_l) A_r A_r^T ),  ||B_l B_r||^2 = tr( G(B_l) B_r B_r^T )
    so no [D, D] matrix is ever formed. Broadcasts over the leading axes.
    """
    def gram_left(X):
        return np.swapaxes(X, -1, -2) @ X                             # [...,E,E]

    def gram_right(X):
        return X @ np.swapaxes(X, -1, -2)                             # [...,E,E]

    C = A_right @ B_left                                              # [...,E,E]
    # tr(C^T G C G') = sum of (G C) * (C G') elementwise (G symmetric)
    num = ((gram_left(A_left) @ C) * (C @ gram_right(B_right))).sum(axis=(-2, -1))
    norm_A = (gram_left(A_left) * gram_right(A_right)).sum(axis=(-2, -1))   # tr(G G'), both symmetric
    norm_B = (gram_left(B_left) * gram_right(B_right)).sum(axis=(-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.sqrt(np.maximum(num, 0.0)) / np.sqrt(norm_A * norm_B)


def composition_scores(params, cfg: ModelConfig) -> dict[str, np.ndarray]:
    """Q-, K- and V-composition of every earlier head into every later head (FW).

    Returns {"Q": S, "K": S, "V": S}, each [L, H, L, H] with S[a, h1, b, h2] the
    score of head h1 in layer a into head h2 in layer b, NaN unless a < b:

        Q: composition_score(OV_h1, QK_h2)      OV = W_V W_O, QK = W_Q W_K^T
        K: composition_score(OV_h1, QK_h2^T)    (h1's output read by h2's keys)
        V: composition_score(OV_h1, OV_h2)

    on folded weights (LayerNorm's linear part folded into every read; see the module
    docstring). Compare with composition_baseline(cfg.d_model, cfg.d_head). MLPs are
    ignored: the scores are of the direct path from h1's write to h2's read, not of
    what an MLP between them makes of it.
    """
    f = folded_weights(params, cfg)
    Lh, H = cfg.n_layers, cfg.n_heads
    out = {kind: np.full((Lh, H, Lh, H), np.nan) for kind in COMPOSITION_KINDS}
    WK_T = np.swapaxes(f["W_K"], -1, -2)                              # [L,H,E,D]
    WQ_T = np.swapaxes(f["W_Q"], -1, -2)                              # [L,H,E,D]
    for a in range(Lh):
        A_l, A_r = f["W_V"][a][:, None], f["W_O"][a][:, None]         # [H,1,D,E], [H,1,E,D]
        for b in range(a + 1, Lh):
            # second matrix as (left factor [D,E], right factor [E,D]), one per head h2
            second = {"Q": (f["W_Q"][b], WK_T[b]),                    # QK   = W_Q W_K^T
                      "K": (f["W_K"][b], WQ_T[b]),                    # QK^T = W_K W_Q^T
                      "V": (f["W_V"][b], f["W_O"][b])}                # OV   = W_V W_O
            for kind, (B_l, B_r) in second.items():
                out[kind][a, :, b, :] = _factored_composition(A_l, A_r, B_l[None], B_r[None])
    return out


def composition_baseline_samples(d_model: int, d_head: int, n_samples: int = 200,
                                 seed=0) -> np.ndarray:
    """Composition scores of `n_samples` pairs of random matrices shaped like real ones: [n].

    Each sample draws M1 = G1 @ G2 and M2 = G3 @ G4 with G1, G3 [D, E] and G2, G4
    [E, D] standard normal (so both are [D, D] of rank E, like OV and QK), and takes
    composition_score(M1, M2). Q, K and V composition share this distribution, since
    transposing a Gaussian factor does not change it.
    """
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    G = rng.standard_normal((4, n_samples, d_model, d_head))         # [4,n,D,E]
    return _factored_composition(G[0], np.swapaxes(G[1], -1, -2),
                                 G[2], np.swapaxes(G[3], -1, -2))     # [n]


@functools.lru_cache(maxsize=32)
def composition_baseline(d_model: int, d_head: int, n_samples: int = 200, seed: int = 0) -> float:
    """Mean composition score of random matrices with the shapes and ranks of real ones.

    The mean of composition_baseline_samples. The score of unrelated heads is not 0
    but about this value; FW subtracts a baseline of this kind without giving its
    exact recipe: this one is minih's. Cached: it depends on the shapes only.
    """
    return float(composition_baseline_samples(d_model, d_head, n_samples, seed).mean())


# --- K-composition QK trace --------------------------------------------------------------

def k_composition_qk_terms(params, cfg: ModelConfig) -> tuple[np.ndarray, np.ndarray]:
    """The token-level K-composition term of every (earlier head h1, later head h2) pair.

    For h2 in layer b and h1 in layer a < b: if h1 attends fully to key j-1 of token u
    and writes it into the residual stream at j, h2's score from a query of token v
    to that key gets the term

        M[v, u] = (W_E[v] L_b W_Q2) . (W_E[u] L_a W_V1 W_O1 L_b W_K2) / sqrt(d_head)   [V, V]

    (IH "Argument 5" / FW "induction heads": an induction head wants a positive
    diagonal, v == u). Returns (trace, positivity), each [L, H, L, H] (NaN unless
    a < b): trace = tr(M) / V, the mean score boost a key gets when the token h1 moved
    into it equals the query token, in the units of hook_attn_scores (exactly without
    LayerNorm and smeared keys; with LayerNorm, only up to the dropped 1/sigma and
    biases; with smeared keys h2's key at j is s k[j] + (1-s) k[j-1], so the term
    arrives with weight s = sigmoid(smear), and (1-s) of it one key later). IH speaks
    of the trace tr(M); we divide by V so that the number does not grow with the
    vocabulary and reads as a score; multiply by V for the plain trace. positivity =
    eigenvalue_positivity(M), computed from the [E, E] matrix with M's nonzero
    eigenvalues. LayerNorm: linear parts L (module docstring) on both sides. MLPs are
    ignored (h1's write reaches h2's keys directly).
    """
    f = folded_weights(params, cfg)
    W_E = np.asarray(params["embed.W_E"], np.float64)
    Lh, H, V = cfg.n_layers, cfg.n_heads, cfg.d_vocab
    trace = np.full((Lh, H, Lh, H), np.nan)
    positivity = np.full((Lh, H, Lh, H), np.nan)
    for b in range(1, Lh):
        X = W_E @ f["W_Q"][b] / np.sqrt(cfg.d_head)                    # [H2,V,E] queries
        for a in range(b):
            moved = (W_E @ f["W_V"][a]) @ f["W_O"][a]                 # [H1,V,D] h1's write per token
            Y = moved[:, None] @ f["W_K"][b][None]                    # [H1,H2,V,E] keys
            # tr(X Y^T) = sum of X * Y; the eigenvalues of X Y^T [V,V] are those of Y^T X [E,E]
            trace[a, :, b, :] = np.einsum("hve,ghve->gh", X, Y) / V
            small = np.swapaxes(Y, -1, -2) @ X[None]                  # [H1,H2,E,E]
            for h1 in range(H):
                for h2 in range(H):
                    positivity[a, h1, b, h2] = eigenvalue_positivity(small[h1, h2])
    return trace, positivity


def k_composition_qk_trace(params, cfg: ModelConfig, previous_token_scores,
                           trace=None) -> np.ndarray:
    """Per later head, the K-composition QK trace weighted by previous-token attention: [L, H].

        trace_w[b, h2] = sum over earlier heads (a, h1) of  prev[a, h1] * trace[a, h1, b, h2]

    with trace from k_composition_qk_terms and prev[a, h1] the previous-token score of
    h1 (metrics.patterns.previous_token_score, in [0, 1]): a head that moves the
    previous token with weight p contributes p times its full-attention term. Large and
    positive for an induction head fed by a previous-token head; NaN for layer 0.
    The trace is weighted by how much each earlier head attends to the previous token;
    the paper gives no formula for combining heads, and the weighted *sum* (not mean) is
    minih's reading, because the contributions of several previous-token heads add up
    in the key. MLPs are ignored, as in k_composition_qk_terms.
    """
    check_params(params, cfg)
    prev = _check.floats(previous_token_scores, "previous_token_scores")
    if prev.shape != (cfg.n_layers, cfg.n_heads):
        raise ValueError(f"previous_token_scores must have shape [n_layers, n_heads] = "
                         f"{[cfg.n_layers, cfg.n_heads]}, got {list(prev.shape)}")
    if trace is None:                       # pass k_composition_qk_terms(...)[0] to reuse it
        trace, _ = k_composition_qk_terms(params, cfg)
    out = np.full((cfg.n_layers, cfg.n_heads), np.nan)
    for b in range(1, cfg.n_layers):
        out[b] = np.einsum("ag,agh->h", prev[:b], trace[:b, :, b, :])  # [H]
    return out
