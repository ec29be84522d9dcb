"""Numba twins of minih.ops.loss: next-token softmax cross-entropy, row by row.

A row is one predicting position (b, i), i = 0..T-2, with V logits. The reference
builds log_softmax with four [B, T-1, V] temporaries; the kernel reads each row
once for its max, once for exp and the sum, and writes probs and the row's loss.
In float32 the max and the exp are the vectorised helpers of _jit.py
(softmax_row, which uses row_max_f32 and exp_shifted_f32).

Shape legend: B = batch, T = positions, V = d_vocab
"""
import numpy as np

from ._jit import as_floats, as_tokens, kernel, softmax_row
from .threads import run_chunks


@kernel()
def _softmax_nll(logits, tokens, nll, probs, fast_exp, r0, r1):
    B, T, V = logits.shape
    zero = np.zeros(1, dtype=logits.dtype)[0]                    # 0 in the logits' dtype
    for r in range(r0, r1):                                  # row r = (b, i): its own probs, nll
        b = r // (T - 1)
        i = r - b * (T - 1)
        row = logits[b, i]                                   # [V]
        out = probs[b, i]                                    # [V]
        m, total = softmax_row(row, out, V, fast_exp, zero)  # out = softmax(row)
        # -log softmax(logits[b, i])[t] = log sum_v exp(l_v - m) - (l_t - m)
        nll[b, i] = np.log(total) - (row[tokens[b, i + 1]] - m)


def _run_softmax_nll(logits, tokens, nll, probs):
    B, T, V = logits.shape
    fast_exp = logits.dtype == np.float32
    run_chunks(B * (T - 1), lambda r0, r1: _softmax_nll(logits, tokens, nll, probs, fast_exp, r0, r1))


def _check(logits, tokens):
    (logits,) = as_floats("logits", logits)
    if logits.ndim != 3:
        raise ValueError(f"logits must be [B, T, V], got shape {logits.shape}")
    tokens = as_tokens(tokens, logits.shape[2])
    if tokens.shape != logits.shape[:2] or tokens.shape[1] < 2:
        raise ValueError(f"tokens must be [B, T] with T >= 2 matching logits {logits.shape}, "
                         f"got {tokens.shape}")
    return logits, tokens


def per_token_loss(logits, tokens):
    """Numba twin of minih.ops.loss.per_token_loss: -log p(tokens[b, i+1] | ...) -> [B, T-1]"""
    logits, tokens = _check(logits, tokens)
    B, T, V = logits.shape
    nll = np.empty((B, T - 1), dtype=logits.dtype)
    probs = np.empty((B, T - 1, V), dtype=logits.dtype)          # computed on the way, dropped
    _run_softmax_nll(logits, tokens, nll, probs)
    return nll


def cross_entropy_forward(logits, tokens):
    """Numba twin of minih.ops.loss.cross_entropy_forward.

    logits [B,T,V], tokens [B,T] -> mean next-token loss (float), probs [B,T-1,V]
    (the softmax of the predicting positions, which the backward needs).
    """
    logits, tokens = _check(logits, tokens)
    B, T, V = logits.shape
    nll = np.empty((B, T - 1), dtype=logits.dtype)
    probs = np.empty((B, T - 1, V), dtype=logits.dtype)
    _run_softmax_nll(logits, tokens, nll, probs)
    return float(nll.mean()), probs


@kernel()
def _cross_entropy_backward(probs, tokens, inv_n, d_logits, r0, r1):
    B, Tm1, V = probs.shape
    for r in range(r0, r1):                                      # row r = (b, i)
        b = r // (Tm1 + 1)
        i = r - b * (Tm1 + 1)
        if i == Tm1:                                             # the last position predicts nothing
            for c in range(V):
                d_logits[b, i, c] = 0
        else:                                                    # (softmax - onehot) / (B (T-1))
            for c in range(V):
                d_logits[b, i, c] = probs[b, i, c] * inv_n
            d_logits[b, i, tokens[b, i + 1]] -= inv_n


def cross_entropy_backward(probs, tokens):
    """Numba twin of minih.ops.loss.cross_entropy_backward: -> d_logits [B,T,V].

    d loss / d logits[b,i] = (probs[b,i] - onehot(tokens[b,i+1])) / (B*(T-1)); row T-1 is 0.
    """
    (probs,) = as_floats("probs", probs)
    B, Tm1, V = probs.shape
    tokens = as_tokens(tokens, V)
    if tokens.shape != (B, Tm1 + 1):
        raise ValueError(f"tokens must be [B, T] = {(B, Tm1 + 1)} for probs {probs.shape}, "
                         f"got {tokens.shape}")
    d_logits = np.empty((B, Tm1 + 1, V), dtype=probs.dtype)
    inv_n = probs.dtype.type(1.0 / (B * Tm1))
    run_chunks(B * (Tm1 + 1), lambda r0, r1: _cross_entropy_backward(probs, tokens, inv_n, d_logits,
                                                                     r0, r1))
    return d_logits
