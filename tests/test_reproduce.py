"""`minih reproduce` end to end at tiny size: report, figures and numbers agree with the
runs' own tables, and a re-run with the same seed gives the same numbers."""
import json
import os
import re

import numpy as np
import pytest

from minih import load_run, metrics
from minih.app.reproduce import reproduce


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("reproduction")
    numbers = reproduce(out, size="tiny", backend="numpy", progress=False, workers=2)
    return out, numbers


def test_report_and_every_figure_exist(tiny):
    out, numbers = tiny
    md = (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert len(images) >= 12
    for rel in images:
        assert (out / rel).is_file() and (out / rel).stat().st_size > 2000, rel
    assert html.count("data:image/png;base64,") == len(images)        # all embedded
    for k in range(1, 7):
        assert f"Argument {k}" in md
    assert json.loads((out / "numbers.json").read_text())["size"] == "tiny"


def test_numbers_in_report_match_the_runs(tiny):
    out, numbers = tiny
    md = (out / "report.md").read_text()
    for name, row in numbers["argument_1"]["models"].items():
        run = load_run(out / "runs" / name.lower().replace(" ", "-"))
        early, late = numbers["argument_1"]["icl_indices"]
        # the ICL score stated for the last snapshot is the run's own, recomputed here
        icl = float(metrics.icl_score(run.losses[-1], early, late))
        assert row["icl_last"] == pytest.approx(icl, abs=1e-6)
        assert row["loss_last"] == pytest.approx(float(run.losses[-1].mean()), rel=1e-5)
        # the sentence about this model states exactly these numbers
        assert f"- `{name}`: ICL score {row['icl_first']:.2f} -> {row['icl_last']:.2f}; " in md
    a5 = numbers["argument_5"]
    assert (f"head 0.{a5['prev_head'][1]} attends to the previous token (score "
            f"{a5['prev_score']:.2f})") in md
    assert f"eigenvalue copying score is {a5['ov_eigen_copying']:.2f}" in md
    # Argument 3: every head's row states the numbers of numbers.json
    for label, r in numbers["argument_3"]["per_head"].items():
        cells = re.escape(f" | {r['prefix']:.2f} | {r['prev_token']:.2f} | {r['dicl_pattern']:+.2f} | "
                          f"{r['dicl_zero']:+.2f} |")
        assert re.search(rf"\| {re.escape(label)}( \(induction\))?{cells}", md), label
    # the ICL score at the other index pairs is the run's own
    for name, row in numbers["argument_1"]["models"].items():
        run = load_run(out / "runs" / name.lower().replace(" ", "-"))
        for pair in row["icl_pairs"].values():
            e, l = pair["indices"]
            assert pair["last"] == pytest.approx(float(metrics.icl_score(run.losses[-1], e, l)), abs=1e-6)
    # every criterion printed under a verdict is the one in numbers.json, marked as it held
    for k in range(1, 7):
        for what, held in numbers[f"argument_{k}"]["criteria"]:
            assert f"- {'held' if held else '**did not hold**'}: {what}" in md
    # the passage's sentence states the means of numbers.json, and says copying gained most
    # only where it did
    p = numbers["passage"]
    assert (f"tokens that copying can predict (the same two tokens came earlier in the passage) "
            f"changed by {p['copyable']['mean_change']:+.2f} nats on average") in md
    assert ("in-context copying is where the model gained most" in md) == p["copying_gains_most"]
    # every verdict in the summary table is the one in numbers.json
    for k in range(1, 7):
        flag = "yes" if numbers[f"argument_{k}"]["reproduced"] else "**NO**"
        assert f"| {k} | {flag} |" in md


def test_argument_6_puts_both_families_side_by_side(tiny):
    # oracle: each run directory, read back here; the ablated ICL recomputed through
    # minih.interp.ablation directly
    from minih.interp.ablation import Ablation, run_with_ablation
    from minih.model import get_backend
    out, numbers = tiny
    md = (out / "report.md").read_text()
    a6 = numbers["argument_6"]["models"]
    assert set(a6) == {"1L", "2L", "3L", "1L MLP", "2L MLP", "3L MLP"}
    early, late = numbers["argument_1"]["icl_indices"]
    for name, row in a6.items():
        run = load_run(out / "runs" / name.lower().replace(" ", "-"))
        assert run.cfg.d_mlp == (4 * run.cfg.d_model if "MLP" in name else 0)
        assert row["family"] == ("with MLPs" if "MLP" in name else "attention-only")
        assert row["icl_last"] == pytest.approx(float(metrics.icl_score(run.losses[-1], early, late)),
                                                abs=1e-6)
        heads = [tuple(h) for h in row["induction_heads"]]
        if heads:
            p = run.params(len(run) - 1)
            logits, _ = run_with_ablation(p, run.eval_tokens, run.cfg, Ablation(heads, "pattern"))
            ablated = metrics.icl_score(get_backend("numpy").per_token_loss(logits, run.eval_tokens),
                                        early, late)
            assert row["share_removed"] == pytest.approx(1 - ablated / row["icl_last"], rel=1e-6)
        else:
            assert np.isnan(row["share_removed"])
        assert re.search(rf"\| {re.escape(name)} \| {row['family']} \| [^|]+ \| "
                         rf"{row['icl_first']:.2f} -> {row['icl_last']:.2f} \|", md), name
    # the models with MLPs get Argument 1's section of their own, with its verdict
    assert "Models with MLPs: the same signatures" in md
    flag = "yes" if numbers["mlp"]["reproduced"] else "**NO**"
    assert f"| 1, with MLPs | {flag} |" in md


def test_rerun_reuses_runs_and_repeats_numbers(tiny, capsys):
    out, numbers = tiny
    again = reproduce(out, size="tiny", backend="numpy", progress=False)
    assert "reusing the finished run" in capsys.readouterr().out
    strip = lambda d: json.dumps({k: v for k, v in d.items() if k != "timings_seconds"},
                                 sort_keys=True, default=str)
    assert strip(again) == strip(numbers)


def test_fresh_run_with_same_seed_gives_same_numbers(tiny, tmp_path):
    # the fixture trained its models side by side in worker processes; this run trains them
    # one after another in this process: the same runs, bit for bit, so the same numbers
    out, numbers = tiny
    fresh = reproduce(tmp_path / "again", size="tiny", backend="numpy", progress=False, workers=1)
    strip = lambda d: json.dumps({k: v for k, v in d.items() if k != "timings_seconds"},
                                 sort_keys=True, default=str)
    assert strip(fresh) == strip(numbers)
    for name in ("2L", "3L MLP", "2L text"):
        a = load_run(out / "runs" / name.lower().replace(" ", "-"))
        b = load_run(tmp_path / "again" / "runs" / name.lower().replace(" ", "-"))
        assert np.array_equal(a.losses, b.losses), name


def test_cli_bad_option(capsys):
    from minih.cli import main
    with pytest.raises(SystemExit) as e:
        main(["reproduce", "--size", "huge"])
    assert e.value.code == 2
    capsys.readouterr()
    assert main(["reproduce", "--size", "tiny", "--workers", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--workers must be >= 1" in err


def test_an_interrupted_run_is_resumed_not_restarted(tiny, tmp_path, capsys):
    # train the first member part way (as Ctrl-C would leave it), then reproduce
    from minih.app.reproduce.family import family
    from minih.training.loop import train
    first = family("tiny")[0]
    stopped = train(first.train, tmp_path / "runs" / first.slug, backend="numpy", progress=False,
                    stop_after=5)
    assert stopped.status == "stopped"
    reproduce(tmp_path, size="tiny", backend="numpy", progress=False)
    out = capsys.readouterr().out
    assert f"training {first.name}" in out and "resuming from its checkpoint" in out
    run = load_run(tmp_path / "runs" / first.slug)
    assert run.manifest["status"] == "finished" and run.steps[-1] == first.train.steps
    # and the resumed weights equal those of the uninterrupted run, bit for bit
    whole = load_run(tiny[0] / "runs" / first.slug)
    last, ref = run.params(len(run) - 1), whole.params(len(whole) - 1)
    assert all(np.array_equal(last[k], ref[k]) for k in ref)


def test_a_second_reproduce_into_the_same_folder_is_refused(tmp_path):
    # oracle: the lock file's own rule (training/run.py): while one process writes OUT,
    # another gets RunInUse before it trains anything (a second reproduce had trained the
    # runs again while the first read them for its analysis: a traceback there)
    from minih.training.run import RunInUse, writer_lock
    with writer_lock(tmp_path):                          # as a first reproduce holds it
        with pytest.raises(RunInUse, match="another process"):
            reproduce(tmp_path, size="tiny", progress=False)
    assert not (tmp_path / "runs").exists()


def test_copyable_tokens_by_hand():
    from minih.app.reproduce.arguments import copyable
    # oracle: position i is copyable when the pair (t[i-1], t[i]) occurred before
    assert copyable([1, 2, 3, 1, 2, 3, 4]).tolist() == [False, False, False, False, True, True, False]
    assert copyable([5, 5, 5]).tolist() == [False, False, True]
    assert not copyable([7]).any()


def test_seeds_trains_the_others_through_the_sweep_and_reports_each(tmp_path):
    # oracle: each extra seed's runs are ordinary run directories equal to training that
    # seed's family directly, and the report's seed table states each seed's verdicts
    numbers = reproduce(tmp_path, size="tiny", backend="numpy", progress=False, seeds=2,
                        scheduler="serial")
    from minih.app.reproduce.family import family
    seeds = numbers["seeds"]
    assert seeds["seeds"] == [0, 1]
    one = {m.name: m for m in family("tiny", 1)}
    run = load_run(tmp_path / "seeds" / f"seed1-{one['2L'].slug}")
    assert run.manifest["train"]["seed"] == 1 and run.manifest["status"] == "finished"
    md = (tmp_path / "report.md").read_text()
    assert "## Seeds: the verdicts and the main numbers across seeds" in md
    for label, verdicts in seeds["verdicts"].items():
        cells = " | ".join("yes" if v else "**NO**" for v in verdicts)
        assert f"| {label} | {cells} | {sum(verdicts)} of 2 |" in md
    # the first seed's numbers are the main report's
    assert seeds["spread"]["2L: final ICL score (nats)"]["values"][0] == \
        numbers["argument_1"]["models"]["2L"]["icl_last"]
    # every section's range table: seed 1's value is its own run's, recomputed here, and the
    # report's row states the values and the range of numbers.json
    early, late = numbers["argument_1"]["icl_indices"]
    row = seeds["ranges"]["argument_1"]["models/2L/icl_last"]
    assert row["values"][1] == pytest.approx(float(metrics.icl_score(run.losses[-1], early, late)), abs=1e-6)
    assert row["min"] == min(row["values"]) and row["max"] == max(row["values"])
    cells = " | ".join(f"{v:.2f}" for v in row["values"])
    lo, hi = f"{row['min']:.2f}", f"{row['max']:.2f}"
    assert f"| 2L | ICL score, last snapshot | {cells} | {lo if lo == hi else f'{lo} to {hi}'} |" in md
    assert md.count("Across the 2 seeds (0, 1; the sentences above are seed 0's)") >= 7
    # per-head numbers have no counterpart across seeds: no range for them
    assert not any("per_head" in path for r in seeds["ranges"].values() for path in r)
    # each figure says whether it shows the seeds' spread or the first seed alone
    captions = re.findall(r"^\*(.+)\*$", md, flags=re.M)
    assert any("Band around each curve: its range over the seeds" in c for c in captions)
    assert all("over the seeds" in c or "Seed 0's run alone" in c for c in captions)
    with pytest.raises(ValueError, match="seeds must be an int >= 1"):
        reproduce(tmp_path, size="tiny", seeds=0)
    with pytest.raises(ValueError, match="scheduler must be None, 'serial', 'local'"):
        reproduce(tmp_path / "never", size="tiny", seeds=2, scheduler="nonsense")
    assert not (tmp_path / "never").exists()                     # refused before any work
    # the full size trains 3 seeds unless told: its scheduler is checked, before any work
    with pytest.raises(ValueError, match="scheduler must be None, 'serial', 'local'"):
        reproduce(tmp_path / "never", size="full", scheduler="nonsense")
    assert not (tmp_path / "never").exists()


def test_the_head_sweep_can_take_fewer_snapshots(tiny, tmp_path):
    # the text model's sweep takes TEXT_SWEEP_SNAPSHOTS snapshots, evenly spread, the last kept
    from minih.app.reproduce import arguments as A
    from minih.app.reproduce.measure import measure_run
    out, _ = tiny
    run = load_run(out / "runs" / "2l")
    ms = {"2L": measure_run("2L", run)}
    _, every = A.argument_3(ms, {"2L": run}, tmp_path, "2L", progress=False)
    _, few = A.argument_3(ms, {"2L": run}, tmp_path, "2L", progress=False, max_snapshots=3)
    S = len(run)
    assert S > 3 and every["snapshots_swept"] == list(range(S))
    assert few["snapshots_swept"] == [0, int(np.round((S - 1) / 2)), S - 1]
    # what is said of the last snapshot does not depend on how many came before it
    assert few["dicl_last"] == every["dicl_last"] and few["per_head"] == every["per_head"]


def test_a_training_worker_runs_on_its_share_of_the_cores(monkeypatch):
    # oracle: numba's own thread count after the worker's setup, and at each step. Two
    # workers on two cores get one thread each (training.py), not every core each (four
    # threads on two); once one of them is idle, the other takes both at its next step
    import queue
    from types import SimpleNamespace
    import numba
    from minih.app.reproduce import training
    before, steps, share = numba.get_num_threads(), training._steps, training._share
    cores = numba.config.NUMBA_NUM_THREADS
    try:
        shared = SimpleNamespace(value=0)
        training._set_share(shared, busy=os.cpu_count())
        assert shared.value == 1
        training._start_worker("queue", shared)
        assert numba.get_num_threads() == 1 and training._steps == "queue"
        shared.value = 10 ** 6
        training._start_worker("queue", shared)                 # never above what numba has
        assert numba.get_num_threads() == cores

        seen = []

        def train_member(member, run_dir, backend, resumable, progress, on_step):
            for step, busy in enumerate([2, 2, 1, 1, 2]):       # the parent's count changes
                training._set_share(shared, busy=busy)
                on_step(step, 0.0)
                seen.append(numba.get_num_threads())
            return "finished", 5
        monkeypatch.setattr(training, "train_member", train_member)
        training._set_share(shared, busy=2)
        training._start_worker(queue.Queue(), shared)
        member = SimpleNamespace(name="m")
        assert training._worker(member, None, "numba", False, False) == ("finished", 5, None)
        two = max(1, min(cores, (os.cpu_count() or 1) // 2))
        one = max(1, min(cores, os.cpu_count() or 1))
        assert seen == [two, two, one, one, two]
    finally:
        numba.set_num_threads(before)
        training._steps, training._share = steps, share


@pytest.mark.parametrize("threads", [1, 2])
def test_the_analysis_leaves_a_core_to_the_figures_and_gives_it_back(threads):
    # oracle: numba's own thread count inside and after the block, also after an error:
    # one fewer while the figures' process draws on the other core, never below one
    import numba
    from minih.app import reproduce as rep
    if numba.config.NUMBA_NUM_THREADS < threads:
        pytest.skip(f"numba has {numba.config.NUMBA_NUM_THREADS} thread(s) on this machine")
    before = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        with pytest.raises(KeyError):
            with rep._one_core_left():
                assert numba.get_num_threads() == max(1, threads - 1)
                raise KeyError("an error inside the analysis")
        assert numba.get_num_threads() == threads
    finally:
        numba.set_num_threads(before)


def test_training_workers_measure_and_sweep_the_runs_they_are_asked_to(tmp_path):
    # oracle: measure_run and ablation_sweep in this process on the same run directories.
    # Two tiny members trained side by side; only the first is measured by its worker, to
    # the same bits. Argument 3's candidates here: the first alone, which has no induction
    # heads, so it is the model ablated by ablation_model's fallback; a worker sweeps it
    # once its measures are in, to the same bits. The second is no candidate: not swept
    import pickle
    from minih.app.reproduce import arguments
    from minih.app.reproduce.family import family
    from minih.app.reproduce.measure import measure_run
    from minih.app.reproduce.training import train_family
    members = family("tiny", 0)[:2]
    early, sweeps = train_family(members, tmp_path, "numba", progress=False, workers=2,
                                 measure=[members[0].name],
                                 sweeps=[((members[0].name, "no such model"), 2)])
    assert list(early) == [members[0].name]
    run = load_run(tmp_path / members[0].slug)
    here = measure_run(members[0].name, run, "numba")
    assert pickle.dumps(early[members[0].name]) == pickle.dumps(here)    # every field, every bit
    assert not arguments.can_contrast(here) and list(sweeps) == [members[0].name]
    swept = arguments.ablation_sweep(run, "numba", False, 2)
    assert len(swept.snapshots) == 2
    sweeps[members[0].name].seconds = swept.seconds = 0.0                # (only the time differs)
    assert pickle.dumps(sweeps[members[0].name]) == pickle.dumps(swept)


def test_the_model_ablated_is_known_once_the_measures_it_reads_are_in(monkeypatch):
    # oracle: ablation_model's rule, written out: the first candidate that can contrast, the
    # first candidate if none can; unknown (None) while an earlier candidate is still being
    # measured here, never known ("") when one is measured elsewhere (the parent sweeps)
    from minih.app.reproduce import arguments
    from minih.app.reproduce.training import ablated
    monkeypatch.setattr(arguments, "can_contrast", lambda m: m == "yes")
    here = {"2L", "3L"}
    assert ablated(("2L", "3L"), {}, here) is None
    assert ablated(("2L", "3L"), {"3L": "yes"}, here) is None            # 2L may still win
    assert ablated(("2L", "3L"), {"2L": "yes"}, here) == "2L"            # 3L not needed
    assert ablated(("2L", "3L"), {"2L": "no"}, here) is None
    assert ablated(("2L", "3L"), {"2L": "no", "3L": "yes"}, here) == "3L"
    assert ablated(("2L", "3L"), {"2L": "no", "3L": "no"}, here) == "2L"  # the fallback
    assert ablated(("2L", "3L"), {"2L": "no"}, {"2L"}) == ""              # 3L: not measured here
    for ms in ({"2L": "yes"}, {"2L": "no", "3L": "yes"}, {"2L": "no", "3L": "no"}):
        assert ablated(("2L", "3L"), ms, here) == arguments.ablation_model(ms, ("2L", "3L"))


def test_the_pool_takes_the_costliest_waiting_task_first():
    # oracle: the order written out by hand, a task added later taking its place by cost
    from minih.app.reproduce.training import longest_first
    waiting = [(1.2, "1L"), (3.0, "3L"), (1.3, "1L smeared")]
    assert longest_first(waiting, 1) == [(3.0, "3L")]
    waiting.append((2.0, "sweep"))
    assert longest_first(waiting, 2) == [(2.0, "sweep"), (1.3, "1L smeared")]
    assert waiting == [(1.2, "1L")]
    assert longest_first(waiting, 0) == [] and waiting == [(1.2, "1L")]


def test_a_sweeps_cost_against_its_models_training_is_as_measured():
    # oracle: `reproduce --quick`'s 3L on the AMD VM: trained and evaluated in 12.1 s,
    # swept (55 snapshots, 16 forwards each) in 5.0 s
    from minih.app.reproduce.family import family
    from minih.app.reproduce.training import cost, sweep_cost
    three = {m.name: m for m in family("quick", 0)}["3L"]
    assert sweep_cost(three, None) / cost(three) == pytest.approx(5.0 / 12.1, rel=0.15)
