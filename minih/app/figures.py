"""The reproduction's figures: plain functions from arrays to a PNG file.

Each function takes already-computed numbers (no training, no metrics inside), draws
one figure with matplotlib's non-interactive Agg backend, saves it and returns the
path. So a figure can be redrawn from a run's tables, and tested on made-up arrays.

Inside `in_background()`, each of them hands its drawing to a second process and
returns the path at once: the reproduction computes its next numbers while the last
figures are drawn (see in_background).

Shape legend: S snapshots, L layers, H heads, T positions
"""
from __future__ import annotations

import functools
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np

COLORS = [f"C{i}" for i in range(10)]    # matplotlib's colour cycle, by name


def _subplots(*grid, figsize):
    """A new figure and its axes, as pyplot.subplots(*grid, figsize=...) gives them, but
    without pyplot: no backend to choose (a user's own pyplot, its backend and its open
    figures stay as they are), nothing to close, and no pyplot import in the training
    workers of `reproduce`, which import this module and never draw. Figure.savefig
    writes the PNG with Agg."""
    from matplotlib.figure import Figure
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(*grid)


# --- drawing in a second process ---------------------------------------------------------

_background = None      # while in_background() runs in this process: (pool, [(future, task)])


@contextmanager
def in_background():
    """Inside this block, every figure function below sends its arguments to one worker
    process, which draws and saves the figure, and returns the path at once. Leaving the
    block, this process draws the figures not yet handed to the worker (from the last
    back, while the worker goes on from the front), waits for the rest, and raises an
    error any of them met (its own draws' first, then the worker's in order).

    Why: drawing is about a third of a second per figure (laying out the text, rendering,
    the PNG): 7.6 of the 17.8 s that `reproduce --quick` spent after training (25
    figures, on the 2-core Intel VM), while its analysis runs on one core. The figures
    are the same files as drawn in place (tests/test_figures.py compares the bytes).
    The worker is started fresh ("spawn"), so a script that uses this needs the usual
    `if __name__ == "__main__":`, like every multiprocessing program. Two rules inside the
    block: a figure's file exists only once the block has ended, and the arrays given to
    a figure function must not be changed afterwards (they are sent when the worker is
    ready for them, or drawn here at the end).
    """
    global _background
    if _background is not None:                      # nested: the outer block waits
        yield
        return
    pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
    try:
        tasks = [(pool.submit(_started), None)]      # it imports matplotlib while we compute
        _background = (pool, tasks)
        yield
        _background = None
        for future, task in reversed(tasks):         # what the worker has not started
            if task is None or not future.cancel():
                break                                # it has started this one: and all before
            _draw(*task)
        for future, _ in tasks:
            if not future.cancelled():
                future.result()                      # the first error, raised here
    finally:
        _background = None
        pool.shutdown(wait=True, cancel_futures=True)


def _drawable(fn):
    """A figure function that draws in the worker while in_background() is active."""
    @functools.wraps(fn)
    def figure(path, *args, **kwargs) -> Path:
        if _background is None:
            return fn(path, *args, **kwargs)
        pool, tasks = _background
        task = (fn.__name__, path, args, kwargs)
        tasks.append((pool.submit(_draw, *task), task))
        return Path(path)
    return figure


def _started() -> None:
    """The worker's first task: import matplotlib while the caller computes."""
    import matplotlib.figure  # noqa: F401


def _draw(name: str, path, args, kwargs) -> Path:
    """Draw figure `name` here (in the worker, or in the caller for the ones it took back)."""
    return globals()[name](path, *args, **kwargs)


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def _finish_tokens_axes(fig, ax, path, ylabel: str, title: str) -> Path:
    """Log x axis of training tokens, labels, legend; save."""
    ax.set_xscale("log")
    # ticks at the powers of ten, written 10k, 1M: the default log axis has eight
    # unlabelled ticks a decade more and writes 10^4 in mathtext, which made these
    # figures cost 1.6-1.8x as much to draw (tick labels are most of a figure's time)
    ax.xaxis.set_major_formatter(_tokens_formatter())
    ax.minorticks_off()
    ax.set_xlabel("training tokens seen")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    return _save(fig, path)


def _tokens_formatter():
    """Tick labels for a count of tokens: 1, 300, 1k, 250k, 1M, 30M, 1G."""
    from matplotlib.ticker import FuncFormatter

    def label(x, _pos):
        for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
            if x >= scale:
                return f"{x / scale:g}{suffix}"
        return f"{x:g}"
    return FuncFormatter(label)


def _shade_window(ax, window, color):
    """The ICL window, hatched in the curve's colour: a solid fill is the seeds' band."""
    if window is not None:
        ax.axvspan(window[0], window[1], facecolor="none", edgecolor=color, hatch="///",
                   alpha=0.35, lw=0)


def _band(ax, band, color):
    """A curve's range over seeds: (x [S], lo [S], hi [S]) filled between lo and hi."""
    if band is not None:
        x, lo, hi = (np.asarray(a) for a in band)
        keep = x > 0
        ax.fill_between(x[keep], lo[keep], hi[keep], color=color, alpha=0.25, lw=0)


