"""Every figure function draws a non-empty PNG from made-up arrays of the right shapes,
and leaves its inputs unchanged."""
import numpy as np
import pytest

from minih.app import figures

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _every_figure(tmp_path, scores):
    """Each figure function once (twice with the seeds' spread), on made-up arrays."""
    rng = np.random.default_rng(0)
    S, L, H = scores.shape
    T = 10
    tokens = np.geomspace(1e3, 1e6, S)
    return [
        figures.curves(tmp_path / "a.png", {"2L": (tokens, rng.random(S)), "1L": (tokens, rng.random(S))},
                       "loss", "t", windows={"2L": (1e4, 1e5)}, marks={"2L": 3e4, "1L": np.nan}, hline=0.5),
        figures.loss_position_heatmaps(tmp_path / "b.png", tokens, rng.random((S, T)),
                                       rng.normal(size=(S, T)), "t"),
        figures.head_scores_over_training(tmp_path / "c.png", tokens, scores, "t", "score"),
        figures.pca_trajectories(tmp_path / "d.png", {"2L": rng.normal(size=(S, 2))}, {"2L": 4},
                                 explained=[0.6, 0.2]),
        figures.head_by_snapshot(tmp_path / "e.png", rng.normal(size=(L * H, S)),
                                 [f"{l}.{h}" for l in range(L) for h in range(H)], tokens, "t", "dICL"),
        figures.attention_pattern(tmp_path / "f.png", np.tril(rng.random((T, T))), list("abcdefghij"),
                                  "t", highlight=np.eye(T, dtype=bool)),
        figures.matrix_heatmap(tmp_path / "g.png", rng.random((H, H)), ["x"] * H, ["y"] * H, "t", "K"),
        figures.eigenvalues(tmp_path / "h.png", rng.normal(size=5) + 1j * rng.normal(size=5), "t"),
        figures.bars(tmp_path / "i.png", {"copy": {"a": 1.0, "b": 0.2}, "fuzzy": {"a": 0.5, "b": 0.1}},
                     "t", "score"),
        # with the seeds' spread: bands around curves, a band for the best head, error bars
        figures.curves(tmp_path / "j.png", {"2L": (tokens, scores[:, 0, 0])}, "loss", "t",
                       bands={"2L": (tokens, scores[:, 0, 0] - 0.1, scores[:, 0, 0] + 0.1)}),
        figures.head_scores_over_training(tmp_path / "k.png", tokens, scores, "t", "score",
                                          band=(tokens, scores.min(axis=(1, 2)), scores.max(axis=(1, 2)))),
        figures.bars(tmp_path / "l.png", {"copy": {"a": 1.0, "b": 0.2}}, "t", "score",
                     ranges={"copy": {"a": (0.8, 1.1), "b": (np.nan, np.nan)}}),
    ]


def test_every_figure_writes_a_png(tmp_path):
    scores = np.random.default_rng(1).random((12, 2, 3))
    before = scores.copy()
    made = _every_figure(tmp_path, scores)
    for path in made:
        data = path.read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 2000, path.name
    assert np.array_equal(scores, before)


def test_figures_drawn_in_background_are_the_same_files(tmp_path):
    """in_background: the worker draws some, the caller takes back the ones it has not
    started; either way the same bytes as drawn in place, at the same paths."""
    scores = np.random.default_rng(1).random((12, 2, 3))
    here = _every_figure(tmp_path / "here", scores)
    with figures.in_background():
        with figures.in_background():                    # nested: the outer block waits
            there = _every_figure(tmp_path / "there", scores)
    assert [p.name for p in there] == [p.name for p in here]
    for a, b in zip(here, there):
        assert b.parent == tmp_path / "there"
        assert a.read_bytes() == b.read_bytes(), a.name


def test_an_error_in_a_background_figure_is_raised_on_leaving(tmp_path):
    with pytest.raises(IndexError):                      # curves' x and y differ in length
        with figures.in_background():
            # one figure the worker will draw and one it may not have started: both fail
            for name in ("a.png", "b.png"):
                figures.curves(tmp_path / name, {"1L": ([1.0, 2.0], [1.0, 2.0, 3.0])}, "y", "t")
    assert figures._background is None                   # and drawing in place again
    assert figures.eigenvalues(tmp_path / "c.png", [1 + 1j], "t").exists()


def test_bands_are_the_range_over_seeds_at_each_snapshot():
    # oracle: the band is the elementwise min and max of the seeds' curves, the first seed's
    # included; a seed on another schedule (other token counts) gives no band at all
    from minih.app.reproduce.seeds import SeedRun, bands
    from types import SimpleNamespace as M
    x = np.array([0.0, 10.0, 100.0])
    ms = {"2L": M(tokens=x, icl=np.array([0.0, -1.0, -2.0])), "1L": M(tokens=x, icl=np.zeros(3))}
    others = [SeedRun(1, {}, {"2L": M(tokens=x, icl=np.array([0.5, -3.0, -1.0])),
                              "1L": M(tokens=x * 2, icl=np.ones(3))})]
    before = ms["2L"].icl.copy()
    out = bands(ms, others, ["2L", "1L"], lambda m: (m.tokens, m.icl))
    assert list(out) == ["2L"]
    bx, lo, hi = out["2L"]
    assert np.array_equal(bx, x) and lo.tolist() == [0.0, -3.0, -2.0] and hi.tolist() == [0.5, -1.0, -1.0]
    assert np.array_equal(ms["2L"].icl, before)
    assert bands(ms, [], ["2L"], lambda m: (m.tokens, m.icl)) == {}          # one seed: none


