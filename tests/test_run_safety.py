"""Run directories lose nothing and are never silently wrong.

Oracles: an undisturbed run with the same config and seed (a run that was refused a
second writer, interrupted by SIGTERM, or resumed from another folder must equal it
bit for bit); the bytes a test writes into a file (a damaged file must be reported
by name, in one line); the command line's exit codes (2 bad input, 1 busy directory,
130 interrupted) and the absence of any "Traceback" in what a user sees.
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import minih
from minih.cli import main as cli_main
from minih.data import TextFiles
from minih.training import loop
from minih.training.config import TrainConfig
from minih.training.loop import train

ROOT = Path(__file__).resolve().parent.parent
STEPS = 40          # induction-2l cut short: enough steps for a few snapshots and checkpoints
TINY = TrainConfig(model=minih.ModelConfig(n_layers=2, n_heads=2, d_model=16, d_head=8, n_ctx=24, d_vocab=16),
                   data=minih.data.RepeatedTokens(d_vocab=16, min_len=4, max_len=10), steps=20, batch=4,
                   n_eval=3, log_snapshots=4, linear_snapshots=2)


# Children run with one BLAS thread: a product on several OpenBLAS threads may round
# differently, so runs compared bit for bit are all made in children with the same settings.
CHILD_ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def _cli(args, cwd):
    """`python -m minih ARGS` in a child process."""
    return subprocess.Popen([sys.executable, "-m", "minih", *args], cwd=cwd, env=CHILD_ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _python(code, cwd):
    """Python code in a child process; its exit code must be 0."""
    subprocess.run([sys.executable, "-c", code], cwd=cwd, env=CHILD_ENV, check=True)


def _finish(proc, timeout=300):
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def _one_clean_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def _same_runs(a, b):
    """Every snapshot's step, eval losses and params, and every training loss, equal bit for bit."""
    ra, rb = minih.load_run(a), minih.load_run(b)
    np.testing.assert_array_equal(ra.steps, rb.steps)
    np.testing.assert_array_equal(ra.losses, rb.losses)
    for i in range(len(ra)):
        pa, pb = ra.params(i), rb.params(i)
        assert pa.keys() == pb.keys()
        for k in pa:
            assert np.array_equal(pa[k], pb[k]), f"{k} differs at snapshot {i}"
    np.testing.assert_array_equal(ra.train_loss, rb.train_loss)


