"""minih sets the BLAS library's thread count to 1 around its own threaded work and gives
it back afterwards, read through the library's own entry point, in a plain process: no
BLAS or OpenMP variable set, minih imported as a library (oracle: the count the library
reports before, inside a task of the thread pool, and after)."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json
import numba
numba.set_num_threads(2)                       # minih's pool: the caller and one worker
from minih.kernels.blas_threads import blas_libraries
from minih.kernels.threads import run_tasks
libs = blas_libraries()
out = {"found": [l.path for l in libs]}
if libs:
    lib = libs[0]
    if lib.get() == 1:                         # a 1-core machine: give BLAS 2 to see it change
        lib.set(2)
    out["before"] = lib.get()
    inside = []
    run_tasks([lambda: inside.append(lib.get()) for _ in range(4)])
    out["inside"] = list(inside)
    out["after"] = lib.get()
    run_tasks([lambda: run_tasks([lambda: inside.append(lib.get())]) for _ in range(2)])  # nested
    out["after_nested"] = lib.get()
    out["inside_nested"] = inside[4:]
print(json.dumps(out))
"""


def plain_env():
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OPENBLAS_", "OMP_", "MKL_", "MALLOC_", "MINIH_", "NUMBA_NUM_THREADS"))}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def test_blas_threads_set_and_restored_around_minih_threads():
    res = subprocess.run([sys.executable, "-c", CHILD], env=plain_env(), capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["found"], "numpy's BLAS library was not found in this process"
    if out["before"] == 1:                         # the library caps itself at one core
        import pytest
        pytest.skip("this machine's BLAS runs on one thread only; nothing to set")
    assert out["inside"] == [1, 1, 1, 1]          # every task, on both threads, saw one BLAS thread
    assert out["after"] == out["before"] > 1      # and the user's count came back
    assert out["inside_nested"] == [1, 1]
    assert out["after_nested"] == out["before"]


def test_single_threaded_blas_nests_and_restores():
    from minih.kernels.blas_threads import blas_libraries, single_threaded_blas
    libs = blas_libraries()
    assert libs
    lib = libs[0]
    before = lib.get()
    with single_threaded_blas():
        assert lib.get() == 1
        with single_threaded_blas():
            assert lib.get() == 1
        assert lib.get() == 1                      # the inner block does not restore early
    assert lib.get() == before


CHILD_EVERY_LIBRARY = r"""
import json, re
from minih.kernels.blas_threads import blas_libraries, single_threaded_blas
libs = blas_libraries()                        # asked first, before any kernel has run
import numpy as np
import minih
cfg = minih.ModelConfig.preset("tiny")
params = minih.init_params(cfg, 0)
tokens = np.random.default_rng(0).integers(0, cfg.d_vocab, (2, cfg.n_ctx))
minih.loss_and_grads(params, tokens, cfg, backend="numba")   # np.dot inside the step kernel
with open("/proc/self/maps") as f:
    loaded = sorted({line.split()[-1] for line in f
                     if re.search(r"openblas[^/]*\.so", line.split()[-1], re.I)})
with single_threaded_blas():
    counts = [lib.get() for lib in libs]
print(json.dumps({"controlled": sorted(l.path for l in libs), "loaded": loaded, "counts": counts}))
"""


def test_every_loaded_blas_is_controlled_also_the_one_numba_calls():
    # oracle: the OpenBLAS libraries the process has mapped after a numba training step,
    # read from /proc/self/maps. Numba compiles np.dot in the whole-step kernel into calls
    # of SciPy's BLAS (another library than numpy's); found late, it kept its own threads
    # beside minih's and two shards' products took twice as long each. Every loaded one
    # must be among those minih sets to one thread, even when asked before any kernel ran
    import pytest
    if not os.path.exists("/proc/self/maps"):
        pytest.skip("needs /proc/self/maps (Linux) to list the loaded libraries")
    res = subprocess.run([sys.executable, "-c", CHILD_EVERY_LIBRARY], env=plain_env(),
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    if not out["loaded"]:
        pytest.skip("no OpenBLAS in this process (another BLAS): nothing to compare")
    assert set(out["loaded"]) <= set(out["controlled"]), out
    assert out["counts"] and all(n == 1 for n in out["counts"]), out
