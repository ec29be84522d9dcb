"""The big matrix products of the Numba backend, split over the threads of minih/kernels/threads.py.

Why not OpenBLAS's own threads: its worker threads busy-wait after each call, and
when anything else wants the cores (a browser, another job) that spinning cost 6-13x
on our shared 2-core machine (docs/04_numba.md, "Threads"). So the CLI runs BLAS on
one thread (OPENBLAS_NUM_THREADS=1, minih/__main__.py) and these helpers cut each
product into FIXED row chunks, computed on minih's thread pool (threads.run_tasks:
numpy releases the GIL inside BLAS; the calling thread computes chunks too, and idle
pool threads sleep), so NUMBA_NUM_THREADS sets every thread minih uses.

The chunks are fixed (N_CHUNKS), not one per thread: the result is bit-for-bit the
same on 1 thread and on 8 (tests/test_kernels.py checks it). Inside a task of
threads.run_tasks (a shard of a training step's batch, minih/kernels/shards.py, or a small batch
computed whole in threads.run_alone) a product is one BLAS call: there its chunks would
run one after another on the task's thread, 2-10% slower than one call (measured on
[2048, 128] products, a REF shard when shards had 8 sequences).

Shape legend: M rows, K the summed dimension, N columns.
"""
import numpy as np

from .threads import in_task, run_tasks

N_CHUNKS = 4            # fixed row chunks per product (does not depend on the thread count)
MIN_ROWS = 1024         # below this a product is too small to be worth splitting


def _bounds(M):
    return [(c * M // N_CHUNKS, (c + 1) * M // N_CHUNKS) for c in range(N_CHUNKS)]


def matmul(a, b):
    """a [M,K] @ b [K,N] -> [M,N]; rows in N_CHUNKS fixed chunks (each row is one BLAS dot order)."""
    M = a.shape[0]
    if M < MIN_ROWS or in_task():
        return a @ b
    out = np.empty((M, b.shape[1]), dtype=np.result_type(a, b))
    run_tasks([lambda r0=r0, r1=r1: np.matmul(a[r0:r1], b, out=out[r0:r1]) for r0, r1 in _bounds(M)])
    return out


def matmul_tn(a, b):
    """a [M,K].T @ b [M,N] -> [K,N], the sum over M (a weight gradient) in N_CHUNKS fixed
    partial sums, added in a fixed order."""
    M = a.shape[0]
    if M < MIN_ROWS or in_task():
        return a.T @ b
    part = np.empty((N_CHUNKS, a.shape[1], b.shape[1]), dtype=np.result_type(a, b))  # [C,K,N]
    run_tasks([lambda c=c, r0=r0, r1=r1: np.matmul(a[r0:r1].T, b[r0:r1], out=part[c])
          for c, (r0, r1) in enumerate(_bounds(M))])
    return part.sum(axis=0)
