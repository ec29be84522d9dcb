"""`python -m minih COMMAND ...` (and the `minih` console script): the command line.

It sets no environment variable and never restarts the interpreter: what the numba
backend needs of the BLAS library's threads and of the allocator, minih sets in-process
around its own work (minih/kernels/blas_threads.py, minih/training/memory.py), the same
for the command line as for your own scripts and notebooks.
"""
import sys


def entry() -> None:
    """Run the command line (both `python -m minih` and the `minih` console script)."""
    from .cli import main
    sys.exit(main())


if __name__ == "__main__":
    entry()
