"""Token and positional embeddings (a table lookup forward, a scatter-add backward) and
the unembedding (a matrix product).

Shape legend: B = batch, T = positions, D = d_model, V = d_vocab
"""
import numpy as np


def embed_forward(W_E, tokens):
    """x[b, i] = W_E[tokens[b, i]].   W_E [V, D], tokens [B, T] -> x [B, T, D]"""
    return W_E[tokens]


def embed_backward(d_x, tokens, d_vocab):
    """Gradient of W_E for the forward `x = W_E[tokens]`.

    Each row W_E[v] was copied to every position holding token v, so its gradient
    is the sum of d_x over those positions (a scatter-add; np.add.at accumulates
    repeated indices, plain fancy-index assignment would keep only the last one).
    d_x [B, T, D], tokens [B, T] -> d_W_E [V, D]
    """
    D = d_x.shape[-1]
    d_W_E = np.zeros((d_vocab, D), dtype=d_x.dtype)
    np.add.at(d_W_E, tokens.reshape(-1), d_x.reshape(-1, D))
    return d_W_E


def pos_embed_backward(d_pos, n_ctx):
    """Gradient of W_pos for the forward `pos = W_pos[:T]`, broadcast over the batch.

    d_pos [B, T, D] -> d_W_pos [N, D] (rows T.. get zero gradient)
    """
    B, T, D = d_pos.shape
    d_W_pos = np.zeros((n_ctx, D), dtype=d_pos.dtype)
    d_W_pos[:T] = d_pos.sum(axis=0)
    return d_W_pos


def unembed_forward(x, W_U):
    """logits = x @ W_U.   x [B, T, D], W_U [D, V] -> logits [B, T, V]"""
    return x @ W_U


def unembed_backward(d_logits, x, W_U):
    """Gradients for the forward `logits = x @ W_U` (docs/02_backward.md, matrix products):
    d_x = d_logits @ W_U.T, d_W_U = x^T d_logits summed over batch and positions.

    d_logits [B, T, V], x [B, T, D], W_U [D, V] -> d_x [B, T, D], d_W_U [D, V]
    """
    D, V = W_U.shape
    d_W_U = x.reshape(-1, D).T @ d_logits.reshape(-1, V)                    # [D, V]
    return d_logits @ W_U.T, d_W_U
