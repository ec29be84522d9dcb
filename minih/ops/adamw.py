"""AdamW update of one parameter array, in place (Loshchilov & Hutter; PyTorch's AdamW)."""
import numpy as np


def adamw_update(p, g, m, v, lr, beta1, beta2, eps, weight_decay, step, grad_scale=1.0):
    """One AdamW step on p, with moments m, v updated in place. `step` counts from 1.

        g      = grad_scale * g                       (gradient clipping, folded in)
        m      = beta1 * m + (1 - beta1) * g
        v      = beta2 * v + (1 - beta2) * g^2
        p      = p * (1 - lr * weight_decay)          (decoupled weight decay)
        p      = p - lr * (m / (1 - beta1^step)) / (sqrt(v / (1 - beta2^step)) + eps)
    """
    g = g * grad_scale
    m *= beta1
    m += (1 - beta1) * g
    v *= beta2
    v += (1 - beta2) * g * g
    bc1 = 1 - beta1 ** step                                      # bias corrections
    bc2 = 1 - beta2 ** step
    p *= 1 - lr * weight_decay
    p -= lr * (m / bc1) / (np.sqrt(v / bc2) + eps)
