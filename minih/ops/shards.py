"""The batch of one training step, computed whole: the reference of minih.kernels.shards.

model.loss_and_grads hands the batch to over_batch_shards. The reference has no threads
and computes the whole batch at once. Its Numba twin cuts the batch into fixed shards,
one thread each, and combines their results with the formula below.
"""


def over_batch_shards(f, tokens):
    """f(tokens) -> (loss, grads): here the whole batch at once.

    The loss is a mean over the batch's B sequences (T - 1 predictions each), so shards s
    of B_s sequences give the same loss and gradients as
        loss = sum_s (B_s / B) loss_s,   grads[key] = sum_s (B_s / B) grads_s[key]
    which is what the Numba twin computes.
    """
    return f(tokens)
