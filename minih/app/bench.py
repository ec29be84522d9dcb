"""`python -m minih bench`: training speed of the numpy and numba backends, side by side
with the same model in PyTorch (eager and torch.compile) when torch is importable.

For each config (REF, SMALL, and each model shape `reproduce` trains: CONFIGS) it measures,
in one run on one machine:
  - tokens/s of a full training step (forward, backward, AdamW) per implementation,
    each in its own fresh Python process with the same thread count, `--steps` timed
    steps after `--warmup` untimed ones, repeated in `--rounds` interleaved rounds
    (numpy, numba, torch, ..., numpy, numba, ...); the median over all timed steps;
    also tokens per CPU-second of the process (all its threads), which other jobs
    on a shared machine disturb less than wall time;
  - the achieved GFLOP/s (useful FLOPs only, see step_flops) against the machine's
    own float32 matmul GFLOP/s, measured in the same run (a 2048^3 np.matmul with
    OpenBLAS on all the run's threads, whatever OPENBLAS_NUM_THREADS the minih runs use);
  - the ratios numba / torch eager, numba / torch.compile, numpy / torch eager;
and once: the numba cold start (a fresh NUMBA_CACHE_DIR, so every kernel compiles)
and warm start (the same cache again), each in a new Python process; and whether a
REF training step leaves memory behind (memory_growth). Last, minih's speed targets
against this run's numbers (target_checks: met, NOT met, or not measured).
Results go to a JSON file and a short table. Docs: docs/04_numba.md.

Shape legend: B = batch, T = positions, D = d_model, H = n_heads, E = d_head, V = d_vocab
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

from ..config import ModelConfig

# the benchmark shapes: (overrides, batch). REF and SMALL, the machine-filling shapes of the
# speed targets; then every model shape `reproduce` trains (its full size), with its batch:
# the induction-task family (n_ctx 32, batch 32; the 2L generality model has the 2L shape),
# its smeared-key and MLP twins, and the plain-text models (n_ctx 256, batch 4). The names
# are the presets' (induction-2l, text-2l, ...) with what the family changes appended.
_TASK = dict(n_heads=4, d_model=64, d_head=16, n_ctx=32, d_vocab=32)
_TEXT = dict(n_heads=4, d_model=64, d_head=16, n_ctx=256, d_vocab=1024)
REPRODUCE_CONFIGS = {
    **{f"induction-{n}l": (dict(n_layers=n, **_TASK), 32) for n in (1, 2, 3)},
    **{f"induction-{n}l-smeared": (dict(n_layers=n, **_TASK, smeared_keys=True), 32) for n in (1, 2)},
    **{f"induction-{n}l-mlp": (dict(n_layers=n, **_TASK, d_mlp=256), 32) for n in (1, 2, 3)},
    **{f"text-{n}l": (dict(n_layers=n, **_TEXT), 4) for n in (1, 2, 3)},
}
CONFIGS = {
    "ref": (dict(n_layers=2, n_heads=8, d_model=128, d_head=16, n_ctx=256, d_vocab=256), 32),
    "small": (dict(n_layers=2, n_heads=4, d_model=64, d_head=16, n_ctx=128, d_vocab=64), 64),
    **REPRODUCE_CONFIGS,
}
# `--configs reproduce` names them all
CONFIG_GROUPS = {"reproduce": list(REPRODUCE_CONFIGS)}


def step_flops(cfg: ModelConfig, batch: int) -> float:
    """Useful FLOPs of one training step on a [batch, n_ctx] batch (multiply-add = 2).

    Forward, per layer: q, k, v projections 3 * 2*B*T*D*H*E; scores q k^T and
    pattern @ v over the causal triangle only, 2 * 2*B*H*E*T(T+1)/2; output
    projection 2*B*T*H*E*D; with an MLP, its two products 2 * 2*B*T*D*M. Then the
    unembedding 2*B*T*D*V. The backward of each product is two products of the same
    size, so a step is 3x the forward. The elementwise work (LayerNorm, softmax, GELU,
    AdamW) is not counted.
    """
    B, T, D, H, E, V, M = (batch, cfg.n_ctx, cfg.d_model, cfg.n_heads, cfg.d_head, cfg.d_vocab,
                           cfg.d_mlp)
    per_layer = (3 * 2 * B * T * D * H * E + 2 * 2 * B * H * E * T * (T + 1) / 2
                 + 2 * B * T * H * E * D + 2 * 2 * B * T * D * M)
    forward = cfg.n_layers * per_layer + 2 * B * T * D * V
    return 3.0 * forward


def matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
    """The machine's float32 matmul speed: best of `repeats` n x n x n np.matmul (OpenBLAS)."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n)).astype(np.float32) for _ in range(2))
    a @ b                                                        # warm up the BLAS threads
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n ** 3 / best / 1e9


