"""minih's one thread pool: how the batch's shards and every parallel kernel
of the Numba backend use the cores. Plain Python threads; Numba only says how many
(n_threads, which imports numba when first asked).

Every kernel that runs on several threads is a serial jitted function over a range of
independent items (rows, or (b, h) pairs), compiled with nogil=True so that threads
really run side by side. run_chunks cuts the items into consecutive chunks and
run_tasks computes them on numba.get_num_threads() threads: the calling thread and a
pool of the others. So NUMBA_NUM_THREADS (or numba.set_num_threads) sets every thread
minih uses; the BLAS products of kernels/blas.py run on the same pool, and so do the
shards of a training step's batch (minih/kernels/shards.py). Work started
inside a task stays on that task's thread (in_task): a shard runs every kernel and
product of the model there, and so does run_alone, for work too small to be worth
waking the other threads.

Why not Numba's own parallel=True and prange: the parallel lowering multiplies the
compile time (the attention kernels of an earlier version compiled 1.5-4x faster as
serial kernels), and the serial kernels on this pool ran as fast (docs/04_numba.md,
"Threads").

Why consecutive chunks: thread w gets the w-th share of them, so with two threads the
calling thread always works on the first half of the batch, in the attention, the
LayerNorm and the BLAS products alike: the rows one kernel wrote are still in that
core's cache when the next reads them (dealing the chunks out in turn, w, w + n, ...,
made the REF step a few per cent slower; docs/04_numba.md).

Idle pool threads sleep; they do not spin (OpenBLAS's and OpenMP's threads can: see
kernels/blas.py). While run_tasks runs minih's threads, the BLAS library is asked to use
one thread of its own (kernels/blas_threads.py), and gets its count back afterwards, so
there is never a BLAS thread beside each of ours; the rest of your program keeps BLAS's
default. Chunks only decide which thread works, never a bit of a result: a kernel
whose items write partial sums (LayerNorm's d_w) keeps them in fixed chunks of its own.
"""
import threading
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager

import numpy as np

from .blas_threads import single_threaded_blas

CHUNKS_PER_THREAD = 4   # run_chunks: chunks per thread (a little slack for uneven items)
_pools = {}             # worker count -> ThreadPoolExecutor (kept: idle workers sleep)
_pools_lock = threading.Lock()
_PREFIX = "minih-pool"   # the pool threads' names begin with this
_here = threading.local()  # .in_task: this thread runs a task of run_tasks (see in_task)


def n_threads() -> int:
    """numba.get_num_threads(): NUMBA_NUM_THREADS, or what numba.set_num_threads set.
    Numba is imported here, on first use (a plain-Python module of the Numba backend)."""
    import numba
    return numba.get_num_threads()


def in_task() -> bool:
    """Whether this thread is running a task of run_tasks (then nested calls run here)."""
    return getattr(_here, "in_task", False)


@contextmanager
def _as_task():
    """Mark this thread as running a task while the block runs (see in_task)."""
    before = in_task()
    _here.in_task = True
    try:
        yield
    finally:
        _here.in_task = before


def _run_each(tasks):
    """Run tasks one after another, marked as tasks: their own run_tasks calls run here."""
    with _as_task():
        for t in tasks:
            t()


def _run_share(tasks, err):
    """A pool worker's share: _run_each under err, the np.geterr() of the thread that
    handed it out. np.errstate is a thread's own setting (a context variable in NumPy 2),
    and a worker does not inherit it: without this, a shard of a diverging training step
    would warn about the overflows train.py silences."""
    with np.errstate(**err):
        _run_each(tasks)


def run_alone(f):
    """f() on the calling thread alone, marked as a task: every run_tasks and run_chunks
    call inside it runs here too, one chunk after another. For work too small to be worth
    waking the other threads (shards.py). Returns f()."""
    with _as_task():
        return f()


def run_tasks(tasks):
    """Run the zero-argument callables `tasks` on numba.get_num_threads() threads: the
    calling thread and a pool of the others. With n threads, thread w runs the w-th of n
    consecutive shares of the list (the calling thread, w = 0, the first: it computes
    instead of waiting). Returns when every task has finished; an error of the calling
    thread's tasks is raised first, then the first worker's.

    A task may call run_tasks itself (a shard of the batch, minih/kernels/shards.py, runs the
    whole model): that call runs its tasks in the task's own thread, one after another.
    The threads are busy with the outer tasks already, and a pool worker waiting for its
    own pool would wait for ever.
    """
    n = n_threads()
    if in_task() or len(tasks) == 1:                             # nested, or nothing to split:
        for t in tasks:                                          # run here, unmarked (a lone
            t()                                                  # task may still split its work)
        return
    if n == 1:                                                   # marked, as on n threads: what
        _run_each(tasks)                                         # a task computes must not
        return                                                   # depend on the thread count
    with _pools_lock:                                            # one pool per thread count
        if n - 1 not in _pools:
            _pools[n - 1] = ThreadPoolExecutor(n - 1, thread_name_prefix=_PREFIX)
        pool = _pools[n - 1]
    share = [tasks[w * len(tasks) // n:(w + 1) * len(tasks) // n] for w in range(n)]
    err = np.geterr()                                            # the workers run under it too
    # BLAS on one thread while ours run: its own threads beside them would be two per core
    with single_threaded_blas():
        futures = [pool.submit(_run_share, share[w], err) for w in range(1, n) if share[w]]
        try:
            _run_each(share[0])
        finally:
            wait(futures)                                        # no task still writing after we return
    for f in futures:
        f.result()                                               # re-raises a worker's error


def run_chunks(n_items, f):
    """Call f(i0, i1) on consecutive chunks [i0, i1) that cover range(n_items) once,
    CHUNKS_PER_THREAD chunks per thread (fewer when there are fewer items), on run_tasks;
    one chunk, f(0, n_items), on one thread or inside a task, where the chunks would run
    one after another anyway. f must compute each item whole, writing only that item's
    outputs (so the chunks never change a result)."""
    n = 1 if in_task() else n_threads()
    n_chunks = 1 if n == 1 else max(1, min(n_items, CHUNKS_PER_THREAD * n))
    bounds = [(c * n_items // n_chunks, (c + 1) * n_items // n_chunks) for c in range(n_chunks)]
    run_tasks([lambda i0=i0, i1=i1: f(i0, i1) for i0, i1 in bounds if i1 > i0])
