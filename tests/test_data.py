"""Data sources: shapes, token ranges, seeds, and that each source has the structure it claims.

Oracles: the construction rules written in each module's docstring, checked position
by position; the Markov chains against their own transition matrices (empirical
transition frequencies) and the Bayes formula against a direct count.
"""
import numpy as np
import pytest

from minih import data
from minih.data import make_source, source_from_dict, source_to_dict

SYNTHETIC = [("repeated", {}), ("repeated", {"mode": "sparse", "copies": 2, "min_len": 4, "max_len": 12}),
             ("markov", {})]


@pytest.mark.parametrize("name,opts", SYNTHETIC)
def test_shapes_ranges_and_seeds(name, opts):
    src = make_source(name, **opts)
    a = src.sample(np.random.default_rng(1), 5, 48)
    assert a.shape == (5, 48) and a.dtype == np.int64
    assert a.min() >= 0 and a.max() < src.d_vocab
    np.testing.assert_array_equal(a, src.sample(np.random.default_rng(1), 5, 48))      # seed reproduces
    assert not np.array_equal(a, src.sample(np.random.default_rng(2), 5, 48))          # and matters
    np.testing.assert_array_equal(src.eval_set(3, 48, seed=9), src.eval_set(3, 48, seed=9))
    assert source_from_dict(source_to_dict(src)) == src
    assert src.describe()["name"] == name


def test_dense_repeats_back_to_back_with_varied_periods():
    src = make_source("repeated", d_vocab=64, min_len=8, max_len=64)
    tokens, mask = src.sample_with_mask(np.random.default_rng(0), 200, 128)
    periods = []
    for t, m in zip(tokens, mask):
        L = int(np.argmax(m)) - 1                        # mask starts at L + 1
        assert 8 <= L <= 64
        np.testing.assert_array_equal(t[L:], t[:-L])     # t[i] = t[i - L]: the segment repeats
        periods.append(L)
    assert len(set(periods)) > 30                        # offsets vary (57 possible lengths)


def test_sparse_copies_really_repeat_at_varied_offsets():
    src = make_source("repeated", mode="sparse", d_vocab=50, min_len=5, max_len=10, copies=2)
    tokens, mask = src.sample_with_mask(np.random.default_rng(3), 100, 64)
    offsets = set()
    for t, m in zip(tokens, mask):
        # each run of True in the mask is a copy whose earlier occurrence must exist
        idx = np.flatnonzero(m)
        runs = np.split(idx, np.flatnonzero(np.diff(idx) > 1) + 1)
        assert len(runs) == 2                            # one copy per chunk
        for run in runs:
            d = run[0] - 1                               # first copied token
            seg = t[d:run[-1] + 1]
            hits = [s for s in range(d - len(seg) + 1) if np.array_equal(t[s:s + len(seg)], seg)]
            assert hits, "copied segment has no earlier occurrence"
            offsets.add(d - hits[-1])
    assert len(offsets) > 10


def test_markov_follows_its_matrices():
    src = make_source("markov", d_vocab=4, alpha=1.0)
    tokens, P = src.sample_with_matrices(np.random.default_rng(0), 3, 20000)
    for t, p in zip(tokens, P):
        counts = np.zeros((4, 4))
        np.add.at(counts, (t[:-1], t[1:]), 1)
        freq = counts / counts.sum(axis=1, keepdims=True)
        # ~5000 visits per row: binomial std <= sqrt(0.25/5000) = 0.007; 0.03 is > 4 std
        np.testing.assert_allclose(freq, p, atol=0.03)


def test_bayes_bigram_losses_match_direct_count():
    t = np.array([[0, 1, 0, 1, 0, 0]])
    k, a = 2, 0.5
    got = data.bayes_bigram_losses(t, k, a)
    # by hand: counts before each prediction (row of the current token)
    expect = [-np.log((0 + a) / (0 + 2 * a)),   # 0->1, no transitions seen from 0
              -np.log((0 + a) / (0 + 2 * a)),   # 1->0, none from 1
              -np.log((1 + a) / (1 + 2 * a)),   # 0->1, seen 0->1 once
              -np.log((1 + a) / (1 + 2 * a)),   # 1->0, seen 1->0 once
              -np.log((0 + a) / (2 + 2 * a))]   # 0->0, seen 0->1 twice
    np.testing.assert_allclose(got[0], expect, rtol=1e-12)   # same formula, float64 rounding only
    # the floor falls with context: late positions are predicted better than early ones
    src = make_source("markov", d_vocab=8)
    L = src.bayes_losses(src.eval_set(256, 128, seed=0)).mean(axis=0)
    assert L[-16:].mean() < L[:4].mean() - 0.2


def test_text_sources(tmp_path):
    src = make_source("stdlib")
    a = src.sample(np.random.default_rng(0), 4, 64)
    assert a.shape == (4, 64) and a.max() < 256
    desc = src.describe()
    assert desc["validation_files"] > 0 and desc["train_bytes"] > 10 * desc["validation_bytes"] / 2
    ev = src.eval_set(4, 64, seed=0)
    np.testing.assert_array_equal(ev, src.eval_set(4, 64, seed=0))
    # repeat_fraction=1: every training sequence is a text window repeated back to back
    rep = make_source("stdlib", repeat_fraction=1.0, repeat_min_len=5, repeat_max_len=9)
    r = rep.sample(np.random.default_rng(0), 20, 40)
    assert all(any(np.array_equal(t[L:], t[:-L]) for L in range(5, 10)) for t in r)
    mixed = make_source("stdlib", repeat_fraction=0.5).sample(np.random.default_rng(0), 200, 64)
    periodic = [any(np.array_equal(t[L:], t[:-L]) for L in range(8, 33)) for t in mixed]
    assert 60 < sum(periodic) < 140                      # ~100 of 200 (binomial std 7)
    # a folder: every text file, binary files skipped, split by file
    for i in range(30):
        (tmp_path / f"f{i}.txt").write_text(f"file {i} " * 20)
    (tmp_path / "blob.bin").write_bytes(b"\0\1\2" * 100)
    folder = make_source("text", path=str(tmp_path), val_fraction=0.2)
    d = folder.describe()
    assert d["files"] == 30 and 0 < d["validation_files"] < 30
    b = folder.sample(np.random.default_rng(0), 2, 16)
    assert bytes(b[0].astype(np.uint8)).decode().strip() != ""
    # a single file: split by position
    one = make_source("text", path=str(tmp_path / "f3.txt"), val_fraction=0.25)
    assert one.describe()["validation_bytes"] == round(0.25 * len("file 3 " * 20))


def test_bad_options_are_clear():
    with pytest.raises(ValueError, match="unknown data source"):
        make_source("nope")
    with pytest.raises(ValueError, match="no option"):
        make_source("repeated", vocab=3)
    with pytest.raises(ValueError, match="mode must be one of"):
        make_source("repeated", mode="fixed")
    with pytest.raises(ValueError, match="needs a path"):
        make_source("text")
    with pytest.raises(ValueError, match="seq_len must be"):
        make_source("repeated", min_len=20).sample(np.random.default_rng(0), 2, 16)
    with pytest.raises(ValueError, match="Generator"):
        make_source("markov").sample(0, 2, 16)