def _timed(f) -> float:
    t0 = time.perf_counter()
    f()
    return time.perf_counter() - t0


def minih_tokens_per_s(cfg: ModelConfig, batch: int, backend: str, steps: int, warmup: int,
                       seed: int = 0) -> dict:
    """Median wall time of a training step as minih.train takes it with `backend`, as
    tokens/s (B*T per step): minih.optim.train_step, or with the numba backend, where the
    whole-step kernel applies, training/fused.py's step (the same bits, less around it)."""
    from ..optim import AdamWConfig, adamw_init, train_step
    from ..params import init_params
    from ..training.fused import FusedTraining
    params = init_params(cfg, seed)
    state, opt = adamw_init(params), AdamWConfig()
    tokens = np.random.default_rng(seed).integers(0, cfg.d_vocab, (batch, cfg.n_ctx))
    if backend == "numba" and FusedTraining.applies(batch, cfg.n_ctx):
        fused = FusedTraining(params, state, cfg)
        step = lambda: fused.step(tokens, opt)                            # noqa: E731
    else:
        step = lambda: train_step(params, state, tokens, cfg, opt, backend=backend)  # noqa: E731
    first = _timed(step)
    for _ in range(warmup):
        step()
    c0 = time.process_time()
    times = [_timed(step) for _ in range(steps)]
    cpu = (time.process_time() - c0) / steps
    med = float(np.median(times))
    return {"impl": f"minih {backend}", "first_step_s": first, "median_step_s": med,
            "step_times_s": times, "tokens_per_s": batch * cfg.n_ctx / med,
            "cpu_s_per_step": cpu, "tokens_per_cpu_s": batch * cfg.n_ctx / cpu}