def test_range_table_states_each_seed_and_the_range():
    from minih.app.reproduce.seeds import range_table, ranges
    per_seed = {0: {"a": {"models": {"2L": {"formed_at": 2e5, "icl_last": -1.0}},
                          "per_head": {"1.0": {"prefix": 0.9}}, "share_removed": 0.8}},
                1: {"a": {"models": {"2L": {"formed_at": float("nan"), "icl_last": -2.5}},
                          "per_head": {"1.0": {"prefix": 0.1}}, "share_removed": 0.6}}}
    r = ranges("a", per_seed)
    assert set(r) == {"models/2L/formed_at", "models/2L/icl_last", "share_removed"}   # no per-head
    assert r["models/2L/icl_last"] == {"values": [-1.0, -2.5], "min": -2.5, "max": -1.0}
    table = range_table("a", per_seed)
    assert "| 2L | ICL score, last snapshot | -1.00 | -2.50 | -2.50 to -1.00 |" in table
    assert "| 2L | induction head forms at (tokens) | 0.20M | n/a | 0.20M (1 of 2 seeds) |" in table
    assert "|  | share of ICL removed by the induction heads | 80% | 60% | 60% to 80% |" in table


def test_range_table_keeps_numbers_only_later_seeds_have():
    # a head that formed in seed 1 alone: its share removed is a row, n/a in seed 0
    from minih.app.reproduce.seeds import range_table, ranges
    per_seed = {0: {"a": {"icl_clean": -0.1}},
                1: {"a": {"icl_clean": -0.9, "share_removed": 0.7}}}
    r = ranges("a", per_seed)
    assert list(r) == ["icl_clean", "share_removed"]
    assert np.isnan(r["share_removed"]["values"][0]) and r["share_removed"]["min"] == 0.7
    assert "| n/a | 70% | 70% (1 of 2 seeds) |" in range_table("a", per_seed)


def test_no_range_across_seeds_that_measured_different_models():
    # Argument 3 ablates 2L in one seed and 3L in another: the values are shown with their
    # model, and no range is taken across the two models
    from minih.app.reproduce.seeds import range_table, ranges, seeds_section
    per_seed = {0: {"argument_3": {"model": "2L", "share_removed": 0.9, "reproduced": True}},
                1: {"argument_3": {"model": "3L", "share_removed": 0.5, "reproduced": False}}}
    r = ranges("argument_3", per_seed)["share_removed"]
    assert r["values"] == [0.9, 0.5] and np.isnan(r["min"]) and np.isnan(r["max"])
    table = range_table("argument_3", per_seed)
    assert "| | the model measured | 2L | 3L | different models: no range |" in table
    assert "| 90% | 50% | not compared |" in table
    sec, numbers = seeds_section(per_seed)
    text = "\n".join(sec.paragraphs)
    assert "| 90% (2L) | 50% (3L) | not compared: different models |" in text
    assert "| 3 | yes | **NO** | 1 of 2 |" in text                  # the verdicts per seed
    assert numbers["verdicts"] == {"3": [True, False]}
    # the same model in both seeds: a range, and the model said once
    per_seed[1]["argument_3"]["model"] = "2L"
    table = range_table("argument_3", per_seed)
    assert "2L in every seed" in table and "| 90% | 50% | 50% to 90% |" in table


def test_criteria_table_says_which_criterion_failed_in_which_seed():
    from minih.app.reproduce.seeds import criteria_table
    per_seed = {0: {"a": {"criteria": [["forms a head", True], ["ICL falls", True]]}},
                1: {"a": {"criteria": [["forms a head", True], ["ICL falls", False]]}}}
    table = criteria_table("a", per_seed)
    assert "| forms a head | held | held |" in table
    assert "| ICL falls | held | **did not hold** |" in table
    # a seed whose criterion reads differently says how, from its last parenthesis
    per_seed[0]["a"]["criteria"][1][0] = "others remove less (5%)"
    per_seed[1]["a"]["criteria"][1][0] = "others remove less (the model has too few such heads)"
    assert ("| others remove less (5%) | held | **did not hold** (the model has too few such heads) |"
            in criteria_table("a", per_seed))
    # seeds that checked different numbers of criteria: counts per seed
    per_seed[1]["a"]["criteria"] = [["forms a head", False]]
    assert "| criteria held | 2 of 2 | 0 of 1 |" in criteria_table("a", per_seed)


def test_the_tokens_axis_is_written_10k_1M():
    # oracle: the numbers written out by hand
    label = figures._tokens_formatter()
    assert [label(x, None) for x in (1, 300, 1e3, 1e4, 2.5e5, 1e6, 3e7, 1e9)] == \
        ["1", "300", "1k", "10k", "250k", "1M", "30M", "1G"]


def test_figures_leave_pyplot_alone(tmp_path):
    # a training worker of `reproduce` imports the package's training module and never
    # draws: no matplotlib there; and drawing uses no pyplot, so a user's own pyplot
    # backend and open figures are never switched or closed
    import subprocess
    import sys
    code = ("import sys, minih.app.reproduce.training; "
            "print('matplotlib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    code = ("import sys, minih.app.figures as f; "
            "f.eigenvalues(sys.argv[1], [1, 2j], 't'); "
            "print('matplotlib.pyplot' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "e.png")], capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "False" and (tmp_path / "e.png").read_bytes().startswith(PNG_MAGIC)
