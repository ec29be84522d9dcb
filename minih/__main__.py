"""`python -m minih COMMAND ...`

Thread policy of the command line (measured in docs/04_numba.md, "Threads"): BLAS on
one thread (OPENBLAS_NUM_THREADS=1) unless you set it yourself. OpenBLAS's worker
threads busy-wait between calls, and on a machine where anything else runs that
cost 6-13x; minih's own parallelism (Numba's prange, and minih.kernels.blas for the
big products) uses NUMBA_NUM_THREADS threads that sleep when idle. OpenBLAS reads the
variable once, when numpy loads it, and `python -m minih` has already imported numpy
(through minih/__init__.py) before this file runs, so the process restarts itself
once with the variable set. A value you set is never changed.
"""
import os
import sys

if "OPENBLAS_NUM_THREADS" not in os.environ:
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    sys.stdout.flush()
    os.execv(sys.executable, [sys.executable, "-m", "minih", *sys.argv[1:]])

from .cli import main  # noqa: E402  (after the restart above)

sys.exit(main())
