"""Keep freed memory for the next training step, instead of giving it back to the system.

Why: a training step allocates its activations and gradients, frees them, and allocates
the same sizes again in the next step. With glibc's default settings, arrays above its
mmap threshold are mapped fresh for every step and handed back when freed, and freed
heap memory is trimmed back to the system; every step then pays for page faults and for
zeroing those pages again. On this project's 2-core AMD EPYC VM a REF step on the numba
backend took 491-565 ms with the defaults and 435-519 ms with the two settings below
(three interleaved runs each), whether set in the environment or here, in-process.

`kept_freed_memory()` sets them with glibc's `mallopt` for the duration of a block:
    M_MMAP_MAX = 0         no fresh mappings: large arrays come from the heap too
    M_TRIM_THRESHOLD = 1 GiB   freed heap memory is kept for reuse, up to 1 GiB
and puts glibc's defaults back after it (65536 mappings, a 128 KiB trim threshold; one
side effect: glibc's own adjustment of its mmap threshold stays off after that, as
after any mallopt call). `minih.train` (and so reproduce and sweep) trains inside it;
code that writes its own loop around `loss_and_grads` can wrap the loop the same way.
We do not change your allocator behind your back anywhere else: while the block runs,
the process keeps its peak heap instead of shrinking between steps.

Elsewhere than glibc (macOS, Windows, musl) the block changes nothing.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import threading
from contextlib import contextmanager

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4          # glibc's mallopt parameter numbers
KEPT = {M_MMAP_MAX: 0, M_TRIM_THRESHOLD: 2 ** 30}
DEFAULTS = {M_MMAP_MAX: 65536, M_TRIM_THRESHOLD: 128 * 1024}

_lock = threading.Lock()
_depth = 0


def _mallopt():
    """glibc's mallopt(param, value) -> 1 on success, or None where there is none."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        f = libc.mallopt
    except (OSError, AttributeError):
        return None
    f.argtypes, f.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return f


_MALLOPT = _mallopt()


def available() -> bool:
    """Whether this process's C library has glibc's mallopt (else the block does nothing)."""
    return _MALLOPT is not None


@contextmanager
def kept_freed_memory():
    """Run the block with freed memory kept for reuse (module docstring); nested blocks
    do nothing more, and the outermost puts glibc's defaults back."""
    global _depth
    with _lock:
        _depth += 1
        if _depth == 1 and _MALLOPT is not None:
            for param, value in KEPT.items():
                _MALLOPT(param, value)
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _MALLOPT is not None:
                for param, value in DEFAULTS.items():
                    _MALLOPT(param, value)
