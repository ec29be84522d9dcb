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

import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..report import write_report
from ...training.config import TrainConfig
from ...training.run import _to_jsonable, load_run, save_json
from ...training.loop import train
from . import arguments as A
from .family import SIZES, Member, family
from .measure import measure_run

__all__ = ["reproduce", "family", "SIZES"]


def _state(run_dir: Path, member: Member) -> str:
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


def _passage(runs: dict):
    """(model name, tokens, alphabet) for the per-token loss-difference rendering."""
    if "2L text" in runs:
        import textwrap
        text = Path(textwrap.__file__).read_bytes()
        n = runs["2L text"].cfg.n_ctx
        start = text.find(b"def ")
        first = text[start:start + n // 2]
        return "2L text", np.frombuffer(first + first, dtype=np.uint8)[:n].astype(np.int64), None
    # quick/tiny: the 2L model on its first evaluation sequence, tokens shown as letters
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/"
    return "2L", runs["2L"].eval_tokens[0], alphabet


# what each data source is, where its describe() has no "what"
DATA_WHAT = {"generality": "literal repeats, \"translation\" and fuzzy-matching blocks, mixed",
             "stdlib": "the Python standard library's source, as bytes",
             "text": "text files, as bytes"}


def what_was_trained(members: list[Member], seed: int) -> tuple[str, str]:
    """The report's table of the trained models (layers, heads, width, data, tokens, context),
    then one line per data source saying what it is."""
    rows = ["| model | layers x heads | d_model | data | context | steps x batch | tokens | seed |",
            "|---|---|---|---|---|---|---|---|"]
    sources = {}
    for m in members:
        tc, cfg = m.train, m.train.model
        what = tc.data.describe().get("what") or DATA_WHAT.get(tc.data.name, tc.data.name)
        if getattr(tc.data, "repeat_fraction", 0):
            what += (f", {tc.data.repeat_fraction:.0%} of the training sequences a window of it "
                     f"repeated back to back")
        sources[tc.data.name] = what
        extra = ", smeared keys" if cfg.smeared_keys else ""
        extra += f", MLP width {cfg.d_mlp}" if getattr(cfg, "d_mlp", 0) else ""
        rows.append(f"| {m.name} | {cfg.n_layers} x {cfg.n_heads}{extra} | {cfg.d_model} | "
                    f"`{tc.data.name}` | {tc.T} | {tc.steps} x {tc.batch} | "
                    f"{A.fmt_tokens(tc.steps * tc.tokens_per_step)} | {seed} |")
    return "\n".join(rows), "\n".join(f"- `{name}`: {what}." for name, what in sources.items())


def caveats(members: list[Member], size: str) -> list[str]:
    """What a careful reader should know before the verdicts, from what this run trained."""
    out = ["One seed: the spread of every number across seeds is not measured in this run."]
    if not any(m.group == "text" for m in members):
        out.append(f"The {size} size trains on synthetic data only (random tokens with repeated "
                   "segments, where copying pays by construction); the paper's subject is natural "
                   "text. The full size adds a text model.")
    if not any(getattr(m.train.model, "d_mlp", 0) for m in members):
        out.append("Every model is attention-only; the paper also trains models with MLPs, so "
                   "Argument 6 cannot be reproduced in full.")
    out.append("The paper judges its plots by eye; each verdict here is a stated rule, printed "
               "with its criteria below it, and any rule can come out NO.")
    return out


def reproduce(out="reproduction", size: str = "quick", seed: int = 0, backend: str = "numba",
              progress: bool = True) -> dict:
    """Train, measure and report; returns the numbers of numbers.json."""
    t0 = time.perf_counter()
    out = Path(out)
    figs = out / "figs"
    figs.mkdir(parents=True, exist_ok=True)
    members = family(size, seed)
    timings, runs = {}, {}
    for i, m in enumerate(members):
        run_dir = out / "runs" / m.slug
        t = time.perf_counter()
        state = _state(run_dir, m)
        if state == "finished":
            print(f"[{i + 1}/{len(members)}] {m.name}: reusing the finished run in {run_dir}")
        else:
            print(f"[{i + 1}/{len(members)}] training {m.name} ({m.train.steps} steps, "
                  f"{m.train.steps * m.train.tokens_per_step / 1e6:.1f}M tokens)"
                  + (", resuming from its checkpoint" if state == "resumable" else ""))
            result = None
            if state == "resumable":
                try:
                    result = train(None, run_dir, resume=True, progress=progress)   # its own backend
                except ValueError as e:                   # e.g. a damaged checkpoint: start over
                    print(f"  cannot resume ({e}); training {m.name} from the start")
            if result is None:
                result = train(m.train, run_dir, backend=backend, overwrite=True, progress=progress)
            if result.status != "finished":               # Ctrl-C: the checkpoint is saved
                print(f"{m.name} {result.status} at step {result.step}; run the same command again "
                      f"to continue where it stopped")
                raise KeyboardInterrupt
        runs[m.name] = load_run(run_dir)
        # the training time the run recorded (also when it is reused now)
        timings[f"train {m.name}"] = float(runs[m.name].manifest.get("timings", {})
                                           .get("train_seconds", time.perf_counter() - t))
    t = time.perf_counter()
    measured = [m for m in members if m.group != "generality"]
    measures = {m.name: measure_run(m.name, runs[m.name], backend)
                for m in tqdm(measured, desc="measure runs", disable=not progress)}
    timings["measure"] = time.perf_counter() - t

    induction = [m.name for m in members if m.group == "induction"]
    sections, numbers = [], {"size": size, "seed": seed, "backend": backend}
    t = time.perf_counter()
    sec, numbers["argument_1"] = A.argument_1(measures, runs, figs, induction)
    sections.append(sec)
    sec, numbers["argument_2"] = A.argument_2(measures, figs)
    sections.append(sec)
    sec, numbers["argument_3"] = A.argument_3(measures, runs, figs, A.ablation_model(measures), backend,
                                              progress)
    timings["ablation sweep (in arguments)"] = numbers["argument_3"].pop("sweep_seconds")
    sections.append(sec)
    gen = next(m for m in members if m.group == "generality")
    sec, numbers["argument_4"] = A.argument_4(gen.name, runs[gen.name], gen.train.data, figs, backend,
                                              literal_only=("2L", runs["2L"]))
    sections.append(sec)
    sec, numbers["argument_5"] = A.argument_5("2L", runs["2L"], measures["2L"], figs, backend)
    sections.append(sec)
    sec, numbers["argument_6"] = A.argument_6(measures, induction, numbers["argument_1"])
    sections.append(sec)
    text = [m.name for m in members if m.group == "text"]
    if text:                                          # full size: the same story on real text
        sec, numbers["text"] = A.argument_1(measures, runs, figs, text, tag="_text",
                                            title="On real text: the Python standard library",
                                            data="the stdlib byte corpus")
        sections.append(sec)
    name, tokens, alphabet = _passage(runs)
    sec, numbers["passage"] = A.loss_difference_passage(name, runs[name], measures[name], tokens,
                                                        alphabet, backend)
    sections.append(sec)
    timings["arguments and figures"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0
    numbers["timings_seconds"] = timings

    labels = {f"argument_{k}": str(k) for k in range(1, 7)} | {"text": "1, on real text"}
    verdicts = {labels[k]: numbers[k]["reproduced"] for k in labels if k in numbers}
    intro = [f"Reproduction of Olsson et al. (2022), \"In-context Learning and Induction Heads\", "
             f"with minih ({size} size, seed {seed}, backend {backend}). Every number below was "
             f"measured in this run; numbers.json holds them all.",
             "| argument | reproduced |\n|---|---|\n" + "\n".join(
                 f"| {k} | {'yes' if v else '**NO**'} |" for k, v in verdicts.items()),
             "What was trained:", *what_was_trained(members, seed),
             "Caveats:", "\n".join(f"- {c}" for c in caveats(members, size)),
             f"Time: {timings['total']:.0f} s for this invocation; training as recorded in each run: "
             + ", ".join(f"{k[6:]} {v:.0f} s" for k, v in timings.items() if k.startswith("train "))
             + "; analysis: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()
                                          if not k.startswith("train ") and k != "total") + "."]
    md, html = write_report(out, "Induction heads, reproduced on a CPU", intro, sections)
    numbers = _to_jsonable(numbers)                   # numpy scalars -> plain JSON numbers
    save_json(out / "numbers.json", numbers)
    print(f"\nreport: {html}\n        {md}\nfigures: {figs}\nnumbers: {out / 'numbers.json'}")
    print("verdicts: " + ", ".join(f"argument {k} {'yes' if v else 'NO'}" for k, v in verdicts.items()))
    print(f"total time {timings['total']:.0f} s")
    return numbers
