"""Numba twin of minih.ops.adamw: the AdamW update of one parameter, in place, in one pass.

The reference makes about ten passes over the parameter with temporaries; the
kernel reads g, m, v, p once and writes m, v, p once. LLVM vectorises the loop by
itself, since a division no longer tests for zero first (_jit.kernel, error_model).
Elements are independent, so they could be split over the threads (minih/kernels/threads.py),
but the largest REF parameter has 33k entries (21 us of work): less than handing
chunks to a thread costs.
"""
import numba
import numpy as np

from ._jit import FASTMATH, as_floats

# FASTMATH without "arcp" and "afn" (approximate reciprocals and functions). With them the
# vectorised loop and its scalar remainder rounded some numbers differently (1 in ~10^4
# in float64), so a number's update depended on where in its array it sat; the fused
# training (minih/training/fused.py) updates the weights laid out otherwise than the
# params dict, and must take the same steps, bit for bit, as one call per parameter
EXACT_DIVISION = FASTMATH - {"arcp", "afn"}


@numba.njit(fastmath=EXACT_DIVISION, cache=True, nogil=True, error_model="numpy",
            no_cfunc_wrapper=True)
def _adamw_update(p, g, m, v, lr, beta1, beta2, eps, weight_decay, bc1, bc2, grad_scale):
    for n in range(p.size):
        gn = g[n] * grad_scale                                   # clipping, folded in
        m[n] = beta1 * m[n] + (1 - beta1) * gn
        v[n] = beta2 * v[n] + (1 - beta2) * gn * gn
        p_n = p[n] * (1 - lr * weight_decay)                     # decoupled weight decay
        p[n] = p_n - lr * (m[n] / bc1) / (np.sqrt(v[n] / bc2) + eps)


def adamw_update(p, g, m, v, lr, beta1, beta2, eps, weight_decay, step, grad_scale=1.0):
    """Numba twin of minih.ops.adamw.adamw_update: one AdamW step on p, m and v in place.

        g = grad_scale * g;  m = beta1 m + (1-beta1) g;  v = beta2 v + (1-beta2) g^2
        p = p (1 - lr wd) - lr (m / (1-beta1^step)) / (sqrt(v / (1-beta2^step)) + eps)
    p, m, v must be C-contiguous (they are updated in place); g may be any layout.
    """
    for name, a in (("p", p), ("m", m), ("v", v)):
        if not isinstance(a, np.ndarray) or not a.flags.c_contiguous or not a.flags.writeable:
            raise ValueError(f"{name} must be a writeable C-contiguous numpy array (updated in place)")
    p_, g_, m_, v_ = as_floats("p g m v", p, g, m, v)
    if g_.shape != p.shape or m.shape != p.shape or v.shape != p.shape:
        raise ValueError(f"p, g, m, v must share one shape, got {p.shape}, {g_.shape}, "
                         f"{m.shape}, {v.shape}")
    if step < 1:
        raise ValueError(f"step counts from 1, got {step}")
    f = p.dtype.type                                             # scalars in p's dtype
    _adamw_update(p.reshape(-1), g_.reshape(-1), m.reshape(-1), v.reshape(-1), f(lr), f(beta1),
                  f(beta2), f(eps), f(weight_decay), f(1 - beta1 ** step), f(1 - beta2 ** step),
                  f(grad_scale))
