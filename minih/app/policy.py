"""The command line's environment policy (applied by minih/__main__.py before a command runs).

Thread policy of the command line (docs/04_numba.md, "Threads"), applied only where you
have not set the variable yourself:
  - OPENBLAS_NUM_THREADS=1: OpenBLAS's worker threads busy-wait between calls, and on
    a machine where anything else runs they take the cores from the threads that have
    work (a REF step took several times as long). minih's own parallelism
    (minih.kernels.threads, for the batch's shards, the kernels and the big products) uses
    NUMBA_NUM_THREADS threads instead.
  - OMP_WAIT_POLICY=passive: OpenMP worker threads then sleep at once when a parallel
    loop ends instead of spinning. minih's kernels no longer use Numba's OpenMP pool,
    but it still applies to other OpenMP code in the process (your own parallel=True
    functions). Not to PyTorch in `minih bench`: it made torch eager's REF step slower
    (docs/04_numba.md, "The benchmark").
Memory policy, also applied only where unset: MALLOC_MMAP_MAX_=0 and
MALLOC_TRIM_THRESHOLD_=2**30 (1 GiB) tell glibc's malloc to keep freed memory for the next
allocation instead of handing it back to the kernel. Why: a step frees its arrays and
allocates them again the next step (in a REF shard they are up to 1 MB: its logits), and
with glibc's defaults part of that memory goes back to the kernel in between, whose pages
must then be faulted in and zeroed again on first touch: thousands of page faults a REF
step. Both variables are needed: setting either one switches off glibc's dynamic mmap
threshold, so the trim threshold alone is slower than the defaults (docs/04_numba.md,
"Memory", has the measurements). The heap then stays at its peak size instead of
shrinking between steps.

OpenBLAS reads its variable once, when numpy loads it, and `python -m minih` has
already imported numpy (through minih/__init__.py) before this file runs, so the
process restarts itself once with the variables set. A value you set is never changed.
The names of the variables the policy added are kept in MINIH_POLICY_ADDED, so that
`minih bench` can run PyTorch as its users run it, without them (minih/app/bench.py);
one you have since set to another value is yours again.
"""
import os

POLICY = {
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_WAIT_POLICY": "passive",            # read when the first parallel loop starts
    "MALLOC_MMAP_MAX_": "0",                 # glibc reads these two at process start
    # 1 GiB; a far larger value (1e11) measured slower on glibc 2.36, cause unknown
    "MALLOC_TRIM_THRESHOLD_": str(2 ** 30),
}
# read by C libraries at process start: if one was unset, restart once with it set
POLICY_RESTART_VARIABLES = ("OPENBLAS_NUM_THREADS", "MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_")
ADDED = "MINIH_POLICY_ADDED"   # comma-separated names of the variables the policy set


def policy_added(environ=os.environ) -> list:
    """The names of the variables the command line's policy set (not you), once each: those
    listed in ADDED that still hold the policy's value (a child process inherits the list;
    a variable set to another value since then is the user's)."""
    names = dict.fromkeys(k for k in environ.get(ADDED, "").split(",") if k)
    return [k for k in names if k in POLICY and environ.get(k) == POLICY[k]]


def apply_policy(environ=os.environ) -> bool:
    """Set every variable of POLICY that environ lacks, adding its name to ADDED; return
    whether the process must restart (a variable read at process start was unset)."""
    added = [k for k in POLICY if k not in environ]
    for k in added:
        environ[k] = POLICY[k]
    if added:
        environ[ADDED] = ",".join(dict.fromkeys(policy_added(environ) + added))  # each once
    return any(k in added for k in POLICY_RESTART_VARIABLES)
