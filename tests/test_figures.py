"""Every figure function draws a non-empty PNG from made-up arrays of the right shapes,
and leaves its inputs unchanged."""
import numpy as np

from minih.app import figures

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_every_figure_writes_a_png(tmp_path):
    rng = np.random.default_rng(0)
    S, L, H, T = 12, 2, 3, 10
    tokens = np.geomspace(1e3, 1e6, S)
    scores = rng.random((S, L, H))
    before = scores.copy()
    made = [
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
    ]
    for path in made:
        data = path.read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 2000, path.name
    assert np.array_equal(scores, before)
