"""training/memory.py: inside kept_freed_memory() a freed large array stays with the process
for the next step; outside, glibc hands it back. Oracle: the process's resident set size
(/proc/self/statm) after allocating, touching and freeing 256 MiB."""
import numpy as np
import pytest

from minih.training import memory


def resident_bytes() -> int:
    import os
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


pytestmark = pytest.mark.skipif(not memory.available(), reason="not glibc: the block changes nothing")


def alloc_touch_free(n_bytes: int) -> int:
    """Resident bytes gained by allocating, touching and freeing an array of n_bytes."""
    before = resident_bytes()
    a = np.ones(n_bytes // 8)                   # touched: every page resident
    del a
    return resident_bytes() - before


def test_freed_memory_is_kept_inside_the_block_and_given_back_outside():
    size = 256 * 2 ** 20
    assert alloc_touch_free(size) < size // 4                     # default glibc: unmapped at once
    with memory.kept_freed_memory():
        with memory.kept_freed_memory():                          # nested blocks are fine
            kept = alloc_touch_free(size)
        assert kept > size * 3 // 4                               # freed, but kept for reuse
        assert alloc_touch_free(size) < size // 4                 # and reused: no new pages
    # after the block glibc's defaults are back: a fresh large array is mapped and unmapped
    assert alloc_touch_free(size) < size // 4
