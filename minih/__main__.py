"""`python -m minih COMMAND ...`

Thread policy of the command line (measured in docs/04_numba.md, "Threads"), applied
only where you have not set the variable yourself:
  - OPENBLAS_NUM_THREADS=1: OpenBLAS's worker threads busy-wait between calls, and on
    a machine where anything else runs that cost 6-13x. minih's own parallelism
    (Numba's prange, and minih.kernels.blas for the big products) uses
    NUMBA_NUM_THREADS threads instead.
  - OMP_WAIT_POLICY=passive: Numba's OpenMP workers then sleep at once when a
    parallel loop ends instead of spinning (REF step on 2 threads, load ~2.3 from
    other jobs: 394-433 ms spinning, 305 ms passive).
OpenBLAS reads its variable once, when numpy loads it, and `python -m minih` has
already imported numpy (through minih/__init__.py) before this file runs, so the
process restarts itself once with the variables set. A value you set is never changed.
"""
import os
import sys


def entry() -> None:
    """Apply the thread policy (restarting once if needed), then run the command line.
    Both `python -m minih` and the `minih` console script come here."""
    if "OPENBLAS_NUM_THREADS" not in os.environ:
        os.environ["OPENBLAS_NUM_THREADS"] = "1"
        os.environ.setdefault("OMP_WAIT_POLICY", "passive")
        sys.stdout.flush()
        os.execv(sys.executable, [sys.executable, "-m", "minih", *sys.argv[1:]])
    os.environ.setdefault("OMP_WAIT_POLICY", "passive")  # read when the first parallel loop starts
    from .cli import main
    sys.exit(main())


if __name__ == "__main__":
    entry()