def op_profile(cfg: ModelConfig, batch: int, backend: str, steps: int = 8, warmup: int = 2) -> dict:
    """Where a training step's time goes: wall and CPU ms per step of each op of the backend.

    Every public function of the backend module (minih.ops or minih.kernels) is wrapped
    in a timer for the duration of the measurement (and restored after), so each row is
    that op's total over one step: forward and backward are separate ops, and the layers
    are summed. "rest" is the step's CPU time minus the ops': model.py's own array
    arithmetic, the gradient dict, AdamW's Python loop. An op called outside the
    batch's shards may use every thread: its CPU time is the process's (it can exceed
    its wall time). Inside a shard (minih/kernels/shards.py) the op runs on its shard's thread
    alone while the other threads run other shards: its CPU time is that thread's, and
    its wall time is summed over the threads (so the rows add up to more than the step's
    wall time). over_batch_shards itself is not a row: it is the whole step.

    The numba backend trains with its whole-step kernel (minih/kernels/step.py), one
    call per shard, whose inside no timer can see. So the rows come from its op-by-op
    path (model.py calling each op; the same kernels), and "fused_step_wall_ms" is the
    median wall time of the step as training runs it.
    """
    from ..kernels.threads import in_task
    from ..model import get_backend
    from ..optim import AdamWConfig, adamw_init, train_step
    from ..params import init_params
    ops = get_backend(backend)
    wall, cpu = {}, {}
    lock = threading.Lock()                                      # shards time ops side by side

    def timed(name, f):
        def g(*args, **kwargs):
            clock = time.thread_time if in_task() else time.process_time
            t0, c0 = time.perf_counter(), clock()
            out = f(*args, **kwargs)
            dt, dc = time.perf_counter() - t0, clock() - c0
            with lock:
                wall[name] = wall.get(name, 0.0) + dt
                cpu[name] = cpu.get(name, 0.0) + dc
            return out
        return g

    whole_step = ("over_batch_shards", "fused_loss_and_grads", "fused_step_applies")
    names = [n for n in dir(ops) if not n.startswith("_") and callable(getattr(ops, n))
             and not isinstance(getattr(ops, n), type) and n not in whole_step]
    originals = {n: getattr(ops, n) for n in names}
    params = init_params(cfg, 0)
    state, opt = adamw_init(params), AdamWConfig()
    tokens = np.random.default_rng(0).integers(0, cfg.d_vocab, (batch, cfg.n_ctx))
    fused = None
    if hasattr(ops, "fused_step_applies") and ops.fused_step_applies(tokens):
        for _ in range(warmup):
            train_step(params, state, tokens, cfg, opt, backend=backend)
        fused = 1e3 * float(np.median([_timed(lambda: train_step(params, state, tokens, cfg, opt,
                                                                 backend=backend))
                                       for _ in range(steps)]))
    applies = getattr(ops, "fused_step_applies", None)
    try:
        if applies is not None:
            ops.fused_step_applies = lambda tokens: False           # the op-by-op path
        for n in names:
            setattr(ops, n, timed(n, originals[n]))
        for _ in range(warmup):
            train_step(params, state, tokens, cfg, opt, backend=backend)
        wall.clear(), cpu.clear()
        c0 = time.process_time()
        times = [_timed(lambda: train_step(params, state, tokens, cfg, opt, backend=backend))
                 for _ in range(steps)]
        step_cpu = (time.process_time() - c0) / steps
    finally:
        for n in names:
            setattr(ops, n, originals[n])
        if applies is not None:
            ops.fused_step_applies = applies
    rows = {n: (1e3 * wall[n] / steps, 1e3 * cpu[n] / steps) for n in sorted(wall, key=lambda n: -cpu[n])}
    return {"backend": backend, "fused_step_wall_ms": fused,
            "step_wall_ms": 1e3 * float(np.median(times)),
            "step_cpu_ms": 1e3 * step_cpu, "ops_ms": rows,
            "rest_cpu_ms": 1e3 * step_cpu - sum(c for _, c in rows.values()),
            "tokens_per_s": batch * cfg.n_ctx / float(np.median(times))}


def format_profile(name: str, prof: dict) -> str:
    op_by_op = " op by op" if prof.get("fused_step_wall_ms") else ""
    lines = [f"{name}, {prof['backend']}: step{op_by_op} {prof['step_wall_ms']:.1f} ms wall, "
             f"{prof['step_cpu_ms']:.1f} ms CPU ({prof['tokens_per_s']:.0f} tokens/s)"]
    if op_by_op:
        lines.append(f"  (as training runs it, the whole-step kernel: {prof['fused_step_wall_ms']:.1f} "
                     f"ms wall; the ops below are timed on the op-by-op path, the same kernels)")
    lines.append(f"  {'op':<28}{'wall ms':>9}{'CPU ms':>9}")
    lines += [f"  {n:<28}{w:>9.1f}{c:>9.1f}" for n, (w, c) in prof["ops_ms"].items()]
    lines.append(f"  {'rest (model.py, optimizer)':<28}{'':>9}{prof['rest_cpu_ms']:>9.1f}")
    return "\n".join(lines)


