"""The Argument-4 tasks: each image is the promised function of its segment, and the
targets point at the token after the matching segment token."""
import numpy as np
import pytest

from minih.data.generality import GeneralityTasks


def blocks(tokens, target):
    """Recover (segment start, image start, L) for every block with a target."""
    out = []
    t = np.flatnonzero(target >= 0)
    i = 0
    while i < len(t):
        first = t[i]                      # position of g(s_0); target = seg start + 1
        seg_start = target[first] - 1
        L = first - seg_start
        out.append((seg_start, first, L))
        i += L - 1
    return out


@pytest.mark.parametrize("kind", ["literal", "translation", "fuzzy"])
def test_images_follow_the_task(kind):
    src = GeneralityTasks(d_vocab=32, min_len=3, max_len=9, n_classes=4, seed=5)
    tokens, target = src.sample_with_targets(np.random.default_rng(1), 4, 200, kind=kind)
    assert tokens.shape == target.shape == (4, 200) and tokens.min() >= 0 and tokens.max() < 32
    f = src.translation
    assert sorted(f) == list(range(16, 32))               # a bijection onto the upper half
    n_blocks = 0
    for b in range(4):
        for seg_start, img_start, L in blocks(tokens[b], target[b]):
            n = min(L, 200 - img_start)
            seg, img = tokens[b, seg_start:seg_start + n], tokens[b, img_start:img_start + n]
            if kind == "literal":
                assert np.array_equal(img, seg)
            elif kind == "translation":
                assert seg.max() < 16 and np.array_equal(img, f[seg])
            else:
                assert np.array_equal(img % 4, seg % 4)
            # target of g(s_k) is the position of s_{k+1}
            for k in range(n - 1 if n == L else n):
                if k < L - 1:
                    assert target[b, img_start + k] == seg_start + k + 1
            n_blocks += 1
    assert n_blocks > 20
    # segment lengths vary (no fixed offset for a positional shortcut)
    lengths = {L for b in range(4) for _, _, L in blocks(tokens[b], target[b])}
    assert len(lengths) > 3


def test_fuzzy_images_are_not_copies_and_seed_fixes_everything():
    src = GeneralityTasks(d_vocab=64, n_classes=4)
    a = src.sample_with_targets(np.random.default_rng(0), 2, 100, kind="fuzzy")
    b = src.sample_with_targets(np.random.default_rng(0), 2, 100, kind="fuzzy")
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    tokens, target = a
    idx = np.flatnonzero(target[0] >= 0)
    copied = tokens[0, idx] == tokens[0, target[0, idx] - 1]
    assert copied.mean() < 0.5                              # 16 members per class: mostly new tokens


def test_bad_options():
    with pytest.raises(ValueError, match="d_vocab must be even"):
        GeneralityTasks(d_vocab=33)
    with pytest.raises(ValueError, match="mode must be one of"):
        GeneralityTasks(mode="poetry")
    with pytest.raises(ValueError, match="n_classes must be in"):
        GeneralityTasks(d_vocab=8, n_classes=5)
