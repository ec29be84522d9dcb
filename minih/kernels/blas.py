"""The big matrix products of the Numba backend, split over Numba's thread count.

Why not OpenBLAS's own threads: its worker threads busy-wait after each call, and
when anything else wants the cores (a browser, another job) that spinning cost 6-13x
on our shared 2-core machine (docs/04_numba.md, "Threads"). So the CLI runs BLAS on
one thread (OPENBLAS_NUM_THREADS=1, minih/__main__.py) and these helpers cut each
product into FIXED row chunks, computed by a small pool of Python threads (numpy
releases the GIL inside BLAS; idle pool threads sleep, they do not spin). The calling
thread computes chunks too, beside numba.get_num_threads() - 1 pool workers (3-5% faster
than waiting for a pool of all of them; docs/04_numba.md, "Threads"), so NUMBA_NUM_THREADS
sets every thread minih uses.

The chunks are fixed (N_CHUNKS), not one per thread: the result is bit-for-bit the
same on 1 thread and on 8 (tests/test_kernels.py checks it). run_tasks, the pool
itself, also runs the attention backward's chunks of (b, h) pairs on CPUs without
AVX-512 (kernels/attention_loops.py).

Shape legend: M rows, K the summed dimension, N columns.
"""
import threading
from concurrent.futures import ThreadPoolExecutor, wait

import numba
import numpy as np

N_CHUNKS = 4            # fixed row chunks per product (does not depend on the thread count)
MIN_ROWS = 1024         # below this a product is too small to be worth splitting
_pools = {}             # worker count -> ThreadPoolExecutor (kept: idle workers sleep)
_pools_lock = threading.Lock()


def _run_each(tasks):
    for t in tasks:
        t()


def run_tasks(tasks):
    """Run the zero-argument callables `tasks` on numba.get_num_threads() threads: the
    calling thread and a pool of the others. Thread w runs tasks w, w + n, w + 2n, ...
    (the calling thread is w = 0: it computes instead of waiting). Returns when every
    task has finished; an error of the calling thread's tasks is raised first, then
    the first worker's."""
    n = numba.get_num_threads()
    if n == 1 or len(tasks) == 1:
        _run_each(tasks)
        return
    with _pools_lock:                                            # one pool per thread count
        if n - 1 not in _pools:
            _pools[n - 1] = ThreadPoolExecutor(n - 1, thread_name_prefix="minih-blas")
        pool = _pools[n - 1]
    futures = [pool.submit(_run_each, tasks[w::n]) for w in range(1, n)]
    try:
        _run_each(tasks[0::n])
    finally:
        wait(futures)                                            # no task still writing after we return
    for f in futures:
        f.result()                                               # re-raises a worker's error


def _bounds(M):
    return [(c * M // N_CHUNKS, (c + 1) * M // N_CHUNKS) for c in range(N_CHUNKS)]


def matmul(a, b):
    """a [M,K] @ b [K,N] -> [M,N]; rows in N_CHUNKS fixed chunks (each row is one BLAS dot order)."""
    M = a.shape[0]
    if M < MIN_ROWS:
        return a @ b
    out = np.empty((M, b.shape[1]), dtype=np.result_type(a, b))
    run_tasks([lambda r0=r0, r1=r1: np.matmul(a[r0:r1], b, out=out[r0:r1]) for r0, r1 in _bounds(M)])
    return out


def matmul_tn(a, b):
    """a [M,K].T @ b [M,N] -> [K,N], the sum over M (a weight gradient) in N_CHUNKS fixed
    partial sums, added in a fixed order."""
    M = a.shape[0]
    if M < MIN_ROWS:
        return a.T @ b
    part = np.empty((N_CHUNKS, a.shape[1], b.shape[1]), dtype=np.result_type(a, b))  # [C,K,N]
    run_tasks([lambda c=c, r0=r0, r1=r1: np.matmul(a[r0:r1].T, b[r0:r1], out=part[c])
          for c, (r0, r1) in enumerate(_bounds(M))])
    return part.sum(axis=0)