def memory_growth(cfg: ModelConfig, batch: int, steps: int = 10, backend: str = "numba") -> dict:
    """Bytes still held (tracemalloc, which sees every NumPy array) after 2 training steps
    and after 2 + `steps`: a step that keeps nothing alive leaves the two equal."""
    import tracemalloc

    from ..optim import AdamWConfig, adamw_init, train_step
    from ..params import init_params
    params = init_params(cfg, 0)
    state, opt = adamw_init(params), AdamWConfig()
    tokens = np.random.default_rng(0).integers(0, cfg.d_vocab, (batch, cfg.n_ctx))
    tracemalloc.start()
    try:
        for _ in range(2):
            train_step(params, state, tokens, cfg, opt, backend=backend)
        before, _ = tracemalloc.get_traced_memory()
        for _ in range(steps):
            train_step(params, state, tokens, cfg, opt, backend=backend)
        after, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return {"backend": backend, "steps": steps, "held_after_2_steps_bytes": before,
            f"held_after_{2 + steps}_steps_bytes": after, "growth_bytes": after - before,
            "peak_bytes": peak}


# a fresh process: import minih, one REF training step with the numba backend
_START_SCRIPT = """
import json, time
t0, c0 = time.perf_counter(), time.process_time()
import numpy as np, minih
from minih.optim import AdamWConfig, adamw_init, train_step
cfg = minih.ModelConfig(**{cfg})
params = minih.init_params(cfg, 0)
state = adamw_init(params)
tokens = np.random.default_rng(0).integers(0, cfg.d_vocab, ({batch}, cfg.n_ctx))
t1, c1 = time.perf_counter(), time.process_time()
train_step(params, state, tokens, cfg, AdamWConfig(), backend="numba")
t2, c2 = time.perf_counter(), time.process_time()
print(json.dumps({{"import_and_setup_s": t1 - t0, "first_step_s": t2 - t1, "total_s": t2 - t0,
                  "first_step_cpu_s": c2 - c1}}))
"""


def start_times(cfg_name: str = "ref") -> dict:
    """Cold start (every kernel compiles into an empty NUMBA_CACHE_DIR) and warm start
    (the same cache, loaded), each measured in a new Python process."""
    overrides, batch = CONFIGS[cfg_name]
    script = _START_SCRIPT.format(cfg=overrides, batch=batch)
    out = {}
    with tempfile.TemporaryDirectory(prefix="minih-numba-cache-") as cache_dir:
        env = _child_env({"NUMBA_CACHE_DIR": cache_dir})
        for label in ("cold", "warm"):
            res = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                                 text=True, check=True)
            out[label] = json.loads(res.stdout.strip().splitlines()[-1])
    return out


# Each measurement runs in its own Python process: one implementation's thread
# pools (OpenBLAS, Numba's, PyTorch's OpenMP) never compete with another's idle
# spinning threads, and every run starts from the same state.
_WORKER = "import json, sys; from minih.app.bench import _worker; print(json.dumps(_worker(json.loads(sys.argv[1]))))"


def _worker(spec: dict) -> dict:
    """Run one measurement described by `spec` (in a fresh process); return its result."""
    if spec["what"] == "matmul":
        return {"matmul_gflops": matmul_gflops()}
    overrides, batch = CONFIGS[spec["config"]]
    cfg = ModelConfig(**overrides)
    if spec["what"] in ("numpy", "numba"):
        from ..training.memory import kept_freed_memory
        with kept_freed_memory():                    # as minih.train runs its steps
            return minih_tokens_per_s(cfg, batch, spec["what"], spec["steps"], spec["warmup"])
    from .bench_torch import torch_tokens_per_s
    return torch_tokens_per_s(cfg, batch, spec["steps"], spec["warmup"], spec["threads"],
                              compiled=spec["what"] == "torch.compile")