@_drawable
def curves(path, series: dict, ylabel: str, title: str, windows: dict | None = None,
           marks: dict | None = None, hline: float | None = None, bands: dict | None = None) -> Path:
    """Several curves against tokens seen (log x axis).

    series: name -> (tokens [S], values [S]); windows: name -> (start, end) tokens,
    hatched; marks: name -> tokens value, drawn as a dotted vertical line (the bump);
    bands: name -> (tokens [S], lo [S], hi [S]), the curve's range over seeds, filled.
    """
    fig, ax = _subplots(figsize=(7, 4))
    for i, (name, (x, y)) in enumerate(series.items()):
        c = COLORS[i % len(COLORS)]
        keep = np.asarray(x) > 0
        _band(ax, (bands or {}).get(name), c)
        ax.plot(np.asarray(x)[keep], np.asarray(y)[keep], color=c, label=name, lw=1.6)
        _shade_window(ax, (windows or {}).get(name), c)
        mark = (marks or {}).get(name)
        if mark is not None and np.isfinite(mark):
            ax.axvline(mark, color=c, ls=":", lw=1.2)
    if hline is not None:
        ax.axhline(hline, color="k", lw=0.8, ls="--")
    return _finish_tokens_axes(fig, ax, path, ylabel, title)


@_drawable
def loss_position_heatmaps(path, tokens_seen, loss_by_pos, derivative, title: str) -> Path:
    """Two heatmaps [S, T-1]: loss by context position, and its derivative with respect
    to log position (blue = loss falls with more context)."""
    fig, axes = _subplots(1, 2, figsize=(11, 4))
    S, P = loss_by_pos.shape
    extent = [1, P, S - 0.5, -0.5]
    im = axes[0].imshow(loss_by_pos, aspect="auto", cmap="viridis", extent=extent)
    fig.colorbar(im, ax=axes[0], label="loss (nats)")
    axes[0].set_title("loss by context position")
    lim = np.nanpercentile(np.abs(derivative), 98) or 1.0
    im = axes[1].imshow(derivative, aspect="auto", cmap="RdBu_r", vmin=-lim, vmax=lim, extent=extent)
    fig.colorbar(im, ax=axes[1], label="d loss / d log(position)")
    axes[1].set_title("its derivative w.r.t. log position")
    ticks = np.linspace(0, S - 1, min(S, 6)).astype(int)
    for ax in axes:
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter("{x:g}")     # 1, 10, 100: plain text, no mathtext
        ax.set_xlabel("context position (token index)")
        ax.set_yticks(ticks)
        ax.set_yticklabels([f"{tokens_seen[t]:.2g}" for t in ticks])
        ax.set_ylabel("tokens seen (snapshot)")
    fig.suptitle(title)
    return _save(fig, path)


@_drawable
def head_scores_over_training(path, tokens_seen, scores, title: str, ylabel: str,
                              band=None) -> Path:
    """One line per head: scores [S, L, H] against tokens seen; colour = layer. band:
    (tokens [S], lo [S], hi [S]), the best head's range over seeds, filled in grey."""
    S, L, H = scores.shape
    fig, ax = _subplots(figsize=(7, 4))
    keep = np.asarray(tokens_seen) > 0
    if band is not None:
        _band(ax, band, "0.5")
        ax.plot([], [], color="0.5", lw=6, alpha=0.25, label="best head: range over seeds")
    for l in range(L):
        for h in range(H):
            ax.plot(np.asarray(tokens_seen)[keep], scores[keep, l, h], color=COLORS[l % len(COLORS)],
                    lw=1.2, alpha=0.85, label=f"layer {l}" if h == 0 else None)
    return _finish_tokens_axes(fig, ax, path, ylabel, title)


@_drawable
def pca_trajectories(path, trajectories: dict, turns: dict | None = None,
                     explained=None) -> Path:
    """Each model's path through the first two principal components of per-token-loss
    space; a circle marks the start, a star the sharpest turn."""
    fig, ax = _subplots(figsize=(6, 5))
    for i, (name, Y) in enumerate(trajectories.items()):
        c = COLORS[i % len(COLORS)]
        ax.plot(Y[:, 0], Y[:, 1], "-", color=c, lw=1.2, label=name)
        ax.plot(Y[0, 0], Y[0, 1], "o", color=c)
        turn = (turns or {}).get(name)
        if turn is not None:
            ax.plot(Y[turn, 0], Y[turn, 1], "*", color=c, ms=14, mec="k")
    ev = "" if explained is None else f" ({explained[0]:.0%})"
    ax.set_xlabel("PC 1" + ev)
    ax.set_ylabel("PC 2" + ("" if explained is None else f" ({explained[1]:.0%})"))
    ax.set_title("per-token losses over training (PCA)")
    ax.legend(fontsize=8)
    return _save(fig, path)


