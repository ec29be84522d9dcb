"""The batch of one training step in fixed shards, computed side by side, one thread each
(data parallelism, as on several GPUs, on the cores of one CPU). The Numba backend's
loss_and_grads runs through it; the NumPy reference computes the whole batch plainly,
on the calling thread. No jitted code here.

The loss is a mean over the batch's B sequences (T - 1 predictions each), so shards s of
B_s sequences give the batch's loss and gradients as
    loss = sum_s (B_s / B) loss_s,   grads[key] = sum_s (B_s / B) grads_s[key].
over_batch_shards cuts the batch into N_SHARDS fixed shards and runs them on
threads.run_tasks: each thread computes the whole model, forward and backward, on its
shards, and every kernel and product inside runs on that thread (threads.in_task). The
kernels are compiled with nogil=True and BLAS releases Python's lock (the GIL), so the
shards really run side by side.
Why shards: the threads meet once a step instead of at each of ~39 ops, and a thread
holds an eighth of the batch's activations at a time (REF's peak memory 287 -> 92 MiB;
65 MiB since the backward recomputes the pattern).

Two size rules, both measured (docs/04_numba.md, "Shard sizes"):
  - as many shards as hold MIN_SHARD_POSITIONS = 512 positions each (B * T / n_shards, on
    average), at most N_SHARDS: smaller ones spend their time waiting for the GIL
    (induction-2l, 128 positions a shard: numpy 7.3 ms a step whole, 15.1 ms in shards).
    So the 32 x 32 batches of the induction-task models and the 4 x 256 of the text models
    run as two shards, one per core: on 2 threads 1.18x (induction-2l), 1.44x (with MLPs)
    and 1.50-1.61x (text-1l, text-2l) the tokens/s of the whole batch on its own thread;
    on 1 thread the second shard's fixed cost makes them 3-10% slower;
  - a batch of one shard (fewer than 1024 positions, or one sequence) with fewer than
    MIN_SPLIT_POSITIONS = 2048 positions runs on the calling thread alone
    (threads.run_alone): splitting its ops over the threads costs more wake-ups than it
    saves. Above it the numba backend's kernels and products split their own work.
Both rules, the shards and the order of the sum depend on B and T alone, never on the
thread count, so neither do the bits (tests/test_kernels.py). N_SHARDS = 8 was the
fastest of 4, 8 and 16 for REF (docs/04_numba.md, "Threads"). To step through a
numba training step in a debugger, set NUMBA_NUM_THREADS=1: every shard then runs in
the calling thread, one after another (or use backend="numpy", which has no threads).
"""
import numpy as np

from .blas_threads import single_threaded_blas
from .threads import run_alone, run_tasks

N_SHARDS = 8   # fixed shards of the batch (fewer when B < N_SHARDS)
MIN_SHARD_POSITIONS = 512   # positions a shard holds at least (on average); fewer: fewer shards
MIN_SPLIT_POSITIONS = 2048  # a whole batch smaller than this runs on the calling thread alone


def shard_bounds(B: int, T: int):
    """The shards of a batch of B sequences of T positions: [(b0, b1), ...], consecutive,
    covering range(B). As many shards as hold MIN_SHARD_POSITIONS positions each on
    average, at most N_SHARDS and at most B; at least one (the whole batch)."""
    n = max(1, min(B, N_SHARDS, B * T // MIN_SHARD_POSITIONS))
    return [(s * B // n, (s + 1) * B // n) for s in range(n)]


def over_shards(f, tokens) -> None:
    """f(b0, b1) for every shard of shard_bounds(B, T), with over_batch_shards' threads:
    side by side on threads.run_tasks, or, for a batch of one shard, on the calling
    thread alone below MIN_SPLIT_POSITIONS positions (f's ops split over the threads
    above). BLAS on one thread throughout, as there."""
    B, T = tokens.shape
    bounds = shard_bounds(B, T)
    # BLAS on one thread of its own: the numba backend splits the big products over
    # minih's threads itself (kernels/blas.py), and a small step's products gain nothing
    # from BLAS's threads but their busy-waiting (kernels/blas_threads.py)
    with single_threaded_blas():
        if len(bounds) == 1:
            if B * T < MIN_SPLIT_POSITIONS:
                run_alone(lambda: f(0, B))
            else:
                f(0, B)
            return
        run_tasks([lambda b0=b0, b1=b1: f(b0, b1) for b0, b1 in bounds])


def over_batch_shards(f, tokens):
    """(loss, grads) of the batch `tokens` [B, T], from f(tokens[b0:b1]) -> (loss_s, grads_s)
    on the shards of shard_bounds(B), side by side on threads.run_tasks:
        loss = sum_s (B_s / B) loss_s,   grads[key] = sum_s (B_s / B) grads_s[key],
    summed in shard order. A batch of one shard (fewer than 2 * MIN_SHARD_POSITIONS
    positions, or one sequence) is computed whole, f(tokens): below MIN_SPLIT_POSITIONS
    positions on the calling thread alone (threads.run_alone), above it with the numba
    backend's kernels and products split over the threads."""
    B, T = tokens.shape
    bounds = shard_bounds(B, T)
    out = {}

    def shard(b0, b1):
        out[b0] = f(tokens[b0:b1])

    over_shards(shard, tokens)
    if len(bounds) == 1:
        return out[0]
    out = [out[b0] for b0, _ in bounds]
    weights = [(b1 - b0) / B for b0, b1 in bounds]                # B_s / B
    loss = sum(w * loss_s for w, (loss_s, _) in zip(weights, out))
    grads = {}
    for key, g_first in out[0][1].items():
        g = np.multiply(g_first, g_first.dtype.type(weights[0]))  # a new array
        for w, (_, grads_s) in zip(weights[1:], out[1:]):
            g += grads_s[key] * g.dtype.type(w)
        grads[key] = g
    return loss, grads