def _child_env(env_changes: dict | None = None) -> dict:
    """This process's environment with env_changes (a value of None removes the
    variable), and this checkout first on PYTHONPATH."""
    env = {**os.environ, **(env_changes or {})}
    env = {k: v for k, v in env.items() if v is not None}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _in_subprocess(spec: dict, env_changes: dict | None = None) -> dict:
    """_worker(spec) in a fresh Python process: this one's environment with env_changes
    (a value of None removes the variable)."""
    res = subprocess.run([sys.executable, "-c", _WORKER, json.dumps(spec)], env=_child_env(env_changes),
                         capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"bench worker {spec} failed:\n{res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def merge_rounds(rounds: list) -> dict:
    """One implementation's result from its runs in several rounds (fresh processes each).

    The step times of every round are pooled: tokens/s = tokens per step / the median of
    all of them; CPU time per step is the mean over rounds. The rounds alternate the
    implementations (numpy, numba, torch, ..., numpy, numba, ...), so a burst of load from
    other processes falls on all of them rather than on one; `rounds` keeps each round's
    own median and tokens/s.
    """
    first = rounds[0]
    tokens_per_step = first["tokens_per_s"] * first["median_step_s"]
    times = [t for r in rounds for t in r["step_times_s"]]
    med = float(np.median(times))
    cpu = float(np.mean([r["cpu_s_per_step"] for r in rounds]))
    return {**first, "median_step_s": med, "step_times_s": times,
            "tokens_per_s": tokens_per_step / med, "cpu_s_per_step": cpu,
            "tokens_per_cpu_s": tokens_per_step / cpu,
            "rounds": [{"median_step_s": r["median_step_s"], "tokens_per_s": r["tokens_per_s"],
                        "first_step_s": r["first_step_s"]} for r in rounds]}


def _cpu_model() -> str:
    """The CPU's name ("AMD EPYC ..."): /proc/cpuinfo on Linux, else what platform says."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform
    return platform.processor()


def run_bench(configs=("ref", "small"), steps: int = 10, warmup: int = 2, torch: bool = True,
              compiled: bool = True, numpy_backend: bool = True, start: bool = True,
              memory: bool = True, rounds: int = 2) -> dict:
    """Every measurement of the module docstring, as one dict (what --out writes).

    Each implementation is measured `rounds` times, in fresh processes, the rounds
    interleaved; see merge_rounds.

    Every run, minih's and torch's alike, inherits this process's environment as you set
    it: the command line sets no variable, so the minih runs are minih as a library in a
    plain process (it sets the BLAS library's threads and the allocator in-process, around
    its own work: kernels/blas_threads.py, training/memory.py), and the torch runs are
    PyTorch as its users run it.
    """
    import platform

    import numba

    threads = numba.get_num_threads()
    result = {"machine": {"platform": platform.platform(), "processor": _cpu_model(),
                          "avx512": _cpu_has_avx512(),   # a Vec16 in one register, or two
                          "cpu_count": os.cpu_count(), "numba_threads": threads,
                          "numpy": np.__version__, "numba": numba.__version__,
                          "python": platform.python_version(),
                          "env": {k: os.environ[k] for k in ("NUMBA_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                                             "OMP_NUM_THREADS", "NUMBA_THREADING_LAYER",
                                                             "MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_")
                                  if k in os.environ},
                          "load_average_before": os.getloadavg()},
              "settings": {"steps": steps, "warmup": warmup, "rounds": rounds},
              # the machine's matmul speed: OpenBLAS on every thread of this run
              "matmul_gflops": _in_subprocess({"what": "matmul"}, {"OPENBLAS_NUM_THREADS": str(threads)})[
                  "matmul_gflops"], "configs": {}}
    from .bench_torch import torch_available
    with_torch = torch and torch_available()
    for name in configs:
        overrides, batch = CONFIGS[name]
        flops = step_flops(ModelConfig(**overrides), batch)
        jobs = ([("numpy", None)] if numpy_backend else []) + [("numba", None)]
        if with_torch:
            jobs += [("torch", None)] + ([("torch.compile", None)] if compiled else [])
        runs = [[] for _ in jobs]                                 # runs[job] = its result per round
        for _ in range(rounds):
            for job, (what, env) in enumerate(jobs):
                spec = {"what": what, "config": name, "steps": steps, "warmup": warmup,
                        "threads": threads}
                runs[job].append(_in_subprocess(spec, env))
        rows = []
        for (what, env), job_runs in zip(jobs, runs):
            row = merge_rounds(job_runs)
            if env:
                row["impl"] += " (" + ", ".join(f"{k}={v}" for k, v in env.items()) + ")"
                row["env"] = env
            rows.append(row)
        for row in rows:
            row["gflops"] = flops / row["median_step_s"] / 1e9
            row["fraction_of_matmul"] = row["gflops"] / result["matmul_gflops"]
        by = {row["impl"]: row["tokens_per_s"] for row in rows}
        ratios = {}
        for num, den in (("minih numba", "torch eager"), ("minih numba", "torch.compile"),
                         ("minih numpy", "torch eager"), ("minih numba", "minih numpy")):
            if num in by and den in by:
                ratios[f"{num} / {den}"] = by[num] / by[den]
        result["configs"][name] = {"config": overrides, "batch": batch, "step_gflop": flops / 1e9,
                                   "results": rows, "ratios": ratios}
    if start:
        result["numba_start_ref"] = start_times("ref")
    if memory:
        overrides, batch = CONFIGS["ref"]
        result["numba_memory_ref"] = memory_growth(ModelConfig(**overrides), batch)
    result["machine"]["load_average_after"] = os.getloadavg()
    return result


# minih's speed targets, measured in one run: (what, the measured value's key, kind, target,
# unit). Kind "at least" passes at value >= target, "under" at value < target. TARGETS are
# read on REF; CONFIG_TARGETS on every config `reproduce` trains that the run measured.
MEMORY_GROWTH_LIMIT = 1000   # bytes held after 10 further steps: a leak of 100 B a step fails
TARGETS = [
    ("numba >= 50% of the float32 matmul", "numba of matmul", "at least", 0.50, "%"),
    ("numpy >= 0.5x torch eager", "minih numpy / torch eager", "at least", 0.5, "x"),
    ("cold start (compile) < 20 s", "cold first step", "under", 20.0, "s"),
    ("warm start first step < 3 s", "warm first step", "under", 3.0, "s"),
    (f"memory held after 10 more steps < {MEMORY_GROWTH_LIMIT} B", "memory growth", "under",
     MEMORY_GROWTH_LIMIT, "B"),
]
CONFIG_TARGETS = [
    ("numba >= 2x torch eager", "minih numba / torch eager", "at least", 2.0, "x"),
    ("numba >= 1.5x torch.compile", "minih numba / torch.compile", "at least", 1.5, "x"),
]
TARGET_BY_NAME = {row[0]: row for row in TARGETS + CONFIG_TARGETS}


def _meets(kind: str, value, target) -> bool:
    """Whether value meets a target of this kind ("at least" or "under")."""
    return bool(value >= target) if kind == "at least" else bool(value < target)


def target_checks(result: dict) -> list:
    """The speed targets against this run's numbers: [(target, measured, unit, met)].

    First TARGETS on REF, each named "REF: <target>"; then CONFIG_TARGETS for each config
    `reproduce` trains that the run measured, named "<config>: <target>", or, when the run
    measured none, one row per target named "reproduce's configs: <target>". measured and
    met are None where the run did not measure it (no torch, --no-start, --no-memory, no
    REF, no reproduce config). Reads `result` only."""
    configs = result.get("configs", {})
    ref = configs.get("ref", {})
    measured = dict(ref.get("ratios", {}))
    for row in ref.get("results", []):
        if row["impl"] == "minih numba":
            measured["numba of matmul"] = row["fraction_of_matmul"]
    if "numba_start_ref" in result:
        measured["cold first step"] = result["numba_start_ref"]["cold"]["first_step_s"]
        measured["warm first step"] = result["numba_start_ref"]["warm"]["first_step_s"]
    if "numba_memory_ref" in result:
        measured["memory growth"] = result["numba_memory_ref"]["growth_bytes"]
    checks = []
    for what, key, kind, target, unit in TARGETS:
        value = measured.get(key)
        checks.append((f"REF: {what}", value, unit, None if value is None else _meets(kind, value, target)))
    trained = [name for name in configs if name in REPRODUCE_CONFIGS] or ["reproduce's configs"]
    for name in trained:
        ratios = configs.get(name, {}).get("ratios", {})
        for what, key, kind, target, unit in CONFIG_TARGETS:
            value = ratios.get(key)
            checks.append((f"{name}: {what}", value, unit,
                           None if value is None else _meets(kind, value, target)))
    return checks


def _shown(what: str, value, unit: str, met: bool) -> str:
    """value as the table prints it ("1.47x", "41%", "8.04 s", "80 B"), with more decimals
    where the usual ones would round it onto the target (0.398 -> "39.8%", not "40%" beside
    NOT met), so that the number shown agrees with the verdict."""
    scale, suffix, decimals = {"x": (1, "x", 2), "%": (100, "%", 0), "s": (1, " s", 2),
                               "B": (1, " B", 0)}[unit]
    _, _, kind, target, _ = TARGET_BY_NAME[what.split(": ", 1)[1]]
    for extra in range(4):
        if _meets(kind, round(scale * value, decimals + extra), scale * target) == met:
            return f"{scale * value:.{decimals + extra}f}{suffix}"
    # closer to the target than that (0.3999999): "<40%" (a value under an "at least" target
    # or under an "under" target is the only one rounding can carry onto the target)
    return f"<{scale * target:.{decimals}f}{suffix}"


def _format_check(what: str, value, unit: str, met) -> str:
    if value is None:
        return f"  {what:<58}{'not measured in this run':>25}"
    return f"  {what:<58}{_shown(what, value, unit, met):>10}  {'met' if met else 'NOT met'}"


def _cpu_has_avx512() -> bool:
    """Whether this CPU has AVX-512 (its avx512f flag, read through llvmlite): the attention
    kernels' 16-lane vectors then fit one register, else LLVM uses two AVX2 registers."""
    from llvmlite import binding
    return bool(binding.get_host_cpu_features().get("avx512f", False))


def format_table(result: dict) -> str:
    m = result["machine"]
    simd = "AVX-512" if m.get("avx512") else "no AVX-512"
    lines = [f"machine: {m['processor'] or m['platform']} ({simd}), {m['cpu_count']} cores, "
             f"{m['numba_threads']} threads; float32 matmul {result['matmul_gflops']:.1f} GFLOP/s; "
             f"load average {m['load_average_before'][0]:.1f} before, "
             f"{m.get('load_average_after', [float('nan')])[0]:.1f} after", ""]
    for name, c in result["configs"].items():
        lines.append(f"{name}: batch {c['batch']}, {c['config']}, {c['step_gflop']:.2f} GFLOP/step")
        lines.append(f"  {'implementation':<44}{'tokens/s':>10}{'step ms':>9}{'GFLOP/s':>9}"
                     f"{'of matmul':>11}{'tokens/CPU-s':>14}")
        for r in c["results"]:
            lines.append(f"  {r['impl']:<44}{r['tokens_per_s']:>10.0f}{1e3 * r['median_step_s']:>9.1f}"
                         f"{r['gflops']:>9.1f}{100 * r['fraction_of_matmul']:>10.0f}%"
                         f"{r['tokens_per_cpu_s']:>14.0f}")
        for k, v in c["ratios"].items():
            lines.append(f"  {k}: {v:.2f}x")
        lines.append("")
    if "numba_start_ref" in result:
        s = result["numba_start_ref"]
        lines.append(f"numba start (REF, new process): cold first step {s['cold']['first_step_s']:.1f} s "
                     f"(import {s['cold']['import_and_setup_s']:.1f} s), warm first step "
                     f"{s['warm']['first_step_s']:.2f} s (import {s['warm']['import_and_setup_s']:.1f} s)")
    if "numba_memory_ref" in result:
        mem = result["numba_memory_ref"]
        lines.append(f"numba memory (REF): {mem['growth_bytes']} bytes more held after "
                     f"{mem['steps']} further steps (peak during a step {mem['peak_bytes'] / 2**20:.0f} MiB)")
    if lines[-1]:                                                # one blank line before
        lines.append("")
    lines.append("speed targets (this run):")
    lines += [_format_check(*check) for check in target_checks(result)]
    if not any(name in REPRODUCE_CONFIGS for name in result["configs"]):
        lines.append("  (reproduce's configs: python -m minih bench --configs reproduce)")
    return "\n".join(lines)
