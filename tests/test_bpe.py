"""The byte-level BPE tokenizer and the `bpe` data source.

Oracles: the input itself (round trip), a hand-worked merge sequence, the plain-Python
reference encoder (for the Numba encoder), a second training run (determinism), and
file timestamps in a temporary cache directory (reuse and invalidation). Everything
runs on small texts so the file takes seconds.
"""
import numpy as np
import pytest

from minih.data import bpe as B
from minih.data import make_source, source_from_dict, source_to_dict

TEXT = (b"def read_bytes(self, path):\n    with open(path, 'rb') as f:\n        return f.read()\n\n"
        b"The reader reads the bytes; the writer writes them. It's the same\n") * 20


def random_bytes(seed, n=3000):
    """Random bytes, with runs of ASCII text mixed in so that merges apply to them."""
    rng = np.random.default_rng(seed)
    parts = []
    while sum(map(len, parts)) < n:
        if rng.random() < 0.5:
            parts.append(rng.integers(0, 256, size=rng.integers(1, 20), dtype=np.uint8).tobytes())
        else:
            start = rng.integers(0, len(TEXT) - 40)
            parts.append(TEXT[start:start + rng.integers(1, 40)])
    return b"".join(parts)


@pytest.fixture(scope="module")
def tok():
    return B.train_bpe(TEXT, 400)


def test_pretokenize_covers_every_byte():
    for seed in range(5):
        data = random_bytes(seed)
        assert b"".join(B.pretokenize(data)) == data
    # words keep one leading space; the last space of a run goes with the next word
    assert B.pretokenize(b"def f(x):  return x_y + 2\n\n    y") == [
        b"def", b" f", b"(", b"x", b"):", b" ", b" return", b" x_y", b" +", b" 2", b"\n\n   ", b" y"]


def test_merges_by_hand():
    # "aaab" x 3 and "ab" x 2: pairs (a,a) 6, (a,b) 5 -> merge (a,a) first (token 256);
    # then "aaab" is [256, a, b]: (256,a) 3, (a,b) 3+2 = 5 -> (a,b) = 257; then (256,257) 3
    merges = B.train_merges({b"aaab": 3, b"ab": 2}, 259)
    a, b = ord("a"), ord("b")
    np.testing.assert_array_equal(merges, [[a, a], [a, b], [256, 257]])
    tok = B.BPE(merges)
    assert tok.encode(b"aaab").tolist() == [258]
    assert tok.encode(b"aab ab").tolist() == [256, b, ord(" "), 257]


def test_ties_break_on_the_smallest_pair():
    # every pair occurs once: the smallest (a, b) wins
    merges = B.train_merges({b"zyx": 1, b"cba": 1}, 257)
    np.testing.assert_array_equal(merges, [[ord("b"), ord("a")]])


def test_round_trip_on_any_bytes(tok):
    for seed in range(10):
        data = random_bytes(seed)
        ids = tok.encode(data)
        assert ids.dtype == np.int32 and ids.min() >= 0 and ids.max() < tok.n_tokens
        assert tok.decode(ids) == data
    invalid = b"\xff\xfe\x80abc\xc3(\xed\xa0\x80 \x00\x00 self\xe2\x82"      # not UTF-8
    assert tok.decode(tok.encode(invalid)) == invalid
    assert tok.decode(tok.encode(b"")) == b""
    assert len(tok.encode(TEXT)) < len(TEXT) / 3                    # the merges compress


def test_numba_encoder_equals_reference(tok):
    for seed in range(5):
        data = random_bytes(seed) + TEXT[: 500 * seed]
        np.testing.assert_array_equal(tok.encode(data, numba=True), tok.encode(data, numba=False))


def test_training_is_deterministic():
    data = TEXT + random_bytes(0)
    np.testing.assert_array_equal(B.train_bpe(data, 350).merges, B.train_bpe(data, 350).merges)
    # and reproduces the training segmentation: a chunk seen in training is merged as in training
    tok = B.train_bpe(TEXT, 300)
    assert B.train_bpe(TEXT, 301).merges[:44].tolist() == tok.merges.tolist()[:44]


def test_cache_is_reused_and_invalidated(tmp_path):
    tok, key = B.cached_bpe(TEXT, 300, tmp_path)
    files = sorted(tmp_path.glob("bpe-*.npy"))
    assert len(files) == 1
    stamp = files[0].stat().st_mtime_ns
    tok2, key2 = B.cached_bpe(TEXT, 300, tmp_path)                  # same corpus and settings
    assert key2 == key and files[0].stat().st_mtime_ns == stamp
    np.testing.assert_array_equal(tok2.merges, tok.merges)
    _, key3 = B.cached_bpe(TEXT + b"x", 300, tmp_path)               # corpus changed
    _, key4 = B.cached_bpe(TEXT, 301, tmp_path)                      # setting changed
    assert len({key, key3, key4}) == 3 and len(list(tmp_path.glob("bpe-*.npy"))) == 3
    ids = B.cached_encode(tok, key, TEXT, tmp_path)
    again = B.cached_encode(tok, key, TEXT, tmp_path)
    np.testing.assert_array_equal(ids, again)
    assert len(list(tmp_path.glob("tokens-*.npy"))) == 1
    np.testing.assert_array_equal(ids, tok.encode(TEXT))


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("MINIH_CACHE_DIR", str(tmp_path / "c"))
    assert B.default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("MINIH_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert B.default_cache_dir() == tmp_path / "minih"


def test_bpe_source_interface(tmp_path):
    folder = tmp_path / "texts"
    folder.mkdir()
    for i in range(12):
        (folder / f"f{i}.txt").write_bytes(TEXT[i * 50:] + random_bytes(i, 2000).replace(b"\0", b" "))
    src = make_source("bpe", path=str(folder), vocab_size=300, cache_dir=str(tmp_path / "cache"))
    assert src.d_vocab == 300
    a = src.sample(np.random.default_rng(1), 4, 32)
    assert a.shape == (4, 32) and a.dtype == np.int64 and 0 <= a.min() and a.max() < 300
    np.testing.assert_array_equal(a, src.sample(np.random.default_rng(1), 4, 32))
    ev = src.eval_set(3, 32, seed=5)
    np.testing.assert_array_equal(ev, src.eval_set(3, 32, seed=5))
    d = src.describe()
    assert d["name"] == "bpe" and d["tokens"] == "bpe" and d["validation_files"] >= 1
    assert source_from_dict(source_to_dict(src)) == src
    assert src.token_counts().shape == (300,)
    text = src.tokenizer().decode(ev[0])
    assert len(text) > 32                                            # tokens hold several bytes
    with pytest.raises(ValueError, match="corpus"):
        make_source("bpe", corpus="novels")
    with pytest.raises(ValueError, match="vocab_size"):
        make_source("bpe", vocab_size=100)
