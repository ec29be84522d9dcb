"""Training the family: every member into OUT/runs/<model>/, on all the cores.

Each of the reproduction's models is small: a training step's batch of 32 x 32 positions
is two shards (minih/kernels/shards.py), which on two threads run only 1.2-1.6x faster
than on one. So the members train side by side, one per worker process (`python -m
minih reproduce` starts one per core) on one thread each: on 2 cores the family takes
about half the time. Once no run waits for a worker, the runs still training take the
idle workers' cores (_set_share). The workers are started fresh ("spawn": no threads
inherited from this process), and each imports the main script again, so a script that
asks for workers needs the usual `if __name__ == "__main__":`.

The runs are the same bit for bit as one after another in this process (workers=1):
either way minih.train runs one config with BLAS on one thread, as the command line
does (BLAS on more threads may sum in another order, and the last bits of the weights
differ); what each run directory holds does not depend on the order.

The workers also take some of the analysis, the same numbers as the parent's: each
measures the run it has just trained, and Argument 3's head sweep joins the runs not yet
started as soon as their measures say which model it ablates, in its place by its cost
(train_family).

A finished run is reused; one stopped early (Ctrl-C, a crash) continues from its
checkpoint. Ctrl-C here stops every worker: each writes its checkpoint, and the same
command continues where they stopped.
"""
from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

from ...kernels.blas_threads import single_threaded_blas
from ...training.config import TrainConfig
from ...training.loop import snapshot_steps, train
from ...training.run import load_run
from .family import Member


def state(run_dir: Path, member: Member) -> str:
    """"finished" or "resumable" (a run of exactly this member's training config that
    stopped early, e.g. on Ctrl-C), else "new"."""
    try:
        run = load_run(run_dir)
        same = TrainConfig.from_dict(run.manifest["train"]) == member.train   # old layouts too
    except (ValueError, KeyError, TypeError):
        return "new"
    if not same:
        return "new"
    return "finished" if run.manifest.get("status") == "finished" else "resumable"


def cost(member: Member) -> float:
    """A rough relative cost of training a member, to start the longest first: tokens
    times a layer's cost (an MLP of d_mlp = 4 d_model about doubles it, smeared keys add
    ~15%) plus the embedding, unembedding and evaluation (~0.3 of a layer). Fitted to the
    runs of `reproduce --quick` (docs/04_numba.md, "The main job on the Intel VM"): with
    2 workers, a cost that ranked the MLP models first (an MLP as 8 more layers) left one
    worker idle for the last 4-5 s."""
    m = member.train.model
    layer = (1 + m.d_mlp / (4 * m.d_model)) * (1.15 if m.smeared_keys else 1.0)
    return member.train.steps * member.train.tokens_per_step * (1 + member.train.T / 256) * \
        (0.3 + m.n_layers * layer)


def sweep_cost(member: Member, max_snapshots: int | None) -> float:
    """The same rough cost for Argument 3's head sweep of a trained member
    (arguments.ablation_sweep): one forward pass over the evaluation sequences for each
    head and each layer ablated, and a clean one, at each snapshot swept. A forward is
    about a third of a training step's work per token, and the sweep's (op by op, with
    hooks) ran at about 0.56 of that share of the training's time (`reproduce --quick`'s
    3L on the AMD VM: swept in 5.0 s, trained and evaluated in 12.1 s)."""
    tc, m = member.train, member.train.model
    snapshots = len(snapshot_steps(tc.steps, tc.log_snapshots, tc.linear_snapshots))
    if max_snapshots is not None:
        snapshots = min(snapshots, max_snapshots)
    forwards = snapshots * (m.n_layers * m.n_heads + m.n_layers + 1) * tc.n_eval * tc.T
    return cost(member) * 0.56 * forwards / (3 * tc.steps * tc.tokens_per_step)


def train_member(member: Member, run_dir: Path, backend: str, resumable: bool, progress: bool,
                 on_step=None) -> tuple[str, int]:
    """Train (or continue) one member; (status, step). Runs in this process or a worker."""
    result = None
    if resumable:
        try:
            result = train(None, run_dir, resume=True, progress=progress, on_step=on_step)  # its own backend
        except ValueError as e:                   # e.g. a damaged checkpoint: start over
            print(f"  cannot resume {member.name} ({e}); training it from the start", flush=True)
    if result is None:
        result = train(member.train, run_dir, backend=backend, overwrite=True, progress=progress,
                       on_step=on_step)
    return result.status, result.step


_steps = None       # in a worker process: the queue to the parent (set by _start_worker)
_share = None       # in a worker process: the parent's count of cores per training worker


