"""Numba twins of minih.ops.embedding: table lookup forward, scatter-add backward, unembedding.

Shape legend: B = batch, T = positions, D = d_model, V = d_vocab, N = n_ctx
"""
import numpy as np

from ._jit import as_floats, as_tokens, expect_shape, kernel
from .blas import matmul, matmul_tn


@kernel()
def _embed_forward(W_E, tokens, x):
    # Serial: a copy of B*T rows runs at memory speed; threads would add start-up cost.
    # An explicit loop over d: the slice assignment x[b, i, :] = W_E[t] compiled 1.8 s
    # longer (Numba's general broadcasting code) and ran 3.5x slower (REF: 0.34 ms
    # against 0.095 ms, one core).
    B, T = tokens.shape
    D = W_E.shape[1]
    for b in range(B):
        for i in range(T):
            t = tokens[b, i]
            for d in range(D):
                x[b, i, d] = W_E[t, d]


def embed_forward(W_E, tokens):
    """Numba twin of minih.ops.embedding.embed_forward: x[b, i] = W_E[tokens[b, i]].

    W_E [V, D], tokens [B, T] -> x [B, T, D] (a new array)
    """
    (W_E,) = as_floats("W_E", W_E)
    tokens = as_tokens(tokens, W_E.shape[0])
    B, T = tokens.shape
    x = np.empty((B, T, W_E.shape[1]), dtype=W_E.dtype)
    _embed_forward(W_E, tokens, x)
    return x


@kernel()
def _embed_backward(d_x, tokens, d_W_E):
    # Serial on purpose: two positions holding the same token add into the same row
    # of d_W_E, so a parallel loop over positions would race. It costs B*T*D adds,
    # a few hundredths of the step.
    B, T, D = d_x.shape
    for b in range(B):
        for i in range(T):
            row = d_W_E[tokens[b, i]]
            for d in range(D):
                row[d] += d_x[b, i, d]


def embed_backward(d_x, tokens, d_vocab):
    """Numba twin of minih.ops.embedding.embed_backward: d_W_E[v] = sum of d_x where tokens == v.

    d_x [B, T, D], tokens [B, T] -> d_W_E [V, D]
    """
    (d_x,) = as_floats("d_x", d_x)
    tokens = as_tokens(tokens, d_vocab)
    expect_shape("d_x", d_x, tokens.shape + d_x.shape[2:])
    d_W_E = np.zeros((d_vocab, d_x.shape[-1]), dtype=d_x.dtype)
    _embed_backward(d_x, tokens, d_W_E)
    return d_W_E


@kernel()
def _pos_embed_backward(d_pos, d_W_pos):
    # Serial (a sum over the batch at memory speed); loops in memory order of d_pos.
    B, T, D = d_pos.shape
    for b in range(B):
        for i in range(T):
            for d in range(D):
                d_W_pos[i, d] += d_pos[b, i, d]


def pos_embed_backward(d_pos, n_ctx):
    """Numba twin of minih.ops.embedding.pos_embed_backward: d_W_pos[:T] = sum_b d_pos[b].

    d_pos [B, T, D] -> d_W_pos [N, D] (rows T.. are zero)
    """
    (d_pos,) = as_floats("d_pos", d_pos)
    if d_pos.ndim != 3 or d_pos.shape[1] > n_ctx:
        raise ValueError(f"d_pos must be [B, T, D] with T <= n_ctx={n_ctx}, got {d_pos.shape}")
    d_W_pos = np.zeros((n_ctx, d_pos.shape[2]), dtype=d_pos.dtype)
    _pos_embed_backward(d_pos, d_W_pos)
    return d_W_pos


def unembed_forward(x, W_U):
    """Numba twin of minih.ops.embedding.unembed_forward (BLAS, minih.kernels.blas).

    logits = x @ W_U:  x [B, T, D], W_U [D, V] -> logits [B, T, V]
    """
    x, W_U = as_floats("x W_U", x, W_U)
    B, T, D = x.shape
    expect_shape("W_U", W_U, (D, W_U.shape[-1]))
    return matmul(x.reshape(B * T, D), W_U).reshape(B, T, -1)


def unembed_backward(d_logits, x, W_U):
    """Numba twin of minih.ops.embedding.unembed_backward (BLAS): -> d_x [B,T,D], d_W_U [D,V]"""
    d_logits, x, W_U = as_floats("d_logits x W_U", d_logits, x, W_U)
    B, T, D = x.shape
    V = W_U.shape[-1]
    expect_shape("W_U", W_U, (D, V))
    expect_shape("d_logits", d_logits, (B, T, V))
    d_logits2 = d_logits.reshape(B * T, V)                       # [B*T, V]
    d_x = matmul(d_logits2, W_U.T).reshape(B, T, D)              # forward: logits = x @ W_U
    return d_x, matmul_tn(x.reshape(B * T, D), d_logits2)        # d_W_U = x^T d_logits