def _wait_for_step(run_dir: Path, proc, step: int, timeout=120):
    """Poll snapshots.json until the child has recorded a snapshot at `step` or later."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        assert proc.poll() is None, "the child ended before the test could act"
        try:
            index = json.loads((run_dir / "snapshots.json").read_text())
            if index and index[-1]["step"] >= step:
                return
        except (FileNotFoundError, json.JSONDecodeError):
            pass
        time.sleep(0.02)
    raise AssertionError(f"no snapshot at step >= {step} after {timeout} s")


@pytest.fixture(scope="module")
def undisturbed(tmp_path_factory):
    """induction-2l cut to STEPS steps, trained in one go by the command line."""
    out = tmp_path_factory.mktemp("undisturbed") / "run"
    rc, _, err = _finish(_cli(["train", "induction-2l", "--set", f"steps={STEPS}", "--no-progress",
                               "--out", str(out)], out.parent))
    assert rc == 0, err
    return out


# --- one writer at a time -------------------------------------------------------------

def test_two_writers_started_together_one_proceeds(tmp_path, undisturbed):
    argv = ["train", "induction-2l", "--set", f"steps={STEPS}", "--no-progress", "--out", "run"]
    procs = [_cli(argv, tmp_path), _cli(argv, tmp_path)]
    results = [_finish(p) for p in procs]
    codes = sorted(rc for rc, _, _ in results)
    assert codes[0] == 0 and codes[1] != 0, results
    refused = next(err for rc, _, err in results if rc != 0)
    # depending on who got there first: the lock, or the finished run.json
    line = _one_clean_line(refused)
    assert "being written by another process" in line or "already holds a run" in line, line
    _same_runs(tmp_path / "run", undisturbed)


def test_overwrite_and_resume_are_refused_while_a_run_is_written(tmp_path, undisturbed):
    first = _cli(["train", "induction-2l", "--set", f"steps={STEPS}", "--no-progress", "--out", "run"],
                 tmp_path)
    _wait_for_step(tmp_path / "run", first, 2)
    os.kill(first.pid, signal.SIGSTOP)           # hold it mid-run: the refusals cannot race its end
    try:
        for extra in (["induction-2l", "--overwrite"], ["--resume"]):
            rc, _, err = _finish(_cli(["train", *extra, "--no-progress", "--out", "run"], tmp_path))
            line = _one_clean_line(err)
            assert rc == 1 and "being written by another process" in line and f"pid {first.pid}" in line, line
    finally:
        os.kill(first.pid, signal.SIGCONT)
    assert _finish(first)[0] == 0
    _same_runs(tmp_path / "run", undisturbed)


def test_overwrite_leaves_nothing_of_the_old_run(tmp_path):
    out = tmp_path / "r"
    train(TINY, out, progress=False)
    for derived in ("analysis", "ablation"):
        (out / derived).mkdir()
        (out / derived / "old.csv").write_text("stale\n")
    (out / "snapshots" / "step_000999999.npz").write_bytes(b"stale")
    (out / "notes.txt").write_text("mine")                     # not the run's: kept
    train(TINY.replace(steps=5), out, progress=False, overwrite=True)
    assert not (out / "analysis").exists() and not (out / "ablation").exists()
    assert not (out / "snapshots" / "step_000999999.npz").exists()
    assert (out / "notes.txt").read_text() == "mine"
    assert minih.load_run(out).steps[-1] == 5 and minih.load_run(out).train_loss.shape == (5,)


def test_a_dead_writer_leaves_no_lock_and_its_temporary_files_go(tmp_path):
    out = tmp_path / "r"
    train(TINY, out, progress=False, stop_after=3)
    # a writer killed mid-write leaves a temporary file of its own process id
    (out / "checkpoint.npz.99999.tmp").write_bytes(b"half")
    # and a child that takes the lock, then dies without releasing it
    _python(f"import os, minih.training.run as r\nwith r.writer_lock({str(out)!r}):\n    os._exit(0)", tmp_path)
    result = train(None, out, resume=True, progress=False)
    assert result.status == "finished" and result.step == TINY.steps
    assert not list(out.glob("*.tmp"))


# --- interrupts -------------------------------------------------------------------------

def test_sigterm_checkpoints_then_resume_is_bit_identical(tmp_path, undisturbed):
    """A child trains; SIGTERM arrives mid-run; it checkpoints and exits 130; --resume
    finishes it; the result equals the undisturbed run. (6 s on 2 cores shared with other jobs.)"""
    child = _cli(["train", "induction-2l", "--set", f"steps={STEPS}", "--no-progress", "--out", "run"],
                 tmp_path)
    _wait_for_step(tmp_path / "run", child, 3)
    os.kill(child.pid, signal.SIGSTOP)           # deliver SIGTERM at a known point: mid-run
    os.kill(child.pid, signal.SIGTERM)
    os.kill(child.pid, signal.SIGCONT)
    rc, out, err = _finish(child)
    assert rc == 130 and "Traceback" not in err, (rc, err)
    assert out.startswith("interrupted:") and "--resume" in out
    run = minih.load_run(tmp_path / "run")
    assert run.manifest["status"] == "interrupted" and run.train_loss.shape[0] < STEPS
    rc, _, err = _finish(_cli(["train", "--resume", "--no-progress", "--out", "run"], tmp_path))
    assert rc == 0, err
    _same_runs(tmp_path / "run", undisturbed)


def test_a_second_interrupt_during_the_checkpoint_waits_for_it(tmp_path, monkeypatch):
    real_save = loop.save_checkpoint

    def save_while_interrupted(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)          # an impatient second Ctrl-C, mid-write
        real_save(*args, **kwargs)

    def first_interrupt(step, loss):
        if step == 6:
            os.kill(os.getpid(), signal.SIGTERM)
            monkeypatch.setattr(loop, "save_checkpoint", save_while_interrupted)

    r = train(TINY, tmp_path / "a", progress=False, on_step=first_interrupt)
    assert r.status == "interrupted" and r.step == 6               # no KeyboardInterrupt escaped
    monkeypatch.setattr(loop, "save_checkpoint", real_save)
    train(None, tmp_path / "a", resume=True, progress=False)          # the checkpoint is whole
    train(TINY, tmp_path / "b", progress=False)
    _same_runs(tmp_path / "a", tmp_path / "b")


# --- data recorded so a run resumes anywhere --------------------------------------------

def _text(seed: int, n: int = 6000) -> bytes:
    words = [b"alpha", b"beta", b"gamma", b"delta", b"epsilon", b"zeta", b"eta", b"theta"]
    rng = np.random.default_rng(seed)
    return b" ".join(words[i] for i in rng.integers(0, len(words), n // 5))[:n]


def test_a_text_run_resumes_from_another_folder_on_the_same_bytes(tmp_path):
    home, elsewhere = tmp_path / "home", tmp_path / "elsewhere"
    home.mkdir()
    elsewhere.mkdir()
    (home / "corpus.txt").write_bytes(_text(0))
    (elsewhere / "corpus.txt").write_bytes(_text(1))       # same relative name, other bytes
    tc = TINY.replace(model=TINY.model.replace(d_vocab=256, n_ctx=16), data=TextFiles(path=str(home / "corpus.txt")))
    setup = ("import minih\nfrom minih.training.config import TrainConfig\n"
             f"tc = TrainConfig.from_dict({tc.to_dict()!r})\n")
    # a run started in `home` naming its text relatively, stopped after 7 steps
    _python(setup + "minih.train(tc.replace(data=minih.data.TextFiles(path='corpus.txt')), 'run', "
                    "progress=False, stop_after=7)", home)
    recorded = minih.load_run(home / "run").manifest
    assert recorded["train"]["data"]["path"] == str(home / "corpus.txt")        # made absolute
    assert recorded["data_fingerprint"]["bytes"] == len(_text(0))
    _python(setup + f"minih.train(tc, {str(tmp_path / 'whole')!r}, progress=False)", tmp_path)
    # resumed from a folder that has another corpus.txt: trains on the bytes of the first
    rc, _, err = _finish(_cli(["train", "--resume", "--no-progress", "--out", str(home / "run")], elsewhere))
    assert rc == 0, err
    _same_runs(home / "run", tmp_path / "whole")

    # the text changes (same size, other bytes): resuming, even to extend, is refused
    changed = bytearray(_text(0))
    changed[100] ^= 1
    (home / "corpus.txt").write_bytes(bytes(changed))
    with pytest.raises(ValueError, match="changed since the run started"):
        train(tc.replace(steps=30), home / "run", resume=True, progress=False)
    rc, _, err = _finish(_cli(["train", "--resume", "--steps", "30", "--out", str(home / "run")], elsewhere))
    line = _one_clean_line(err)
    assert rc == 2 and "same sizes, other bytes" in line and str(home) in line, line

    # a run recorded before fingerprints: the sizes it noted are compared instead
    manifest = json.loads((home / "run" / "run.json").read_text())
    del manifest["data_fingerprint"]
    (home / "run" / "run.json").write_text(json.dumps(manifest))
    (home / "corpus.txt").write_bytes(_text(0) + b" more")
    with pytest.raises(ValueError, match="training bytes, validation bytes were"):
        train(tc.replace(steps=30), home / "run", resume=True, progress=False)


# --- damaged run files --------------------------------------------------------------------

def _damage_cases():
    """(what, file, how to damage it, what the message must say)."""
    def rewrite_json(name, change):
        def damage(run_dir):
            path = run_dir / name
            path.write_text(json.dumps(change(json.loads(path.read_text()))))
        return damage

    def truncate(name):
        return lambda run_dir: (run_dir / name).write_bytes((run_dir / name).read_bytes()[:40])

    def nan_weights(run_dir):
        run = minih.load_run(run_dir)
        path = run_dir / run.index[-1]["params"]
        params = run.params(len(run) - 1)
        params["unembed.W_U"][0, 0] = np.nan
        np.savez(path, **params)

    def drop(key):
        return lambda d: {k: v for k, v in d.items() if k != key}

    def set_entry(i, **change):
        return lambda index: [dict(e, **change) if j == i else e for j, e in enumerate(index)]

    return [
        ("run.json truncated", "run.json", truncate("run.json"), "not valid JSON"),
        ("run.json model a string", "run.json", rewrite_json("run.json", lambda d: {**d, "model": "tiny"}),
         "'model' must be a dict"),
        ("run.json model field wrong", "run.json",
         rewrite_json("run.json", lambda d: {**d, "model": {**d["model"], "n_layers": "two"}}), "n_layers"),
        ("run.json model missing", "run.json", rewrite_json("run.json", drop("model")), "not a minih run"),
        ("run.json a list", "run.json", rewrite_json("run.json", lambda d: [d]), "not a minih run"),
        ("snapshots.json truncated", "snapshots.json", truncate("snapshots.json"), "not valid JSON"),
        ("snapshots.json not a list", "snapshots.json", rewrite_json("snapshots.json", lambda i: {"0": i}),
         "expected a list"),
        ("snapshot entry without losses", "snapshots.json",
         rewrite_json("snapshots.json", lambda i: [drop("losses")(e) for e in i]), "lacks ['losses']"),
        ("snapshot step a string", "snapshots.json", rewrite_json("snapshots.json", set_entry(1, step="1")),
         "step='1'"),
        ("snapshot steps out of order", "snapshots.json",
         rewrite_json("snapshots.json", lambda i: i[::-1]), "steps must increase"),
        ("snapshot outside the run", "snapshots.json",
         rewrite_json("snapshots.json", set_entry(0, params="../../x.npz")), "under snapshots/"),
        ("NaN weights", "snapshots/step_000000020.npz", nan_weights, "NaN or inf weights"),
    ]


@pytest.mark.parametrize("what, name, damage, says", _damage_cases(), ids=[c[0] for c in _damage_cases()])
def test_damaged_run_files_are_named_in_one_line(tmp_path, capsys, what, name, damage, says):
    out = tmp_path / "r"
    train(TINY, out, progress=False)
    damage(out)
    with pytest.raises(ValueError) as info:
        run = minih.load_run(out)
        run.params(len(run) - 1)
    message = str(info.value)
    assert name in message and says in message and "\n" not in message, message
    # the commands say the same in one line: analysing it, resuming it (which reads no weights
    # of snapshots, only the checkpoint's)
    commands = [["analyze", str(out), "--quiet"]]
    if name != "snapshots/step_000000020.npz":
        commands.append(["train", "--resume", "--out", str(out), "--steps", "30"])
    for argv in commands:
        assert cli_main(argv) == 2, argv
        err = capsys.readouterr().err
        assert name in _one_clean_line(err)


def test_a_checkpoint_with_nan_is_refused_not_blamed_on_the_lr(tmp_path):
    out = tmp_path / "r"
    train(TINY, out, progress=False, stop_after=5)
    with np.load(out / "checkpoint.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["adam_v/embed.W_E"][3, 1] = np.nan
    np.savez(out / "checkpoint.npz", **arrays)
    with pytest.raises(ValueError, match=r"checkpoint .*checkpoint.npz is damaged: NaN or inf in \['adam_v/embed.W_E'\]"):
        train(None, out, resume=True, progress=False)


def test_a_damaged_train_entry_is_named(tmp_path, capsys):
    out = tmp_path / "r"
    train(TINY, out, progress=False, stop_after=3)
    manifest = json.loads((out / "run.json").read_text())
    for bad in ({**manifest["train"], "steps": "many"}, {**manifest["train"], "optim": 3}, "TINY"):
        (out / "run.json").write_text(json.dumps({**manifest, "train": bad}))
        assert cli_main(["train", "--resume", "--out", str(out)]) == 2
        line = _one_clean_line(capsys.readouterr().err)
        assert "run.json" in line and "'train' entry" in line, line
    # the layout of older run directories (lr and the other AdamW fields beside steps) still reads
    train_dict = {k: v for k, v in manifest["train"].items() if k != "optim"}
    (out / "run.json").write_text(json.dumps({**manifest, "train": {**train_dict, **manifest["train"]["optim"]}}))
    assert train(None, out, resume=True, progress=False).status == "finished"


# --- bad values: refused up front, named, one line ---------------------------------------------

BAD_VALUES = [
    (["--set", "lr=inf"], "lr"),
    (["--set", "lr=nan"], "lr"),
    (["--set", "weight_decay=inf"], "weight_decay"),
    (["--set", "beta2=nan"], "beta2"),
    (["--set", "grad_clip=inf"], "grad_clip"),
    (["--set", "eps=inf"], "eps"),
    (["--set", "min_lr_frac=nan"], "min_lr_frac"),
    (["--set", "init_embed_std=inf"], "init_embed_std"),
    (["--set", "init_attn_std=nan"], "init_attn_std"),
    (["--set", "smear_init=inf"], "smear_init"),
    (["--checkpoint-seconds", "nan"], "--checkpoint-seconds"),
    (["--checkpoint-seconds", "inf"], "--checkpoint-seconds"),
    (["--tokens", "nan"], "--tokens"),
    (["--out", ""], "--out"),
    (["--out", "{file}"], "is a file"),
    (["--out", "{file}/run"], "cannot write the run directory"),
]


@pytest.mark.parametrize("args, names", BAD_VALUES, ids=[" ".join(a) for a, _ in BAD_VALUES])
def test_bad_values_exit_2_with_one_line(tmp_path, capsys, args, names):
    a_file = tmp_path / "a_file"
    a_file.write_text("not a directory")
    args = [a.format(file=a_file) for a in args]
    out = [] if "--out" in args else ["--out", str(tmp_path / "run")]
    assert cli_main(["train", "induction-2l", "--no-progress", *out, *args]) == 2
    line = _one_clean_line(capsys.readouterr().err)
    assert names in line, line
    assert not (tmp_path / "run").exists()                    # refused before anything was written


def test_bad_values_in_the_library(tmp_path, monkeypatch):
    for change, name in ((dict(lr=float("inf")), "lr"), (dict(weight_decay=float("nan")), "weight_decay"),
                         (dict(model=TINY.model.replace(d_head=4)), None)):
        if name is None:
            TINY.replace(**change)                             # a valid change passes
            continue
        with pytest.raises(ValueError, match=name):
            TINY.replace(**change)
    with pytest.raises(ValueError, match="init_pos_std"):
        minih.ModelConfig(init_pos_std=float("nan"))
    for kwargs, name in ((dict(checkpoint_seconds=float("nan")), "checkpoint_seconds"),
                         (dict(checkpoint_every=0), "checkpoint_every"), (dict(stop_after=-1), "stop_after")):
        with pytest.raises(ValueError, match=name):
            train(TINY, tmp_path / "x", progress=False, **kwargs)
    with pytest.raises(ValueError, match="output directory"):
        train(TINY, "", progress=False)
    # a folder nobody may write to (simulated: the tests may run as root, who may write anywhere)
    def refuse(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(Path, "mkdir", refuse)
    with pytest.raises(ValueError, match="cannot write the run directory .*Permission denied"):
        train(TINY, tmp_path / "read-only" / "run", progress=False)


def test_a_corpus_source_without_a_path_stays_on_its_corpus(tmp_path, monkeypatch):
    # bpe with path "" means the stdlib (here its small prose corpus); making the empty path
    # "absolute" once turned it into the current folder, and the run trained on whatever
    # text files were there. Started in a folder full of other text, it must not read them.
    for i in range(5):
        (tmp_path / f"other{i}.txt").write_text("not the corpus " * 200)
    monkeypatch.chdir(tmp_path)
    data = minih.data.make_source("bpe", corpus="prose", vocab_size=300)
    tc = TINY.replace(model=TINY.model.replace(d_vocab=300, n_ctx=16), data=data)
    minih.train(tc, tmp_path / "run", progress=False, stop_after=2)
    recorded = minih.load_run(tmp_path / "run").manifest
    assert recorded["train"]["data"]["path"] == ""
    assert recorded["data"]["root"] != str(tmp_path) and recorded["data"]["files"] == 1
    assert recorded["data"]["train_tokens"] == data.describe()["train_tokens"]
