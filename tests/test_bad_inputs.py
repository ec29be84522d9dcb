"""Nothing silent: every bad input ends in one line that names what was wrong.

Command-line rows check the exit status and the one-line message on stderr (and that
no traceback reaches the user); Python rows check for a ValueError naming the argument.
"""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import minih
from minih.cli import main
from minih.exercises.__main__ import main as exercises_main
from minih.interp import metrics as M
from minih.training.run import RunWriter

ROOT = Path(__file__).resolve().parents[1]
CFG = minih.ModelConfig.preset("tiny")
PARAMS = minih.init_params(CFG)
TOKENS = np.zeros((2, 4), dtype=np.int64)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A 4-snapshot run of a tiny 2-layer model, written by hand (no training)."""
    path = tmp_path_factory.mktemp("bad_inputs") / "run"
    cfg = minih.ModelConfig(n_layers=2, n_heads=2, d_model=8, d_head=4, n_ctx=16, d_vocab=12)
    eval_tokens = np.random.default_rng(0).integers(0, 12, size=(3, 16))
    writer = RunWriter(path, cfg, {}, eval_tokens)
    for s in range(4):
        p = minih.init_params(cfg, s)
        writer.add_snapshot(s, 100 * (s + 1), p, minih.per_token_losses(p, eval_tokens, cfg))
    short = RunWriter(path.parent / "run-short", cfg, {}, eval_tokens[:, :5])   # too short for ICL
    short.add_snapshot(0, 100, p, minih.per_token_losses(p, eval_tokens[:, :5], cfg))
    return path


@pytest.fixture(scope="module")
def a_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("files") / "a_file"
    path.write_text("not a folder\n")
    return path


def one_line_error(err: str) -> str:
    """The stderr of a failed command: exactly one non-empty line, no traceback."""
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


def run_cli(argv, capsys):
    code = main([str(a) for a in argv])
    return code, capsys.readouterr()


# --- the command line, in process ------------------------------------------------------

# (argv with {run}/{file} placeholders, exit code, regex the one stderr line must match)
CLI_ROWS = [
    # output paths that cannot be folders
    (["analyze", "{run}", "--quiet", "--out", "{file}"], 2, r"--out .*a_file: is a file, not a folder"),
    (["analyze", "{run}", "--quiet", "--out", "{file}/sub"], 2, r"a_file is a file, so no folder"),
    (["ablate", "{run}", "--quiet", "--out", "{file}"], 2, r"--out .*a_file: is a file, not a folder"),
    (["reproduce", "--size", "tiny", "--out", "{file}"], 2, r"--out .*a_file: is a file"),
    (["bench", "--steps", "1", "--configs", "small", "--no-torch", "--no-compile", "--no-start",
      "--no-memory", "--out", "{file}/x.json"], 2, r"--out .*x.json: .*a_file is a file, so nothing"),
    (["bench", "--steps", "1", "--out", "{run}"], 2, r"--out .*run: is a folder; give a file name"),
    # numbers and sizes
    (["analyze", "{run}", "--quiet", "--text-len", "-5"], 2, r"--text-len must be >= 2 .*got -5"),
    (["analyze", "{run}", "--quiet", "--text-len", "1"], 2, r"--text-len must be >= 2"),
    (["analyze", "{run}", "--quiet", "--n-text", "0"], 2, r"--n-text must be >= 1, got 0"),
    (["analyze", "{run}", "--quiet", "--seed", "-1"], 2, r"--seed must be >= 0, got -1"),
    (["ablate", "{run}", "--every", "0"], 2, r"--every must be >= 1, got 0"),
    (["reproduce", "--seed", "-3"], 2, r"--seed must be >= 0, got -3"),
    (["gradcheck", "--tol", "nan"], 2, r"--tol must be a finite number > 0, got nan"),
    (["gradcheck", "--tol", "-1"], 2, r"--tol must be a finite number > 0, got -1"),
    (["gradcheck", "--seq-len", "0"], 2, r"--seq-len must be in \[2, n_ctx=6\] .*got 0"),
    (["gradcheck", "--seq-len", "-5"], 2, r"--seq-len must be in \[2, n_ctx=6\] .*got -5"),
    (["gradcheck", "--seq-len", "7"], 2, r"--seq-len must be in \[2, n_ctx=6\]"),
    (["gradcheck", "--batch", "0"], 2, r"--batch must be >= 1, got 0"),
    (["gradcheck", "--max-entries", "0"], 2, r"--max-entries must be >= 1, got 0"),
    (["gradcheck", "--set", "d_model=1000000000"], 2,
     r"needs about [\d.]+ GB of memory and .* is free; reduce d_model"),
    (["gradcheck", "--set", "d_model=1.5"], 2, r"--set d_model: '1.5' is not a valid int"),
    (["gradcheck", "--set", "nope=1"], 2, r"--set: unknown field 'nope'"),
    (["bench", "--configs", "nope"], 2, r"--configs: unknown \['nope'\]"),
    (["bench", "--steps", "0"], 2, r"--steps and --rounds must be >= 1"),
    # input runs that are missing or damaged
    (["analyze", "{run}-missing", "--quiet"], 2, r"is not a directory"),
    (["ablate", "{file}"], 2, r"is not a directory"),
    (["ablate", "{run}-short", "--quiet"], 2,
     r"run-short: ablation measures the ICL score .* at least 12 tokens .* got 5"),
]


@pytest.mark.parametrize("argv,code,message", CLI_ROWS, ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_cli_bad_input(argv, code, message, run_dir, a_file, capsys):
    argv = [a.format(run=run_dir, file=a_file) for a in argv]
    got, out = run_cli(argv, capsys)
    assert got == code, out
    line = one_line_error(out.err)
    assert line.startswith(f"minih {argv[0]}: error: ")
    assert __import__("re").search(message, line), line


@pytest.mark.parametrize("damage,message", [
    ("run.json", r"run.json is corrupt"),
    ("snapshots.json", r"snapshots.json is corrupt"),
    ("snapshots/step_000000002.npz", r"step_000000002.npz is truncated or corrupt"),
    ("snapshots/step_000000002.losses.npy", r"losses.npy is truncated or corrupt"),
])
@pytest.mark.parametrize("command", ["analyze", "ablate"])
def test_damaged_run_files(command, damage, message, run_dir, tmp_path, capsys):
    import shutil
    broken = tmp_path / "broken"
    shutil.copytree(run_dir, broken)
    (broken / damage).write_bytes((run_dir / damage).read_bytes()[:40])
    code, out = run_cli([command, broken, "--quiet", "--out", tmp_path / "out"], capsys)
    assert code == 2
    assert __import__("re").search(message, one_line_error(out.err))


def test_analyze_says_when_the_evaluation_set_is_smaller(run_dir, tmp_path, capsys):
    code, out = run_cli(["analyze", run_dir, "--quiet", "--n-text", 10**9, "--out", tmp_path], capsys)
    assert code == 0
    assert "holds 3 examples of 16 tokens; used those (asked for --n-text 1000000000" in out.out


def test_gradcheck_says_how_long_before_starting(capsys):
    code, out = run_cli(["gradcheck", "--quiet"], capsys)
    assert code == 0
    first = out.out.splitlines()[0]
    n = sum(v.size for v in PARAMS.values())
    assert first.startswith(f"checking {n:,} entries of {len(PARAMS)} parameters")
    assert "ms per forward): about" in first


def test_gradcheck_progress_hook_counts_every_entry():
    calls = []
    report = minih.gradcheck(max_entries=3, progress=calls.append)
    assert len(calls) == sum(r.n_checked for r in report.rows) and set(calls) == {1}


# what the user's machine refuses: one line and exit 1 (130 for Ctrl-C); a bug keeps its traceback
@pytest.mark.parametrize("error,code,message", [
    (PermissionError(13, "Permission denied", "/data/out.csv"), 1,
     r"error: /data/out.csv: Permission denied$"),
    (OSError(28, "No space left on device"), 1, r"error: No space left on device$"),
    (MemoryError(), 1, r"error: out of memory; make the model, batch or evaluation set smaller"),
    (KeyboardInterrupt(), 130, r"interrupted$"),
    (ValueError("first line\n  hint: second line"), 2, r"error: first line hint: second line$"),
])
def test_cli_boundary(error, code, message, monkeypatch, capsys):
    import minih.cli.gradcheck as command

    def fail(args):
        raise error
    monkeypatch.setattr(command, "run", fail)
    got, out = run_cli(["gradcheck"], capsys)
    assert got == code
    assert __import__("re").search(message, one_line_error(out.err))


def test_cli_bug_keeps_its_traceback(monkeypatch):
    import minih.cli.gradcheck as command

    def bug(args):
        raise TypeError("a bug in minih")
    monkeypatch.setattr(command, "run", bug)
    with pytest.raises(TypeError, match="a bug in minih"):
        main(["gradcheck"])


# --- the command line, in a fresh process (what a user sees) ------------------------------

def run_process(args, cwd):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("args,code,message", [
    (["minih", "analyze", "{run}", "--out", "{file}"], 2,
     r"^minih analyze: error: --out .*a_file: is a file"),
    (["minih", "gradcheck", "--tol", "nan"], 2, r"^minih gradcheck: error: --tol must be"),
    (["minih.exercises", "start", "1", "--out", "{file}"], 2, r"^error: --out .*a_file: is a file"),
])
def test_process_bad_input(args, code, message, run_dir, a_file, tmp_path):
    p = run_process([a.format(run=run_dir, file=a_file) for a in args], tmp_path)
    assert p.returncode == code, p.stderr
    assert __import__("re").search(message, one_line_error(p.stderr))


# --- exercises -----------------------------------------------------------------------------

@pytest.mark.parametrize("source,message", [
    ("import sys\ndef layernorm_backward(*args):\n    sys.exit(0)\n",
     r"layernorm_backward called sys.exit\(0\); a function must return its result"),
    ("import sys\nsys.exit(0)\n", r"called sys.exit\(0\); remove that call"),
    ("layernorm_backward = 3\n", r"layernorm_backward must be a function, got int"),
    ("def layernorm_backward(:\n", r"could not import .*SyntaxError"),
])
def test_exercise_check_fails_clearly(source, message, tmp_path, capsys):
    path = tmp_path / "mine.py"
    path.write_text(source)
    assert exercises_main(["check", "1", "--file", str(path)]) == 1
    out = capsys.readouterr().out
    assert "NOT YET" in out and "PASSED" not in out
    assert __import__("re").search(message, out), out


def test_exercise_file_without_py_suffix_is_loaded(tmp_path, capsys):
    from minih.exercises.registry import get_exercise
    path = tmp_path / "my_solution.txt"
    path.write_text(get_exercise(1).solution().read_text())
    assert exercises_main(["check", "1", "--file", str(path)]) == 0
    assert "PASSED" in capsys.readouterr().out


def test_exercise_file_that_is_a_folder(tmp_path, capsys):
    assert exercises_main(["check", "1", "--file", str(tmp_path)]) == 1
    assert "is a folder; pass the file" in capsys.readouterr().out


def test_exercise_start_into_a_folder(tmp_path, capsys):
    assert exercises_main(["start", "2", "--out", str(tmp_path / "new")]) == 0
    assert (tmp_path / "new" / "ex02_attention_backward.py").is_file()
    assert f"--file {tmp_path / 'new'}" in capsys.readouterr().out


# --- the Python API ------------------------------------------------------------------------

def _nan(key):
    return {**PARAMS, key: np.full_like(PARAMS[key], np.nan)}


API_ROWS = [
    (lambda: minih.run_with_cache(PARAMS, TOKENS, None), r"cfg must be a ModelConfig, .* got NoneType"),
    (lambda: minih.loss_and_grads(PARAMS, TOKENS, {"n_layers": 2}), r"cfg must be a ModelConfig"),
    (lambda: minih.run_with_cache(_nan("embed.W_E"), TOKENS, CFG),
     r"params\['embed.W_E'\] holds 88 non-finite value\(s\)"),
    (lambda: minih.loss_and_grads({**PARAMS, "unembed.W_U": PARAMS["unembed.W_U"] * np.inf}, TOKENS, CFG),
     r"params\['unembed.W_U'\] holds .* non-finite"),
    (lambda: minih.run_with_cache(PARAMS, [[1, 2], [3]], CFG), r"tokens must be a rectangular"),
    (lambda: minih.run_with_cache(PARAMS, None, CFG), r"tokens must be integers"),
    (lambda: minih.init_params(CFG, "a"), r"seed must be an int, got 'a'"),
    (lambda: minih.init_params(CFG, 1.5), r"seed must be an int, got 1.5"),
    (lambda: minih.init_params(CFG, -1), r"seed must be >= 0, got -1"),
    (lambda: minih.init_params("tiny"), r"cfg must be a ModelConfig"),
    (lambda: minih.ModelConfig.preset(["tiny"]), r"unknown model preset \['tiny'\]"),
    (lambda: minih.ModelConfig.preset("tiny", d_modle=3), r"no field\(s\) \['d_modle'\]"),
    (lambda: minih.ModelConfig.from_dict([1]), r"from_dict expects a dict"),
    (lambda: minih.ModelConfig(n_ctx=np.float64(3.0)), r"n_ctx must be an int"),
    (lambda: M.eigenvalue_copying_scores(PARAMS, None), r"cfg must be a ModelConfig"),
    (lambda: M.prefix_matching_tokens("a"), r"d_vocab must be an int"),
    (lambda: M.copying_tokens(10, seed="x"), r"seed must be an int"),
    (lambda: M.copying_tokens(10, n_seqs=0), r"n_seqs must be >= 1"),
    (lambda: M.prefix_matching_tokens(20, seg_len=2.5), r"seg_len must be an int"),
    (lambda: M.phase_change_window({"a": 1}, [0, 1, 2]), r"tokens_seen must be an array of numbers"),
    (lambda: M.composition_score(np.eye(3), None), r"M2 must be an array of numbers"),
    (lambda: M.detection_pattern(["induction_head"], TOKENS), r"unknown detection pattern"),
    (lambda: M.loss_pca(None), r"losses_per_model must be an array"),
    (lambda: M.duplicate_token_mask(None), r"tokens must be integers of shape \[batch, T\]"),
    (lambda: M.induction_mask([[1, 2], [3]]), r"tokens must be a rectangular"),
    (lambda: M.previous_token_mask(None), r"T must be an int"),
    (lambda: M.empirical_copying_scores(PARAMS, None), r"cfg must be a ModelConfig"),
    (lambda: M.k_composition_qk_trace(PARAMS, CFG, "x"), r"previous_token_scores must be an array"),
    (lambda: minih.analyze(None), r"run_dir must be a path"),
    (lambda: minih.analyze("x", n_text=2.5), r"n_text must be an int"),
    (lambda: minih.analyze("x", text_len=-5), r"text_len must be >= 2, got -5"),
    (lambda: minih.analyze("x", backend="torch"), r"backend must be 'numpy' or 'numba'"),
    (lambda: minih.gradcheck(seq_len=0), r"seq_len must be >= 2, got 0"),
    (lambda: minih.gradcheck(batch=0), r"batch must be >= 1, got 0"),
    (lambda: minih.gradcheck(max_entries=0), r"max_entries must be >= 1, got 0"),
    (lambda: minih.gradcheck(h=float("nan")), r"h must be a finite number"),
    (lambda: minih.gradcheck("tiny"), r"cfg must be a ModelConfig"),
    (lambda: minih.gradcheck(params=[1]), r"params must be a dict"),
    (lambda: minih.gradcheck(seed="a"), r"seed must be an int"),
    (lambda: minih.gradcheck(max_entries=2).ok(float("nan")), r"tol must be a finite number"),
    (lambda: minih.gradcheck(max_entries=2).ok(0), r"tol must be > 0"),
    (lambda: M.ln_linear(PARAMS, CFG, "nope"), r"must be a layer index 0 \.\. 1, got 'nope'"),
    (lambda: M.ln_linear([], CFG, "final"), r"params must be a dict"),
    (lambda: M.embed_through_ln(PARAMS, CFG, 9), r"layer must be a layer index 0 \.\. 1, got 9"),
    (lambda: M.small_ov_circuits(PARAMS, CFG, "a"), r"layer must be a layer index"),
    (lambda: M.score_terms(PARAMS, CFG, 5, 0), r"cache must be the dict of run_with_cache"),
    (lambda: M.score_terms(PARAMS, CFG, {}, 4), r"layer must be a layer index 0 \.\. 1, got 4"),
    (lambda: M.loss_bump([1, 10, 100], [3, 2, 1], "abc"), r"window must be an array of numbers"),
    (lambda: M.loss_bump([1, 10, 100], [3, 2, 1], (1, 2, 3)), r"window must be a PhaseWindow or \(start, end\)"),
    (lambda: M.curve_departure([1, 10, 100], [3, 2, 1], [3, 2]), r"control_loss"),
    (lambda: minih.model.get_backend([1]), r"unknown backend \[1\]"),
]


@pytest.mark.parametrize("call,message", API_ROWS)
def test_api_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_numpy_integers_are_ints():
    cfg = minih.ModelConfig(n_layers=np.int64(2), d_model=np.int32(8), n_heads=2, d_head=4,
                            n_ctx=6, d_vocab=11, init_embed_std=np.float32(0.5))
    assert cfg == minih.ModelConfig(n_layers=2, d_model=8, n_heads=2, d_head=4, n_ctx=6,
                                    d_vocab=11, init_embed_std=0.5)
    assert type(cfg.d_model) is int and type(cfg.init_embed_std) is float
    a, b = minih.init_params(cfg, np.int64(3)), minih.init_params(cfg, 3)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    repeated = minih.data.RepeatedTokens(d_vocab=np.int64(10), min_len=np.int32(2))
    assert type(repeated.d_vocab) is int and repeated == minih.data.RepeatedTokens(d_vocab=10, min_len=2)
    from minih.interp.handbuilt import induction_model
    assert induction_model(d_vocab=np.int64(16), n_ctx=np.int64(48))[0].d_vocab == 16
    toks = M.copying_tokens(np.int64(12), n_seqs=np.int64(2), seed=np.uint8(1))
    assert toks.shape == (2, 25)


@pytest.mark.parametrize("argv", [
    ["analyze", "{run}", "--quiet", "--out", "{tmp}/out"],
    ["ablate", "{run}", "--quiet", "--out", "{tmp}/out"],
    ["reproduce", "--size", "tiny", "--out", "{tmp}/out"],
    ["bench", "--steps", "1", "--out", "{tmp}/out/bench.json"],
])
def test_read_only_output_folder(argv, run_dir, tmp_path, monkeypatch, capsys):
    # a read-only folder, as the system reports it (root may write anywhere, so os.access
    # is what says no here)
    import minih.cli
    monkeypatch.setattr(minih.cli.os, "access", lambda path, mode: False)
    code, out = run_cli([a.format(run=run_dir, tmp=tmp_path) for a in argv], capsys)
    assert code == 2
    assert "not writable" in one_line_error(out.err)


def test_closed_pipe_is_quiet(tmp_path):
    # `python -m minih gradcheck | head -1`: the reader leaves early; no error, no traceback
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.run(f"{sys.executable} -m minih gradcheck --quiet | head -c 8",
                       shell=True, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert p.stdout == "checking"
    assert p.stderr == ""
