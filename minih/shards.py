"""The batch of one training step in fixed shards, computed side by side, one thread each
(data parallelism, as on several GPUs, on the cores of one CPU). Both backends use it:
minih.ops and minih.kernels export this one over_batch_shards, so the readable NumPy
reference uses every core too, without a line of its ops changing. No jitted code here.

The loss is a mean over the batch's B sequences (T - 1 predictions each), so shards s of
B_s sequences give the batch's loss and gradients as
    loss = sum_s (B_s / B) loss_s,   grads[key] = sum_s (B_s / B) grads_s[key].
over_batch_shards cuts the batch into N_SHARDS fixed shards and runs them on
threads.run_tasks: each thread computes the whole model, forward and backward, on its
shards, and every kernel and product inside runs on that thread (threads.in_task).
NumPy releases Python's lock (the GIL) inside its array operations and BLAS, so the
numpy backend's shards run side by side as well: REF on the 2-core Intel Xeon, 2
threads, 258-263 ms a step for the whole batch at once, 140-143 ms in shards (numpy
backend, one process each, 2026-12-03; docs/04_numba.md, "The numpy backend"). To step
through a training step in a debugger, set NUMBA_NUM_THREADS=1: every shard then runs
in the calling thread, one after another.

Small batches are computed whole (MIN_SHARD_POSITIONS; the numba backend's kernels and
products may still split their own work over the threads): a shard's ops must be big enough that the threads spend their time inside NumPy and the kernels, not
waiting for each other for the GIL around the Python lines between them. Training steps
on the 2-core Intel Xeon, 2 threads, 2026-12-03 (ms a step, whole batch / 8 shards;
d_model 64 for all but REF): 128 positions a shard (induction-2l, B = 32, T = 32) numpy
7.3 / 15.1, numba 8.7 / 9.2; 256 (B = 16, T = 128) numpy 18.7 / 26.7, numba 12.0 /
12.8; 512 (B = 32, T = 128) numpy 37.9 / 35.3, numba 18.0 / 17.3; 768 (B = 48) numpy
60.7 / 47.6, numba 24.7 / 21.5; 1024 (SMALL, B = 64) numpy 81.4 / 55.1, numba 32.6 /
27.2; REF (d_model 128, 1024 a shard) numpy 258-263 / 140-143. The rule depends on the
batch's shape alone, never on the thread count, so the bits do not either.

Smaller still, a whole batch of fewer than MIN_SPLIT_POSITIONS = 2048 positions runs on
the calling thread alone: splitting its ops over the threads costs more wake-ups than it
saves. Numba backend, 2 layers x 4 heads, d_model 64 (128 for T = 256), ms a step, 2
threads / 1 (2026-12-03, 01:20 UTC): 1024 positions (B x T = 32 x 32, 8 x 128, 4 x 256)
8.8 / 5.0, 9.0 / 6.1, 10.9 / 10.2; 2048 (64 x 32, 16 x 128, 8 x 256) 10.3 / 8.9,
11.5 / 11.2, 16.1 / 19.0; 3072 (24 x 128) 14.6 / 16.3.

Why: with every op split over the threads instead, the two threads meet 39 times a REF
step, and each meeting costs a sleeping thread's wake-up (~75 us on our VM, each way),
while the NumPy glue between the ops runs on one core. With shards they meet once. REF,
2 threads, the project's Zen 4 machine: median step 125.2 -> 119.2 ms (one process,
the two ways alternating), and the peak memory of a step halves, 287 -> 155 MiB with
four shards (92 MiB with eight; docs/04_numba.md, "Threads").

Why fixed shards, not one per thread: the shards and the order of the sum depend on B
alone, so 1 thread and 8 give the same bits (tests/test_kernels.py). Why eight (of 4
sequences each for REF): a thread then holds an eighth of the batch's activations at a
time (for REF the two layers' attention patterns alone are 17 MB of it), which stays
nearer the core than a quarter. REF, in one process, 10 rounds of 5 steps alternating
N_SHARDS = 4, 8, 16 (2026-12-02, 2-core Intel Xeon with AVX-512): medians 93.7, 88.5,
86.8 ms on 2 threads, 174.8, 158.2, 156.0 ms on 1; on the Zen 4 machine 8 was within
3% of 4 (128.4 against 128.1 ms in one run, 122.9 against 119.2 in another) and 16
slower (134.0 ms): each shard also costs ~0.7 ms of Python glue. With more than eight
threads the extra ones wait.
"""
import numpy as np

from .threads import run_alone, run_tasks

N_SHARDS = 8   # fixed shards of the batch (fewer when B < N_SHARDS)
MIN_SHARD_POSITIONS = 512   # below this many positions per shard: the whole batch at once
MIN_SPLIT_POSITIONS = 2048  # a whole batch smaller than this runs on the calling thread alone


def shard_bounds(B: int):
    """The shards of a batch of B sequences: [(b0, b1), ...], consecutive, covering range(B)."""
    n = max(1, min(B, N_SHARDS))
    return [(s * B // n, (s + 1) * B // n) for s in range(n)]


def over_batch_shards(f, tokens):
    """(loss, grads) of the batch `tokens` [B, T], from f(tokens[b0:b1]) -> (loss_s, grads_s)
    on the shards of shard_bounds(B), side by side on threads.run_tasks:
        loss = sum_s (B_s / B) loss_s,   grads[key] = sum_s (B_s / B) grads_s[key],
    summed in shard order. A batch whose shards would hold fewer than MIN_SHARD_POSITIONS
    positions each (B * T / n_shards) is computed whole, f(tokens); below
    MIN_SPLIT_POSITIONS positions on the calling thread alone (threads.run_alone), above
    it with the numba backend's kernels and products split over the threads."""
    B, T = tokens.shape
    bounds = shard_bounds(B)
    if len(bounds) == 1 or B * T < MIN_SHARD_POSITIONS * len(bounds):
        return run_alone(lambda: f(tokens)) if B * T < MIN_SPLIT_POSITIONS else f(tokens)
    out = [None] * len(bounds)

    def shard(s, b0, b1):
        out[s] = f(tokens[b0:b1])

    run_tasks([lambda s=s, b0=b0, b1=b1: shard(s, b0, b1) for s, (b0, b1) in enumerate(bounds)])
    weights = [(b1 - b0) / B for b0, b1 in bounds]                # B_s / B
    loss = sum(w * loss_s for w, (loss_s, _) in zip(weights, out))
    grads = {}
    for key, g_first in out[0][1].items():
        g = np.multiply(g_first, g_first.dtype.type(weights[0]))  # a new array
        for w, (_, grads_s) in zip(weights[1:], out[1:]):
            g += grads_s[key] * g.dtype.type(w)
        grads[key] = g
    return loss, grads
