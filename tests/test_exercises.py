"""Every exercise passes with its worked solution and fails with its blank skeleton
(and with a typical wrong answer), through the same entry point students use."""
import pytest

from minih.exercises import EXERCISES, ExerciseFailed, check_file
from minih.exercises.__main__ import main


@pytest.mark.parametrize("ex", EXERCISES, ids=lambda ex: ex.filename)
def test_solution_passes_and_skeleton_fails(ex):
    assert check_file(ex.number, ex.solution())
    with pytest.raises(ExerciseFailed, match="not filled in yet"):
        check_file(ex.number, ex.skeleton())


def test_a_typical_mistake_gets_a_hint(tmp_path):
    # LayerNorm backward that forgets that mean and scale depend on x
    wrong = tmp_path / "ex01.py"
    wrong.write_text(
        "def layernorm_backward(d_y, x, scale, w):\n"
        "    D = x.shape[-1]\n"
        "    xhat = (x - x.mean(-1, keepdims=True)) / scale\n"
        "    return d_y * w / scale, (d_y * xhat).reshape(-1, D).sum(0), d_y.reshape(-1, D).sum(0)\n")
    with pytest.raises(ExerciseFailed, match="did you forget that the mean depends on x"):
        check_file(1, wrong)


def test_ablation_that_forgets_later_layers_fails(tmp_path):
    # subtracting the head's direct effect on the logits is not an ablation: later
    # layers must see the changed residual stream
    wrong = tmp_path / "ex06.py"
    wrong.write_text(
        "import minih\n"
        "def zero_ablated_logits(params, tokens, cfg, layer, head):\n"
        "    logits, cache = minih.run_with_cache(params, tokens, cfg)\n"
        "    direct = cache[f'blocks.{layer}.attn.hook_result'][:, :, head]\n"
        "    if cfg.layernorm:\n"
        "        direct = direct / cache['ln_final.hook_scale'] * params['ln_final.w']\n"
        "    return logits - direct @ params['unembed.W_U']\n")
    with pytest.raises(ExerciseFailed, match="run every later layer"):
        check_file(6, wrong)


def test_prefix_matching_that_averages_fails(tmp_path):
    wrong = tmp_path / "ex04.py"
    wrong.write_text(
        "import numpy as np\n"
        "def prefix_matching_score(pattern, tokens):\n"
        "    B, H, T, _ = pattern.shape\n"
        "    m = np.zeros((B, T, T), bool)\n"
        "    m[:, :, 1:] = tokens[:, :, None] == tokens[:, None, :-1]\n"
        "    m &= np.tri(T, dtype=bool)\n"
        "    q = m.any(-1)\n"
        "    avg = (pattern * m[:, None]).sum(-1) / np.maximum(m.sum(-1), 1)[:, None]\n"
        "    return (avg * q[:, None]).sum((0, 2)) / q.sum()\n")
    with pytest.raises(ExerciseFailed):
        check_file(4, wrong)


def test_gelu_backward_of_the_erf_gelu_gets_a_hint(tmp_path):
    # the exact GELU's slope, Phi(u) + u phi(u), is right for another function: minih's
    # GELU is the tanh form, and the two slopes differ by up to ~9e-4
    wrong = tmp_path / "ex07.py"
    wrong.write_text(
        "import math\n"
        "import numpy as np\n"
        "from scipy.special import erf\n"
        "def gelu_backward(d_post, u):\n"
        "    phi = np.exp(-u * u / 2) / math.sqrt(2 * math.pi)\n"
        "    return d_post * (0.5 * (1 + erf(u / math.sqrt(2))) + u * phi)\n")
    with pytest.raises(ExerciseFailed, match="tanh form"):
        check_file(7, wrong)


def test_gelu_backward_without_the_inner_derivative_fails(tmp_path):
    # forgets da/du = c (1 + 3 k u^2): right at 0 and far out, wrong in between
    wrong = tmp_path / "ex07.py"
    wrong.write_text(
        "import math\n"
        "import numpy as np\n"
        "def gelu_backward(d_post, u):\n"
        "    t = np.tanh(math.sqrt(2 / math.pi) * (u + 0.044715 * u ** 3))\n"
        "    return d_post * (0.5 * (1 + t) + 0.5 * u * (1 - t * t))\n")
    with pytest.raises(ExerciseFailed, match="did you forget da/du"):
        check_file(7, wrong)


def test_mlp_backward_that_skips_the_gelu_gets_a_hint(tmp_path):
    wrong = tmp_path / "ex08.py"
    wrong.write_text(
        "def mlp_backward(d_mlp_out, pre, post, h2, W_in, W_out):\n"
        "    D, M = W_in.shape\n"
        "    d_pre = d_mlp_out @ W_out.T\n"
        "    return (d_pre @ W_in.T, h2.reshape(-1, D).T @ d_pre.reshape(-1, M),\n"
        "            d_pre.reshape(-1, M).sum(0), post.reshape(-1, M).T @ d_mlp_out.reshape(-1, D),\n"
        "            d_mlp_out.reshape(-1, D).sum(0))\n")
    with pytest.raises(ExerciseFailed, match="as if there were no GELU"):
        check_file(8, wrong)


def test_mlp_backward_that_adds_the_residual_gets_a_hint(tmp_path):
    # d_h2 is the MLP's part only; the model adds the residual stream's d_x itself
    wrong = tmp_path / "ex08.py"
    wrong.write_text(
        "from minih.ops import gelu_backward\n"
        "def mlp_backward(d_mlp_out, pre, post, h2, W_in, W_out):\n"
        "    D, M = W_in.shape\n"
        "    d_pre = gelu_backward(d_mlp_out @ W_out.T, pre)\n"
        "    return (d_pre @ W_in.T + d_mlp_out, h2.reshape(-1, D).T @ d_pre.reshape(-1, M),\n"
        "            d_pre.reshape(-1, M).sum(0), post.reshape(-1, M).T @ d_mlp_out.reshape(-1, D),\n"
        "            d_mlp_out.reshape(-1, D).sum(0))\n")
    with pytest.raises(ExerciseFailed, match="d_mlp_out added"):
        check_file(8, wrong)


def test_cli_start_check_and_errors(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["start", "3"]) == 0
    assert (tmp_path / "ex03_cross_entropy_backward.py").exists()
    assert main(["start", "3"]) == 1                      # never overwrites the student's work
    assert main(["check", "3"]) == 1
    assert "NOT YET" in capsys.readouterr().out
    assert main(["check", "3", "--solution"]) == 0
    assert "PASSED" in capsys.readouterr().out
    assert main(["check", "99"]) == 2
    broken = tmp_path / "broken.py"
    broken.write_text("def cross_entropy_backward(:\n")
    assert main(["check", "3", "--file", str(broken)]) == 1
    assert "could not import" in capsys.readouterr().out
