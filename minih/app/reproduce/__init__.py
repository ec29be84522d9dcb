"""`python -m minih reproduce`: the paper's six arguments on a laptop, with figures.

    minih.app.reproduce.reproduce(out="reproduction", size="quick")

1. trains the model family (family.py) into OUT/runs/<model>/, reusing any run that
   already finished with the same config (so a re-run only redoes the analysis);
2. measures every run (measure.py): losses, ICL score, phase-change window, bump,
   prefix matching of every head at every snapshot;
3. lays out each argument with its numbers, figures and verdict (arguments.py);
4. writes OUT/report.md, OUT/report.html (self-contained) and OUT/numbers.json
   (every number the report states), and prints where they are.

Re-running with the same seed gives the same numbers: the training batches, the
initial weights and every evaluation set come from the seed.
"""
from __future__ import annotations

import contextlib
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .. import figures
from ..report import Section, token_text, write_report
from ...training.run import _to_jsonable, load_run, save_json, writer_lock
from . import arguments as A
from .family import SIZES, Member, family
from .measure import measure_run
from .seeds import VERDICT_KEYS, SeedRun, add_ranges, note_figures, seeds_section
from .training import train_family

__all__ = ["reproduce", "family", "SIZES"]


def _passage(members: list[Member], runs: dict):
    """(model name, tokens [T], texts [T]) for the per-token loss-difference rendering.

    With the text family: English prose with a repeated paragraph, as the paper's Harry
    Potter passage: prose paragraphs of the Python language reference (pydoc_data, the
    "naming" topic), cut to half the context in the model's own BPE tokens, then the
    same tokens again. Otherwise: the synthetic 2L model's first evaluation sequence,
    its tokens shown as letters."""
    text = {m.name: m for m in members if m.group == "text"}
    if "2L text" in text:
        from pydoc_data.topics import topics
        bpe = text["2L text"].train.data.tokenizer()
        n = runs["2L text"].cfg.n_ctx
        paragraphs = [p for p in topics["naming"].split("\n\n")
                      if len(p) > 200 and not p.lstrip().startswith(("*", "=", "-"))]
        half = bpe.encode("\n\n".join(paragraphs).encode())[: n // 2].astype(np.int64)
        tokens = np.concatenate([half, half])
        return "2L text", tokens, [_shown(bpe.vocab[t]) for t in tokens]
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/"
    tokens = runs["2L"].eval_tokens[0]
    return "2L", tokens, [alphabet[t % len(alphabet)] for t in tokens]


def _shown(token_bytes: bytes) -> str:
    """A BPE token's bytes as the report shows them (newlines visible, see token_text)."""
    return "".join(token_text(b) for b in token_bytes)


# the head-by-head sweep of a text model (512 windows of 256 tokens, 60 snapshots) is the
# reproduction's longest analysis: 24 snapshots, evenly spread, tell the same story
TEXT_SWEEP_SNAPSHOTS = 24
ARG3_CANDIDATES = ("2L", "3L")                  # the models Argument 3 may ablate, in order
TEXT_ARG3_CANDIDATES = ("2L text", "3L text")   # the same on plain text (the full size)
# each Argument 3's candidates and how many snapshots its sweep takes (train_family's sweeps)
ARG3_SWEEPS = ((ARG3_CANDIDATES, None), (TEXT_ARG3_CANDIDATES, TEXT_SWEEP_SNAPSHOTS))

# what each data source is, where its describe() has no "what"
DATA_WHAT = {"generality": "literal repeats, \"translation\" and fuzzy-matching blocks, mixed",
             "stdlib": "the Python standard library's source, as bytes",
             "text": "text files, as bytes"}


def what_was_trained(members: list[Member], seeds: list[int]) -> tuple[str, str]:
    """The report's table of the trained models (layers, heads, width, data, tokens, context),
    then one line per data source saying what it is."""
    rows = ["| model | layers x heads | d_model | data | context | steps x batch | tokens | "
            + ("seed |" if len(seeds) == 1 else "seeds |"),
            "|---|---|---|---|---|---|---|---|"]
    sources = {}
    for m in members:
        tc, cfg = m.train, m.train.model
        what = tc.data.describe().get("what") or DATA_WHAT.get(tc.data.name, tc.data.name)
        if getattr(tc.data, "repeat_fraction", 0):
            what += (f", {tc.data.repeat_fraction:.0%} of the training sequences a window of it "
                     f"repeated back to back")
        if tc.data.name == "bpe":
            what += " (ordinary language-model training: random windows, nothing repeated)"
        sources[tc.data.name] = what
        extra = ", smeared keys" if cfg.smeared_keys else ""
        extra += f", MLP width {cfg.d_mlp}" if getattr(cfg, "d_mlp", 0) else ""
        rows.append(f"| {m.name} | {cfg.n_layers} x {cfg.n_heads}{extra} | {cfg.d_model} | "
                    f"`{tc.data.name}` | {tc.T} | {tc.steps} x {tc.batch} | "
                    f"{A.fmt_tokens(tc.steps * tc.tokens_per_step)} | {', '.join(map(str, seeds))} |")
    return "\n".join(rows), "\n".join(f"- `{name}`: {what}." for name, what in sources.items())


def caveats(members: list[Member], n_seeds: int = 1) -> list[str]:
    """What a careful reader should know before the verdicts, from what this run trained."""
    out = (["One seed: the spread of every number across seeds is not measured in this run "
            f"(`--seeds N` measures it; the full size trains {DEFAULT_SEEDS['full']} by default)."]
           if n_seeds == 1 else
           [f"{n_seeds} seeds: the sentences and the head-by-head figures below are the first "
            f"seed's; every curve over training carries the seeds' range as a band, every "
            f"section ends with its numbers in each seed and their range, and the last section "
            f"gives every seed's verdicts. The verdict at the top is the first seed's, with the "
            f"number of seeds that reproduce it."])
    if any(m.group == "text" for m in members):     # (synthetic only: said in the first lines)
        out.append("On plain text whether the induction head forms depends on the seed (minih's "
                   "docs/real_text_experiments.md lists every seed tried); `--seeds N` measures "
                   "it in this run.")
    if not any(getattr(m.train.model, "d_mlp", 0) for m in members):
        out.append("Every model is attention-only; the paper also trains models with MLPs, so "
                   "Argument 6 cannot be reproduced in full.")
    out.append("The paper judges its plots by eye; each verdict here is a stated rule, printed "
               "with its criteria below it, and any rule can come out NO.")
    return out


def _measured(members: list[Member]) -> list[Member]:
    """The members whose runs _analyse measures (measure_run): all but the generality model."""
    return [m for m in members if m.group != "generality"]


def _analyse(members: list[Member], runs: dict, figs: Path, size: str, seed: int, backend: str,
             progress: bool, others: list[SeedRun] = (), early: dict | None = None,
             early_sweeps: dict | None = None) -> tuple[dict, dict, dict, dict]:
    """Measure the runs of one seed's family and lay out every argument: (numbers, report
    sections by numbers.json key, timings, measures), the figures drawn into `figs`, with
    the spread of the `others` seeds where a figure can show it (seeds.py). `early`,
    `early_sweeps`: the measures and ablation sweeps the training workers already took
    (train_family), the same numbers."""
    figs.mkdir(parents=True, exist_ok=True)
    timings = {}
    t = time.perf_counter()
    early = early or {}
    measured = _measured(members)
    measures = {m.name: early[m.name] if m.name in early else measure_run(m.name, runs[m.name], backend)
                for m in tqdm(measured, desc="measure runs", disable=not progress)}
    timings["measure" if not early else "measure (the runs their training workers did not)"] = \
        time.perf_counter() - t

    induction = [m.name for m in members if m.group == "induction"]
    sections, numbers = {}, {"size": size, "seed": seed, "backend": backend}

    def add(key, section_and_numbers):
        sections[key], numbers[key] = section_and_numbers

    t = time.perf_counter()
    add("argument_1", A.argument_1(measures, runs, figs, induction, others=others))
    add("argument_2", A.argument_2(measures, figs, others=others))
    early_sweeps = early_sweeps or {}

    def sweep_timing(key, name, what):              # how long the sweep took, and where
        where = "by a training worker" if name in early_sweeps else "part of arguments and figures"
        timings[f"{what} ({where})"] = numbers[key].pop("sweep_seconds")

    name3 = A.ablation_model(measures, ARG3_CANDIDATES)
    add("argument_3", A.argument_3(measures, runs, figs, name3, backend, progress,
                                   candidates=ARG3_CANDIDATES, sweep=early_sweeps.get(name3)))
    sweep_timing("argument_3", name3, "ablation sweep")
    gen = next(m for m in members if m.group == "generality")
    add("argument_4", A.argument_4(gen.name, runs[gen.name], gen.train.data, figs, backend,
                                   literal_only=("2L", runs["2L"]), others=others))
    add("argument_5", A.argument_5("2L", runs["2L"], measures["2L"], figs, backend))
    mlp = [m.name for m in members if m.group == "mlp"]
    if mlp:                              # the family with MLPs: Argument 1's signatures again
        add("mlp", A.argument_1(measures, runs, figs, mlp, tag="_mlp",
                                title="Models with MLPs: the same signatures",
                                data="the induction task, with an MLP in every layer",
                                control="1L MLP", main="2L MLP", others=others))
    add("argument_6", A.argument_6(measures, runs, induction, numbers["argument_1"], mlp,
                                   numbers.get("mlp"), backend))
    text = [m.name for m in members if m.group == "text"]
    if text:                                          # full size: the same story on plain text
        add("text", A.argument_1(measures, runs, figs, text, tag="_text",
                                 title="Argument 1 on plain text: the phase change co-occurs "
                                       "with induction heads",
                                 data="plain text: " + next(m for m in members if m.name == "2L text")
                                      .train.data.describe()["what"],
                                 control="1L text", main="2L text", others=others))
        candidates = tuple(n for n in TEXT_ARG3_CANDIDATES if n in text)
        name3 = A.ablation_model(measures, candidates)
        add("text_ablation", A.argument_3(
            measures, runs, figs, name3, backend, progress,
            candidates=candidates, tag="_text", max_snapshots=TEXT_SWEEP_SNAPSHOTS,
            title="Argument 3 on plain text: ablating induction heads removes in-context learning",
            sweep=early_sweeps.get(name3)))
        sweep_timing("text_ablation", name3, "ablation sweep on text")
    name, tokens, texts = _passage(members, runs)
    add("passage", A.loss_difference_passage(name, runs[name], measures[name], tokens, texts, backend))
    timings["arguments and figures"] = time.perf_counter() - t
    return numbers, sections, timings, measures


def _other_seeds(out: Path, size: str, seed: int, n_seeds: int, backend: str, progress: bool,
                 scheduler, lean=contextlib.nullcontext) -> list[SeedRun]:
    """Train seeds seed+1 .. seed+n_seeds-1 of the family through the sweep (into
    OUT/seeds/) and analyse each the same way (figures in OUT/seeds/seed<k>/figs), each
    analysis inside `lean()` (reproduce's _one_core_left while the figures draw beside it)."""
    from ..sweep import run_sweep
    others = [seed + k for k in range(1, n_seeds)]
    pairs = [(f"seed{s}-{m.slug}", m.train) for s in others for m in family(size, s)]
    result = run_sweep(pairs, out / "seeds", scheduler=scheduler, backend=backend, progress=progress)
    if result.failed:
        raise ValueError(f"reproduce --seeds: {len(result.failed)} run(s) failed: "
                         f"{', '.join(result.failed)} (see {out / 'seeds' / 'sweep.json'})")
    done = []
    for s in others:
        members = family(size, s)
        runs = {m.name: load_run(out / "seeds" / f"seed{s}-{m.slug}") for m in members}
        with lean():                                 # (each analysis; not the training)
            numbers, _, _, measures = _analyse(members, runs, out / "seeds" / f"seed{s}" / "figs",
                                               size, s, backend, False)
        done.append(SeedRun(s, numbers, measures))
    return done


OTHER_SEEDS = "other seeds: training and analysis"   # its key in numbers.json's timings_seconds
# how many seeds each size trains unless told (the full size's spread is part of its claim)
DEFAULT_SEEDS = {"tiny": 1, "quick": 1, "full": 3}


@contextlib.contextmanager
def _one_core_left():
    """minih's threads one fewer (at least one), and BLAS on one thread, while the block
    runs: the figures' process draws on the other core. Why: the analysis's forwards are
    small (64 sequences of 32 tokens), and split over two threads beside the drawing they
    waited for each other (docs/04_numba.md, "The main job on the Intel VM"). The thread
    count never changes a bit (kernels/threads.py)."""
    import numba

    from ...kernels.blas_threads import single_threaded_blas
    before = numba.get_num_threads()
    numba.set_num_threads(max(1, before - 1))
    try:
        with single_threaded_blas():   # (minih's threads do this for BLAS's; on one there are none)
            yield
    finally:
        numba.set_num_threads(before)


def reproduce(out="reproduction", size: str = "quick", seed: int = 0, backend: str = "numba",
              progress: bool = True, seeds: int | None = None, scheduler=None,
              workers: int = 1) -> dict:
    """Train, measure and report; returns the numbers of numbers.json.

    seeds: how many seeds of the family to train (None: DEFAULT_SEEDS, 3 for the full size,
    1 otherwise). Above 1, the family is also trained with seeds seed+1 .. seed+seeds-1
    through the sweep (minih.app.sweep.run_sweep, on `scheduler`: a local Dask cluster when
    Dask is installed, else one run after another) and each seed analysed the same way;
    the report's curves then carry the seeds' range as bands, every section ends with its
    numbers in each seed and their range, and a last section gives every seed's verdicts
    (seeds.py). `workers`: how many
    models train side by side, one process each (training.py; `python -m minih reproduce`
    uses one per core); above 1, a second process also draws the figures while the
    analysis goes on (figures.in_background). Above 1, a script that calls reproduce must start with
    `if __name__ == "__main__":`, as every multiprocessing program must: each worker
    imports the script again. Raises RunInUse (minih.training.run) while another process
    runs reproduce into the same `out`."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an int >= 1, got {workers!r}")
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, got {size!r}")
    seeds = DEFAULT_SEEDS[size] if seeds is None else seeds
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"seeds must be an int >= 1, got {seeds!r}")
    if seeds > 1:
        from ..sweep import check_scheduler
        check_scheduler(scheduler)                    # before any training
    out = Path(out)
    # one process at a time in OUT: a second one would train the runs again while the
    # first reads them (RunInUse, one line on the command line)
    with writer_lock(out):
        return _reproduce(out, size, seed, backend, progress, seeds, scheduler, workers)


def _reproduce(out: Path, size: str, seed: int, backend: str, progress: bool, seeds: int,
               scheduler, workers: int) -> dict:
    """reproduce's work, on checked arguments, OUT locked."""
    t0 = time.perf_counter()
    figs = out / "figs"
    figs.mkdir(parents=True, exist_ok=True)
    members = family(size, seed)
    early, early_sweeps = train_family(members, out / "runs", backend, progress, workers,
                                       measure=[m.name for m in _measured(members)],
                                       sweeps=ARG3_SWEEPS)
    timings, runs = {}, {}
    for m in members:
        runs[m.name] = load_run(out / "runs" / m.slug)
        # the training time the run recorded (also when it is reused now)
        timings[f"train {m.name}"] = float(runs[m.name].manifest.get("timings", {})
                                           .get("train_seconds", float("nan")))
    timings["training, wall"] = time.perf_counter() - t0
    others = []
    # with workers, the figures are drawn in a second process while the analysis goes on
    drawing = figures.in_background() if workers > 1 else contextlib.nullcontext()
    # and the analyses on one core fewer (not the other seeds' training)
    lean = _one_core_left if workers > 1 else contextlib.nullcontext
    with drawing:
        if seeds > 1:           # the other seeds first: the first seed's figures draw their spread
            t = time.perf_counter()
            others = _other_seeds(out, size, seed, seeds, backend, progress, scheduler, lean)
            timings[OTHER_SEEDS] = time.perf_counter() - t
        with lean():
            numbers, sections, analysis_timings, _ = _analyse(members, runs, figs, size, seed,
                                                              backend, progress, others, early,
                                                              early_sweeps)
        t = time.perf_counter()
    analysis_timings["waiting for the last figures"] = time.perf_counter() - t
    timings.update(analysis_timings)
    if others:
        per_seed = {seed: numbers} | {o.seed: o.numbers for o in others}
        add_ranges(sections, per_seed)
        note_figures(sections, list(per_seed))
        sections["seeds"], numbers["seeds"] = seeds_section(per_seed)
    timings["total"] = time.perf_counter() - t0
    numbers["timings_seconds"] = timings

    verdicts = {label: numbers[k]["reproduced"] for k, label in VERDICT_KEYS.items() if k in numbers}
    intro = [f"Reproduction of Olsson et al. (2022), \"In-context Learning and Induction Heads\", "
             f"with minih ({size} size, seed {seed}, backend {backend}). Every number below was "
             f"measured in this run; numbers.json holds them all."
             + ("" if any(m.group == "text" for m in members) else
                f" The {size} size trains on synthetic data only (random tokens with repeated "
                "segments, where copying pays by construction; no phase change on natural text "
                "fits its budget), while the paper's subject is natural text: the full size, "
                "without --quick, adds 1-, 2- and 3-layer models trained on plain text."),
             "| argument | reproduced |\n|---|---|\n" + "\n".join(
                 f"| {k} | {'yes' if v else '**NO**'}"
                 + (f" (in {sum(numbers['seeds']['verdicts'][k])} of {seeds} seeds)" if seeds > 1 else "")
                 + " |" for k, v in verdicts.items()),
             "What was trained:", *what_was_trained(members, list(range(seed, seed + seeds))),
             "Caveats:", "\n".join(f"- {c}" for c in caveats(members, seeds)),
             f"Time: {timings['total']:.0f} s for this invocation, of which "
             f"{timings['training, wall']:.0f} s training (models trained side by side, one per "
             f"core, unless reused); each run's own training time: "
             + ", ".join(f"{k[6:]} {v:.0f} s" for k, v in timings.items() if k.startswith("train "))
             + (f"; the other seeds, trained and analysed: {timings[OTHER_SEEDS]:.0f} s"
                if OTHER_SEEDS in timings else "")
             + "; analysis: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()
                                          if not k.startswith("train") and k not in ("total", OTHER_SEEDS))
             + "."]
    md, html = write_report(out, "Induction heads, reproduced on a CPU", intro, list(sections.values()))
    numbers = _to_jsonable(numbers)                   # numpy scalars -> plain JSON numbers
    save_json(out / "numbers.json", numbers)
    print(f"\nreport: {html}\n        {md}\nfigures: {figs}\nnumbers: {out / 'numbers.json'}")
    print("verdicts: " + ", ".join(f"argument {k} {'yes' if v else 'NO'}" for k, v in verdicts.items()))
    print(f"total time {timings['total']:.0f} s")
    return numbers
