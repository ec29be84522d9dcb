"""minih's one thread pool: how every parallel kernel of the Numba backend uses the cores.

Every kernel that runs on several threads is a serial jitted function over a range of
independent items (rows, or (b, h) pairs), compiled with nogil=True so that threads
really run side by side. run_chunks cuts the items into consecutive chunks and
run_tasks computes them on numba.get_num_threads() threads: the calling thread and a
pool of the others. So NUMBA_NUM_THREADS (or numba.set_num_threads) sets every thread
minih uses; the BLAS products of blas.py run on the same pool.

Why not Numba's own parallel=True and prange: the parallel lowering multiplies the
compile time (attention forward 6.5 -> 4.4 s as a serial kernel, the BLAS attention
backward 5.2 -> 1.9 s, the loop backward 17.4 -> 4.6 s), and the serial kernels on
this pool ran as fast (docs/04_numba.md, "Threads", has the measurements).

Why consecutive chunks: thread w gets the w-th share of them, so with two threads the
calling thread always works on the first half of the batch, in the attention, the
LayerNorm and the BLAS products alike: the rows one kernel wrote are still in that
core's cache when the next reads them (dealing the chunks out in turn, w, w + n, ...,
made the REF step 2-3% slower; docs/04_numba.md).

Idle pool threads sleep; they do not spin (OpenBLAS's and OpenMP's threads can: see
blas.py). Chunks only decide which thread works, never a bit of a result: a kernel
whose items write partial sums (LayerNorm's d_w) keeps them in fixed chunks of its own.
"""
import threading
from concurrent.futures import ThreadPoolExecutor, wait

import numba

CHUNKS_PER_THREAD = 4   # run_chunks: chunks per thread (a little slack for uneven items)
_pools = {}             # worker count -> ThreadPoolExecutor (kept: idle workers sleep)
_pools_lock = threading.Lock()
_PREFIX = "minih-pool"   # the pool threads' names begin with this


def _run_each(tasks):
    for t in tasks:
        t()


def run_tasks(tasks):
    """Run the zero-argument callables `tasks` on numba.get_num_threads() threads: the
    calling thread and a pool of the others. With n threads, thread w runs the w-th of n
    consecutive shares of the list (the calling thread, w = 0, the first: it computes
    instead of waiting). Returns when every task has finished; an error of the calling
    thread's tasks is raised first, then the first worker's. A task may call run_tasks
    itself: inside a pool thread that call runs its tasks there, one after another (a
    worker waiting for the pool it belongs to would wait for ever)."""
    n = numba.get_num_threads()
    if n == 1 or len(tasks) == 1 or threading.current_thread().name.startswith(_PREFIX):
        _run_each(tasks)
        return
    with _pools_lock:                                            # one pool per thread count
        if n - 1 not in _pools:
            _pools[n - 1] = ThreadPoolExecutor(n - 1, thread_name_prefix=_PREFIX)
        pool = _pools[n - 1]
    share = [tasks[w * len(tasks) // n:(w + 1) * len(tasks) // n] for w in range(n)]
    futures = [pool.submit(_run_each, share[w]) for w in range(1, n) if share[w]]
    try:
        _run_each(share[0])
    finally:
        wait(futures)                                            # no task still writing after we return
    for f in futures:
        f.result()                                               # re-raises a worker's error


def run_chunks(n_items, f):
    """Call f(i0, i1) on consecutive chunks [i0, i1) that cover range(n_items) once,
    CHUNKS_PER_THREAD chunks per thread (fewer when there are fewer items), on run_tasks.
    f must compute each item whole, writing only that item's outputs."""
    n_chunks = max(1, min(n_items, CHUNKS_PER_THREAD * numba.get_num_threads()))
    bounds = [(c * n_items // n_chunks, (c + 1) * n_items // n_chunks) for c in range(n_chunks)]
    run_tasks([lambda i0=i0, i1=i1: f(i0, i1) for i0, i1 in bounds if i1 > i0])
