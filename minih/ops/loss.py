"""Next-token softmax cross-entropy (the TransformerLens convention).

logits at positions 0..T-2 predict tokens 1..T-1; the loss is the mean over the
B*(T-1) predictions of -log softmax(logits[b, i])[tokens[b, i+1]].
"""
import numpy as np


def log_softmax(logits):
    """Stable log-softmax over the last axis: logits - logsumexp(logits)."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def per_token_loss(logits, tokens):
    """-log p(tokens[b, i+1] | tokens[b, :i+1]):  logits [B,T,V], tokens [B,T] -> [B, T-1]"""
    logp = log_softmax(logits[:, :-1])                           # [B,T-1,V]
    return -np.take_along_axis(logp, tokens[:, 1:, None], axis=-1)[..., 0]


def cross_entropy_forward(logits, tokens):
    """Mean next-token loss.  logits [B,T,V], tokens [B,T] -> loss (float), probs [B,T-1,V]

    `probs` (the softmax of the predicting positions) is what the backward needs.
    """
    logp = log_softmax(logits[:, :-1])                           # [B,T-1,V]
    nll = -np.take_along_axis(logp, tokens[:, 1:, None], axis=-1)  # [B,T-1,1]
    return float(nll.mean()), np.exp(logp)


def cross_entropy_backward(probs, tokens):
    """Gradient of the mean loss for `cross_entropy_forward`: -> d_logits [B,T,V].

    d loss / d logits[b,i] = (softmax(logits[b,i]) - onehot(tokens[b,i+1])) / (B*(T-1));
    the last position predicts nothing and gets zero.
    """
    B, Tm1, V = probs.shape
    d_logits = np.zeros((B, Tm1 + 1, V), dtype=probs.dtype)
    d_logits[:, :-1] = probs
    np.put_along_axis(d_logits[:, :-1], tokens[:, 1:, None],
                      np.take_along_axis(probs, tokens[:, 1:, None], axis=-1) - 1, axis=-1)
    d_logits /= B * Tm1
    return d_logits
