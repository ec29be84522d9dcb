"""Attribution over a training run: ablate every head at every snapshot (induction-heads paper, Argument 3).

    sweep = sweep_heads(run, kind="pattern")          # every head (and layer) x every snapshot
    dicl  = sweep.dicl()                              # [K, S]  dICL_h = ICL(ablated h) - ICL(clean)
    attr  = sweep.phase_attr                          # [K, S]  v . (L_ablated_h - L)

The two measures:
    dICL_h(s) = ICL(losses with head h ablated at snapshot s) - ICL(clean losses at s)
        ICL = mean loss at a late index - mean loss at an early index, so an induction
        head, whose removal takes the late-position advantage away, has dICL >> 0.
    attr_h(s) = v . (L_ablated_h(s) - L(s)),   v = unit(L(after) - L(before))
        L are per-token-loss vectors (all eval examples and positions, flattened);
        before/after are the snapshots at the ends of the phase-change window, so v is
        the direction the losses moved in during the phase change. The phase change
        lowers the late-context losses, so removing a head that carries it moves the
        losses back, against v: such a head has attr_h < 0. attr_h / |L_after - L_before|
        is minus the fraction of the phase change's move that removing h undoes.

Both L(s) and L_ablated_h(s) are recomputed here with the same forward pass, so their
difference holds no backend or storage rounding; v comes from run.losses (the clean
losses the training stored). The paper does not say which ablation its Argument-3
figures use for every plot; minih's default is "pattern" (in an attention-only model,
the one that equals removing every path through the head in the path expansion; with
MLPs, patterns frozen and MLPs recomputed: see ablation.py), and all three kinds are
available.
Each ablated run starts at the unit's first layer from the clean run's residual stream
(run_with_ablation with clean_cache), the model's one forward with the ablation's edits.

Shape legend: K = ablated units (one head, or a set such as a whole layer), S = snapshots, N = eval examples, T = positions
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .ablation import Ablation, KINDS, head_means, run_with_ablation
from .metrics import icl_indices, icl_score, phase_change_window
from .metrics import steepest_fall as metrics_steepest_fall
from ..model import forward, get_backend
from ..params import check_tokens
from ..training.memory import kept_freed_memory


@dataclass
class HeadSweep:
    """What sweep_heads measured. Per-position means keep it small ([K,S,T-1], not [K,S,N,T-1])
    while still giving the ICL score for any pair of indices (ICL is linear in them)."""
    kind: str
    units: list                 # [K] what was ablated: tuples of (layer, head), one or more heads
    labels: list                # [K] "L1H3" for one head, "L1*" for a whole layer
    snapshots: np.ndarray       # [S] snapshot indices into the run
    steps: np.ndarray           # [S]
    tokens_seen: np.ndarray     # [S]
    clean_by_pos: np.ndarray    # [S, T-1]   clean loss at each position, mean over examples
    ablated_by_pos: np.ndarray  # [K, S, T-1] the same with head k ablated
    phase_attr: np.ndarray | None   # [K, S] v . (L_ablated - L), when a direction v was given
    max_stored_diff: float      # max |recomputed clean losses - run.losses| (a sanity check)
    seconds: float              # wall time of the sweep

    def icl(self, by_pos, early: int | None = None, late: int | None = None):
        """ICL = loss at context index `late` - loss at `early`, 1-based like
        metrics.icl_score (default: metrics.icl_indices(T)); by_pos [..., T-1]."""
        if early is None or late is None:
            early, late = icl_indices(by_pos.shape[-1] + 1)
        return by_pos[..., late - 1] - by_pos[..., early - 1]

    def dicl(self, early: int | None = None, late: int | None = None):
        """dICL [K, S] = ICL(ablated h) - ICL(clean), 1-based indices as metrics.icl_score."""
        return self.icl(self.ablated_by_pos, early, late) - self.icl(self.clean_by_pos, early, late)

    def dloss(self):
        """[K, S] mean-loss increase when head k is ablated."""
        return self.ablated_by_pos.mean(axis=-1) - self.clean_by_pos.mean(axis=-1)


def phase_direction(losses_before, losses_after):
    """v = unit(L_after - L_before): the per-token-loss vectors [N, T-1] flattened, normalised."""
    d = (np.asarray(losses_after, dtype=np.float64) - np.asarray(losses_before, dtype=np.float64)).ravel()
    norm = np.linalg.norm(d)
    if norm == 0:
        raise ValueError("phase_direction: the losses before and after the window are identical, "
                         "so there is no direction to project on")
    return d / norm


def default_units(cfg) -> list:
    """Every head alone, then (with more than one head per layer) every layer's heads together.

    Heads of one layer can share a job (several induction heads): removing one then
    shows little, removing the layer shows it all, which is how IH Argument 3 reads.
    """
    units = [((l, h),) for l in range(cfg.n_layers) for h in range(cfg.n_heads)]
    if cfg.n_heads > 1:
        units += [tuple((l, h) for h in range(cfg.n_heads)) for l in range(cfg.n_layers)]
    return units


def unit_label(unit, n_heads: int) -> str:
    """((1, 3),) -> "L1H3"; all heads of layer 1 -> "L1*"; other sets -> "L0H1+L1H2"."""
    layers = {l for l, _ in unit}
    if len(unit) == n_heads > 1 and len(layers) == 1:
        return f"L{unit[0][0]}*"
    return "+".join(f"L{l}H{h}" for l, h in unit)


def sweep_heads(run, kind: str = "pattern", units=None, snapshots=None, direction=None,
                backend: str = "numpy", progress: bool = True) -> HeadSweep:
    """Ablate each unit (a head, or a set of heads) at each snapshot of `run` on run.eval_tokens.

    kind: "zero", "mean" or "pattern". "mean" uses, at each snapshot, the per-position
    mean of the head's write over the evaluation set itself (the paper does not say
    which set; we use the one the losses are measured on, so nothing else is needed).
    units: a list of head sets, each a tuple of (layer, head) pairs (default:
    default_units, every head alone and every layer whole); snapshots: indices (default all);
    direction: v [N*(T-1)] for the phase-change attribution (see phase_direction).

    The sweep runs (units + 1) forwards a snapshot, each allocating and freeing logits of
    [N, T, d_vocab] (537 MB for the text models' 512 x 256 x 1024 evaluation set): it runs
    with freed memory kept for reuse (training/memory.py) rather than handed back to the
    system and faulted in again at the next forward (2L text, one snapshot, on a 2-core AMD
    EPYC VM: 9.1-10.6 s against 13.4-22.1 s).
    """
    with kept_freed_memory():
        return _sweep_heads(run, kind, units, snapshots, direction, backend, progress)


def _sweep_heads(run, kind, units, snapshots, direction, backend, progress) -> HeadSweep:
    """sweep_heads' work."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    cfg = run.cfg
    ops = get_backend(backend)
    units = default_units(cfg) if units is None else [tuple(map(tuple, u)) for u in units]
    for unit in units:
        Ablation(unit).check(cfg)
    snapshots = np.arange(len(run)) if snapshots is None else np.asarray(snapshots, dtype=np.int64)
    tokens = check_tokens(run.eval_tokens, cfg, min_len=2)                    # [N,T]
    N, T = tokens.shape
    if direction is not None:
        direction = np.asarray(direction, dtype=np.float64)
        if direction.shape != (N * (T - 1),):
            raise ValueError(f"direction must have shape [N*(T-1)] = [{N * (T - 1)}], got {direction.shape}")
    K, S = len(units), len(snapshots)
    clean_by_pos = np.zeros((S, T - 1))
    ablated_by_pos = np.zeros((K, S, T - 1))
    phase_attr = None if direction is None else np.zeros((K, S))
    max_diff = 0.0
    bar = _progress(total=S * (K + 1), enabled=progress, desc=f"ablate ({kind})")
    start = time.perf_counter()
    for si, s in enumerate(snapshots):
        params = run.params(int(s))
        logits, cache = forward(params, tokens, cfg, ops, keep="patterns")
        clean = ops.per_token_loss(logits, tokens)                            # [N,T-1]
        max_diff = max(max_diff, float(np.abs(clean - run.losses[s]).max()))
        clean_by_pos[si] = clean.mean(axis=0)
        means = head_means(params, tokens, cfg, cache=cache) if kind == "mean" else None
        bar.update(1)
        for k, unit in enumerate(units):
            ab = Ablation(unit, kind, means=means)
            logits_k, _ = run_with_ablation(params, tokens, cfg, ab, backend, clean_cache=cache)
            lost = ops.per_token_loss(logits_k, tokens)                       # [N,T-1]
            ablated_by_pos[k, si] = lost.mean(axis=0)
            if direction is not None:
                phase_attr[k, si] = direction @ (lost - clean).ravel().astype(np.float64)
            bar.update(1)
    bar.close()
    return HeadSweep(kind=kind, units=units, labels=[unit_label(u, cfg.n_heads) for u in units],
                     snapshots=snapshots, steps=run.steps[snapshots],
                     tokens_seen=run.tokens_seen[snapshots], clean_by_pos=clean_by_pos,
                     ablated_by_pos=ablated_by_pos, phase_attr=phase_attr,
                     max_stored_diff=max_diff, seconds=time.perf_counter() - start)


def _progress(total: int, enabled: bool, desc: str):
    """A tqdm bar on stderr, or a silent stand-in."""
    if enabled:
        from tqdm import tqdm
        return tqdm(total=total, desc=desc, unit="fwd", leave=False)

    class _Silent:
        def update(self, n=1):
            pass

        def close(self):
            pass
    return _Silent()


def steepest_fall(run, width: float = 0.1):
    """(before, after): the two snapshots between which the run's smoothed ICL score falls
    fastest against log tokens; None, None if it never falls.

    The attribution to the phase change projects on the loss change between these two:
    the change of the phase change itself, not that of the whole 10-90% window, whose far
    ends include gradual in-context learning before and after it. Snapshots with
    tokens_seen = 0 are left out (log axis).
    """
    keep = np.flatnonzero(run.tokens_seen > 0)
    if len(keep) < 2:
        return None, None
    x = run.tokens_seen[keep].astype(np.float64)
    k, rate = metrics_steepest_fall(x, icl_score(run.losses)[keep], width)  # nats per decade
    if rate <= 0:
        return None, None
    return int(keep[k]), int(keep[k + 1])


def phase_window(run):
    """(window, before, after, note): the phase-change window on the run's clean ICL curve
    and the snapshot indices whose losses bracket it; None with a note if there is none.

    before = the last snapshot before the 10% crossing (the window's start is
    interpolated between two snapshots), after = the first snapshot at or past the 90%
    crossing. Snapshots with tokens_seen = 0 are left out (log axis).
    """
    icl = icl_score(run.losses)                                              # [S]
    keep = np.flatnonzero(run.tokens_seen > 0)
    try:
        window = phase_change_window(run.tokens_seen[keep], icl[keep])
    except ValueError as e:
        return None, None, None, f"no phase-change window: {e}"
    start, end = keep[window.start_index], keep[window.end_index]
    before = start - 1 if (start > 0 and run.tokens_seen[start] > window.start_tokens) else start
    if before == end:
        return window, None, None, "the phase-change window lies between two snapshots: no direction"
    return window, int(before), int(end), ""