@_drawable
def head_by_snapshot(path, matrix, head_labels, tokens_seen, title: str, label: str) -> Path:
    """A heatmap [heads, S] (e.g. ablation attribution), diverging around zero."""
    fig, ax = _subplots(figsize=(8, 0.35 * len(head_labels) + 1.6))
    lim = np.nanmax(np.abs(matrix)) or 1.0
    im = ax.imshow(matrix, aspect="auto", cmap="RdBu_r", vmin=-lim, vmax=lim)
    ax.set_yticks(range(len(head_labels)))
    ax.set_yticklabels(head_labels, fontsize=8)
    S = matrix.shape[1]
    ticks = np.linspace(0, S - 1, min(S, 6)).astype(int)
    ax.set_xticks(ticks)
    ax.set_xticklabels([f"{tokens_seen[t]:.2g}" for t in ticks])
    ax.set_xlabel("tokens seen (snapshot)")
    fig.colorbar(im, ax=ax, label=label)
    ax.set_title(title)
    return _save(fig, path)


@_drawable
def attention_pattern(path, pattern, labels, title: str, highlight=None) -> Path:
    """One head's pattern [T, T] (query rows, key columns) with token labels; optional
    boolean mask [T, T] of the keys an ideal induction head would attend to, outlined."""
    T = pattern.shape[0]
    size = min(9, 2 + 0.22 * T)
    fig, ax = _subplots(figsize=(size, size))
    ax.imshow(pattern, cmap="Greys", vmin=0, vmax=1)
    if highlight is not None:
        qi, kj = np.nonzero(highlight)
        ax.scatter(kj, qi, s=18, facecolors="none", edgecolors="tab:red", lw=0.8)
    ax.set_xticks(range(T))
    ax.set_yticks(range(T))
    ax.set_xticklabels(labels, fontsize=6, rotation=90)
    ax.set_yticklabels(labels, fontsize=6)
    ax.set_xlabel("key (attended to)")
    ax.set_ylabel("query")
    ax.set_title(title)
    return _save(fig, path)


@_drawable
def matrix_heatmap(path, matrix, row_labels, col_labels, title: str, label: str,
                   diverging: bool = False) -> Path:
    """A small labelled matrix (e.g. K-composition scores, layer-0 heads x layer-1 heads)."""
    fig, ax = _subplots(figsize=(1.2 + 0.6 * len(col_labels), 1.2 + 0.5 * len(row_labels)))
    if diverging:
        lim = np.nanmax(np.abs(matrix)) or 1.0
        im = ax.imshow(matrix, cmap="RdBu_r", vmin=-lim, vmax=lim)
    else:
        im = ax.imshow(matrix, cmap="viridis")
    for (i, j), v in np.ndenumerate(matrix):
        ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color="w" if not diverging else "k")
    ax.set_xticks(range(len(col_labels)))
    ax.set_xticklabels(col_labels, fontsize=8)
    ax.set_yticks(range(len(row_labels)))
    ax.set_yticklabels(row_labels, fontsize=8)
    fig.colorbar(im, ax=ax, label=label)
    ax.set_title(title, fontsize=10)
    return _save(fig, path)


@_drawable
def eigenvalues(path, values, title: str) -> Path:
    """Eigenvalues in the complex plane (positive real part = copying)."""
    values = np.asarray(values)
    fig, ax = _subplots(figsize=(4.5, 4))
    ax.axhline(0, color="k", lw=0.6)
    ax.axvline(0, color="k", lw=0.6)
    ax.scatter(values.real, values.imag, s=18)
    ax.set_xlabel("real part")
    ax.set_ylabel("imaginary part")
    ax.set_title(title, fontsize=10)
    return _save(fig, path)


@_drawable
def bars(path, groups: dict, title: str, ylabel: str, ranges: dict | None = None) -> Path:
    """Grouped bars: groups = {group name: {bar name: value}} (e.g. task -> head score);
    ranges = {group name: {bar name: (lo, hi)}}, drawn as error bars (the range over seeds)."""
    names = list(groups)
    bar_names = list(next(iter(groups.values())))
    fig, ax = _subplots(figsize=(1.5 + 1.2 * len(names), 3.5))
    width = 0.8 / len(bar_names)
    for k, b in enumerate(bar_names):
        values = np.array([groups[n][b] for n in names], dtype=np.float64)
        yerr = None
        if ranges:                    # matplotlib wants the distances below and above the bar
            lo = np.array([ranges[n][b][0] for n in names], dtype=np.float64)
            hi = np.array([ranges[n][b][1] for n in names], dtype=np.float64)
            yerr = np.nan_to_num(np.stack([values - lo, hi - values]).clip(min=0))
        ax.bar(np.arange(len(names)) + k * width, values, width, yerr=yerr, capsize=3 if ranges else 0,
               label=b, color=COLORS[k % len(COLORS)])
    ax.set_xticks(np.arange(len(names)) + 0.4 - width / 2)
    ax.set_xticklabels(names)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    return _save(fig, path)
