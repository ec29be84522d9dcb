"""The BLAS library's own thread count, read and set inside the running process.

Why: minih's Numba backend runs its work on its own threads (one per core), and each
of them calls BLAS for the big products. If the BLAS library also starts its own
threads for each of those calls, there are two threads per core, and OpenBLAS's
threads busy-wait between calls: a training step then takes 2-3x longer. The command
line used to fix this with OPENBLAS_NUM_THREADS=1 and a restart of the interpreter;
a library cannot restart its user's interpreter, so minih instead asks the BLAS
library itself, through its own set-number-of-threads function, to use one thread
while minih's threads run, and gives the old number back afterwards
(`single_threaded_blas`). Everything else in the process (your own numpy code) keeps
BLAS's default.

How the library is found: the shared libraries this process has loaded
(/proc/self/maps on Linux; the folders numpy and scipy ship their BLAS in elsewhere)
whose names say BLAS, each opened again by ctypes (the copy already loaded, not a new
one), and the first pair of thread functions it exports among KNOWN_FUNCTIONS: the
names of OpenBLAS (also as built for numpy and scipy's wheels, with a prefix and a
64-bit-integer suffix), MKL and BLIS. Where none is found, minih says so once, with
what to set instead.
"""
from __future__ import annotations

import ctypes
import glob
import os
import re
import sys
import threading
import warnings
from contextlib import contextmanager

# (set, get) function names, the first one a library exports is used
KNOWN_FUNCTIONS = (
    ("scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_"),   # numpy >= 2 wheels
    ("scipy_openblas_set_num_threads", "scipy_openblas_get_num_threads"),         # scipy wheels
    ("openblas_set_num_threads64_", "openblas_get_num_threads64_"),
    ("openblas_set_num_threads", "openblas_get_num_threads"),                     # system OpenBLAS
    ("MKL_Set_Num_Threads", "MKL_Get_Max_Threads"),                               # Intel MKL
    ("bli_thread_set_num_threads", "bli_thread_get_num_threads"),                 # BLIS
)
_BLAS_NAME = re.compile(r"(openblas|mkl_rt|libblis|libblas)[^/]*\.(so|dylib|dll)", re.IGNORECASE)


class BlasLibrary:
    """One loaded BLAS library and its thread functions."""

    def __init__(self, path: str, lib, set_name: str, get_name: str):
        self.path = path
        self._set = getattr(lib, set_name)
        self._set.argtypes, self._set.restype = [ctypes.c_int], None
        self._get = getattr(lib, get_name)
        self._get.argtypes, self._get.restype = [], ctypes.c_int

    def get(self) -> int:
        return int(self._get())

    def set(self, n: int) -> None:
        self._set(int(n))

    def __repr__(self):
        return f"BlasLibrary({os.path.basename(self.path)!r}, threads={self.get()})"


def _loaded_paths() -> list[str]:
    """Paths of the BLAS-looking shared libraries this process has loaded (numpy's first)."""
    import numpy                                       # noqa: F401  (loads numpy's BLAS)
    # and SciPy's: Numba compiles np.dot inside a kernel (minih/kernels/step.py) into a
    # call of SciPy's BLAS, which it loads only when such a kernel first runs; found later
    # than this, it would keep its own threads beside minih's (two shards' products then
    # took twice as long each)
    import scipy.linalg.cython_blas                    # noqa: F401
    paths = []
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                path = line.split()[-1] if line.strip() else ""
                if path.startswith("/") and _BLAS_NAME.search(os.path.basename(path)):
                    paths.append(path)
    except OSError:                                    # not Linux: the wheels' own folders
        for module in ("numpy", "scipy"):
            root = os.path.dirname(os.path.dirname(sys.modules[module].__file__)) \
                if module in sys.modules else None
            if root:
                for sub in (f"{module}.libs", f"{module}/.dylibs", f"{module}/.libs"):
                    paths += [p for p in glob.glob(os.path.join(root, sub, "*"))
                              if _BLAS_NAME.search(os.path.basename(p))]
    return list(dict.fromkeys(paths))


def _open(path: str) -> BlasLibrary | None:
    mode = getattr(os, "RTLD_NOLOAD", 0) | ctypes.RTLD_GLOBAL   # the loaded copy, never a new one
    try:
        lib = ctypes.CDLL(path, mode=mode)
    except OSError:
        return None
    for set_name, get_name in KNOWN_FUNCTIONS:
        if hasattr(lib, set_name) and hasattr(lib, get_name):
            return BlasLibrary(path, lib, set_name, get_name)
    return None


_libraries = None
_lock = threading.Lock()
_warned = False


def blas_libraries() -> list[BlasLibrary]:
    """Every loaded BLAS library whose thread count minih can set (found once, then kept)."""
    global _libraries
    with _lock:
        if _libraries is None:
            _libraries = [lib for lib in map(_open, _loaded_paths()) if lib is not None]
        return _libraries


def _warn_once() -> None:
    global _warned
    if not _warned:
        _warned = True
        warnings.warn("minih could not find the thread setting of the BLAS library numpy uses, "
                      "so BLAS may start its own threads beside minih's and slow the numba "
                      "backend down; set OPENBLAS_NUM_THREADS=1 (or MKL_NUM_THREADS=1) in the "
                      "environment before starting Python", RuntimeWarning, stacklevel=3)


_depth = 0          # nesting of single_threaded_blas blocks (only the outermost sets and restores)


@contextmanager
def single_threaded_blas():
    """Run the block with every loaded BLAS library on one thread; restore their counts after.

    Nested blocks do nothing more; the outermost restores what it found. Where no BLAS
    library can be controlled, warns once (see the module docstring) and runs the block.
    """
    global _depth
    libs = blas_libraries()
    if not libs and "OPENBLAS_NUM_THREADS" not in os.environ and "MKL_NUM_THREADS" not in os.environ:
        _warn_once()
    with _lock:
        _depth += 1
        outermost = _depth == 1
        before = [lib.get() for lib in libs] if outermost else []
        for lib, n in zip(libs, before):
            if n != 1:
                lib.set(1)
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            for lib, n in zip(libs, before):
                if n != 1:
                    lib.set(n)