def _start_worker(steps, share) -> None:
    """A worker's setup: the queue to the parent, and its share of the cores (a shared
    integer the parent raises when a worker falls idle: _set_share) as minih's thread count
    (numba.set_num_threads; the batch's shards do not depend on it, so neither do the bits)."""
    global _steps, _share
    _steps, _share = steps, share
    _take_share()


def _take_share() -> None:
    """Set minih's thread count to the parent's share of the cores."""
    import numba
    n = max(1, min(_share.value, numba.config.NUMBA_NUM_THREADS))
    if n != numba.get_num_threads():
        numba.set_num_threads(n)


def _set_share(share, busy: int) -> None:
    """In the parent: the cores shared out among the `busy` workers. Once nothing waits
    for a worker, the runs still training take the idle workers' cores at their next step
    (the last runs of `reproduce --quick` train 1.2-1.6x faster on two threads)."""
    share.value = max(1, (os.cpu_count() or 1) // max(1, busy))


def _worker(member: Member, run_dir: Path, backend: str, resumable: bool, measure: bool):
    """train_member in a worker process, its steps reported to the parent's queue twice a
    second, on the cores the parent shares out to it (_set_share); then, if `measure`,
    the finished run measured there too: (status, step, RunMeasures or None)."""
    steps = _steps
    steps.put((member.name, "pid", os.getpid()))
    last = [0.0]
    seen = [_share.value]                          # the parent's count this run last took
    _take_share()

    def on_step(step, loss):
        now = time.monotonic()
        if now - last[0] > 0.5:
            last[0] = now
            steps.put((member.name, "step", step))
        if _share.value != seen[0]:
            seen[0] = _share.value
            _take_share()

    # BLAS on one thread (minih's single_threaded_blas, as the command line), for the
    # measuring too: its own threads spin while they wait for work, and beside the other
    # worker's training that made a sweep (below) take 11 s instead of 3.7
    with single_threaded_blas():
        status, step = train_member(member, run_dir, backend, resumable, False, on_step)
        measured = None
        if measure and status == "finished":
            from .measure import measure_run
            _take_share()
            measured = measure_run(member.name, load_run(run_dir), backend)
    return status, step, measured


def _sweeper(run_dir: Path, backend: str, max_snapshots):
    """Argument 3's head sweep of a finished run, in a worker process (arguments.ablation_sweep,
    BLAS on one thread, on the worker's share of the cores as it starts): a HeadSweep."""
    from . import arguments
    _take_share()                   # not the two threads its last run may have ended on
    with single_threaded_blas():
        return arguments.ablation_sweep(load_run(run_dir), backend, False, max_snapshots)


def ablated(candidates, measures: dict, measured_here) -> str | None:
    """The model arguments.ablation_model picks among `candidates` (the family's, in order),
    once the measures it reads are in: None while one of them is still being trained and
    measured (`measured_here`), "" when one is measured elsewhere (then it is not known here)."""
    from .arguments import ablation_model, can_contrast
    for name in candidates:                      # the candidates ablation_model reads, in turn
        if name not in measures:
            return None if name in measured_here else ""
        if can_contrast(measures[name]):         # it stops here
            break
    return ablation_model(measures, candidates)


def train_family(members: list[Member], runs_dir: Path, backend: str, progress: bool = True,
                 workers: int = 1, measure=(), sweeps=()) -> tuple[dict, dict]:
    """Train every member not yet finished into runs_dir/<slug>, `workers` at a time
    (1 = one after another in this process, with a bar per run). With workers, each
    member named in `measure` is also measured (measure.measure_run) by the worker that
    trained it, right after; and for each (candidates, max_snapshots) of `sweeps` (an
    Argument 3), as soon as those measures tell which candidate is the model ablated
    (`ablated`), a worker sweeps its heads (arguments.ablation_sweep). Returns those
    measures and sweeps, ({name: RunMeasures}, {name: HeadSweep}); the parent computes
    the others. On 2 cores that moves the 3.5 s of measuring and the ~4 s of sweeping that
    `reproduce --quick` did after training into the training's two processes, the sweep
    in its place among the runs still waiting, by its cost (sweep_cost).
    Raises KeyboardInterrupt after Ctrl-C, once every run has written its checkpoint."""
    todo = []
    for i, m in enumerate(members):
        run_dir = runs_dir / m.slug
        s = state(run_dir, m)
        if s == "finished":
            print(f"[{i + 1}/{len(members)}] {m.name}: reusing the finished run in {run_dir}")
        else:
            print(f"[{i + 1}/{len(members)}] training {m.name} ({m.train.steps} steps, "
                  f"{m.train.steps * m.train.tokens_per_step / 1e6:.1f}M tokens)"
                  + (", resuming from its checkpoint" if s == "resumable" else ""))
            todo.append((m, run_dir, s == "resumable"))
    workers = max(1, min(workers, len(todo)))
    if workers == 1:
        for m, run_dir, resumable in todo:
            with single_threaded_blas():          # as in a worker: the same bits either way
                status, step = train_member(m, run_dir, backend, resumable, progress)
            _check_finished(m, status, step)
        return {}, {}
    names = {m.name for m in members}
    sweeps = [(tuple(n for n in candidates if n in names), max_snapshots)
              for candidates, max_snapshots in sweeps]
    return _train_side_by_side(todo, backend, progress, workers,
                               set(measure) & {m.name for m, _, _ in todo},
                               [g for g in sweeps if g[0]])


def longest_first(waiting: list, free: int) -> list:
    """Take the `free` costliest of `waiting` (tuples whose first item is the cost) out of
    it, the costliest first."""
    waiting.sort(key=lambda w: -w[0])
    taken = waiting[:max(free, 0)]
    del waiting[:len(taken)]
    return taken


def _check_finished(m: Member, status: str, step: int) -> None:
    if status != "finished":                               # Ctrl-C: the checkpoint is saved
        print(f"{m.name} {status} at step {step}; run the same command again to continue "
              f"where it stopped")
        raise KeyboardInterrupt


def _train_side_by_side(todo, backend: str, progress: bool, workers: int, measure: set,
                        sweeps: list) -> tuple[dict, dict]:
    """The members of `todo` in `workers` processes, the longest first (by `cost`; a sweep
    by `sweep_cost`, once it is known); one progress bar of all their steps. Returns the
    measures and sweeps the workers took (train_family)."""
    from tqdm.auto import tqdm
    print(f"training {len(todo)} models, {workers} at a time (one process each)")
    context = multiprocessing.get_context("spawn")   # a fresh interpreter: no inherited threads
    steps, done_steps, pids, measures, swept = context.Queue(), {}, {}, {}, {}
    run_dirs = {m.name: run_dir for m, run_dir, _ in todo}
    members = {m.name: m for m, _, _ in todo}
    bar = tqdm(total=sum(m.train.steps for m, _, _ in todo), unit="step", disable=not progress,
               desc="train", dynamic_ncols=True)
    try:
        # each worker its share of the cores: two shards on two threads in each of two
        # processes would be four threads on two cores, waiting for each other
        share = context.RawValue("i", 1)
        _set_share(share, workers)
        with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_start_worker,
                                 initargs=(steps, share)) as pool:
            # a task goes to the pool only when a worker is free, so that a sweep known
            # later still takes its place among the runs by cost, not behind them all
            waiting = [(cost(m), ("train", m), _worker,
                        (m, run_dir, backend, resumable, m.name in measure))
                       for m, run_dir, resumable in todo]
            running = {}                 # future -> ("train", Member) or ("sweep", name)
            undecided = list(sweeps)

            def start_free_workers():
                for _, task, fn, args in longest_first(waiting, workers - len(running)):
                    running[pool.submit(fn, *args)] = task
                _set_share(share, len(running))

            start_free_workers()
            try:
                while running:
                    finished, _ = wait(running, timeout=0.5, return_when=FIRST_COMPLETED)
                    _drain(steps, done_steps, pids, bar)
                    for f in finished:
                        kind, what = running.pop(f)
                        if kind == "sweep":
                            swept[what] = f.result()
                            continue
                        status, step, measured = f.result()
                        if measured is not None:
                            measures[what.name] = measured
                        done_steps[what.name] = step
                        _update(bar, done_steps)
                        bar.write(f"  {what.name}: {status} ({step} steps)")
                        _check_finished(what, status, step)
                    for group in list(undecided):       # an Argument 3's model known now?
                        name = ablated(group[0], measures, measure)
                        if name is not None:
                            undecided.remove(group)
                        if name:
                            waiting.append((sweep_cost(members[name], group[1]), ("sweep", name),
                                            _sweeper, (run_dirs[name], backend, group[1])))
                    start_free_workers()
            except KeyboardInterrupt:
                # every worker stops after its current step and writes a checkpoint
                waiting.clear()
                _drain(steps, done_steps, pids, bar)
                for pid in pids.values():
                    try:
                        os.kill(pid, signal.SIGINT)
                    except ProcessLookupError:
                        pass
                for f in running:
                    f.cancel()
                raise
    finally:
        bar.close()
    return measures, swept


def _drain(steps, done_steps: dict, pids: dict, bar) -> None:
    """Read every message the workers sent: their pids and their step counts."""
    while True:
        try:
            name, what, value = steps.get_nowait()
        except (queue.Empty, EOFError, OSError):
            break
        (pids if what == "pid" else done_steps)[name] = value
    _update(bar, done_steps)


def _update(bar, done_steps: dict) -> None:
    bar.update(sum(done_steps.values()) - bar.n)
