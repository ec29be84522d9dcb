"""The Argument-4 tasks: sequences follow their rule, and targets/roles say exactly
which keys an induction head for the task should attend to and which predictions
the context makes possible. Oracle: the rules re-checked position by position."""
import numpy as np
import pytest

from minih.data.generality_tasks import GeneralityTasks

SRC = GeneralityTasks(d_vocab=32, min_len=3, max_len=9, n_classes=4, seed=5)


@pytest.mark.parametrize("kind", ["literal", "translation", "fuzzy"])
def test_targets_follow_the_task_rule(kind):
    tokens, target, role = SRC.sample_with_targets(np.random.default_rng(1), 3, 60, kind=kind)
    assert tokens.shape == role.shape == (3, 60) and target.shape == (3, 60, 60)
    assert tokens.min() >= 0 and tokens.max() < 32
    f = SRC.translation
    inverse = {int(b): a for a, b in enumerate(f)}
    for b in range(3):
        t = tokens[b]
        for i in range(60):
            for j in range(60):
                if kind == "literal":
                    want = 1 <= j <= i and t[j - 1] == t[i]
                elif kind == "translation":
                    want = 1 <= j <= i and inverse.get(int(t[i])) == t[j - 1]
                else:
                    want = (1 <= j <= i and t[i] < 16 and t[j - 1] < 16
                            and t[i] % 4 == t[j - 1] % 4)
                assert target[b, i, j] == want, (kind, b, i, j)
    assert np.any(role == 1) and np.any(role == 2)


def test_translation_and_fuzzy_sequences():
    f = SRC.translation
    assert sorted(f) == list(range(16, 32))                  # a bijection onto the upper half
    tokens, _, role = SRC.sample_with_targets(np.random.default_rng(2), 4, 80, kind="translation")
    for b in range(4):
        up = np.flatnonzero(tokens[b] >= 16)                 # image tokens
        assert len(up) > 10
        # blocks: a run of lower-half tokens (segment) then as many upper-half (image)
        t, i = tokens[b], 0
        while i < 80:
            L = 0
            while i + L < 80 and t[i + L] < 16:
                L += 1
            seg, image = t[i:i + L], t[i + L:i + 2 * L]
            assert np.array_equal(image, f[seg][:len(image)])          # each image is f(segment)
            if len(image) == L:                                       # a whole block
                assert np.all(role[b, i + L:i + 2 * L - 1] == 1)      # next image token predictable
                assert role[b, i + 2 * L - 1] == 0                    # next block: not scored
            assert np.all(role[b, i:i + L] == 2)
            i += 2 * L
    tokens, _, role = SRC.sample_with_targets(np.random.default_rng(3), 4, 80, kind="fuzzy")
    items, labels = tokens[:, 0::2], tokens[:, 1::2]
    assert np.all(items < 16) and np.all(labels >= 16)
    for b in range(4):                                       # one label per class, per sequence
        classes = {}
        for x, y in zip(items[b], labels[b]):
            assert classes.setdefault(x % 4, y) == y
    # roles: items whose class was seen before are predictable (1), new classes not (2)
    for b in range(4):
        seen = set()
        for k, x in enumerate(items[b][:-1]):
            assert role[b, 2 * k] == (1 if x % 4 in seen else 2)
            seen.add(x % 4)
        assert np.all(role[b, 1::2] == 0)


def test_literal_blocks_repeat_with_varied_lengths():
    tokens, target, role = SRC.sample_with_targets(np.random.default_rng(4), 8, 120, kind="literal")
    lengths = set()
    for b in range(8):
        r = role[b]
        starts = np.flatnonzero((r == 2) & (np.r_[0, r[:-1]] != 2))         # segment starts
        for s, e in zip(starts, list(starts[1:]) + [120]):
            L = int(np.sum(r[s:e] == 2))
            if s + 2 * L <= 120:
                assert np.array_equal(tokens[b, s:s + L], tokens[b, s + L:s + 2 * L])
                lengths.add(L)
    assert len(lengths) > 3                                 # no fixed offset


def test_seed_and_bad_options():
    a = SRC.sample_with_targets(np.random.default_rng(0), 2, 50)
    b = SRC.sample_with_targets(np.random.default_rng(0), 2, 50)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    with pytest.raises(ValueError, match="d_vocab must be even"):
        GeneralityTasks(d_vocab=33)
    with pytest.raises(ValueError, match="mode must be one of"):
        GeneralityTasks(mode="poetry")
    with pytest.raises(ValueError, match="n_classes must be in"):
        GeneralityTasks(d_vocab=16, n_classes=5)


@pytest.mark.parametrize("mode", ["mixed", "literal", "translation", "fuzzy"])
def test_sample_is_sample_with_targets_without_the_targets(mode):
    # oracle: sample_with_targets' tokens from the same rng. sample skips the targets
    # (training reads only the tokens) but must draw exactly the same numbers, batch
    # after batch: the same rng, advanced the same way, gives the same next batch too
    src = GeneralityTasks(d_vocab=32, mode=mode, seed=3)
    rng_a, rng_b = np.random.default_rng(11), np.random.default_rng(11)
    for _ in range(3):
        assert np.array_equal(src.sample(rng_a, 5, 40), src.sample_with_targets(rng_b, 5, 40)[0])
    t = src.translation                                      # a copy: changing it changes nothing
    t[:] = 0
    assert not np.array_equal(src.translation, t)
