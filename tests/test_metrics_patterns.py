"""Pattern-level head scores (minih/interp/metrics/patterns.py) on hand-made attention patterns.

Oracles: (1) closed forms for perfect previous-token, perfect induction and uniform
patterns, worked out in the comments; (2) slow loops written straight from the
definitions in docs/05_metrics.md and TransformerLens (naive_* below), on random patterns.
"""
import numpy as np
import pytest

from minih.interp.metrics import patterns as P

R, REPS = 6, 4                                   # segment length, repeats


def bos_repeats(seed=0, B=2):
    """[BOS=0] + R*4 with R distinct tokens from 1..19: the prefix-matching layout."""
    rng = np.random.default_rng(seed)
    seg = np.stack([rng.permutation(np.arange(1, 20))[:R] for _ in range(B)])
    return np.concatenate([np.zeros((B, 1), int), np.tile(seg, (1, REPS))], axis=1)


def perfect_previous(B, T):
    A = np.zeros((B, 1, T, T))
    A[:, 0, 0, 0] = 1.0                          # query 0 can only see itself
    A[:, 0, np.arange(1, T), np.arange(T - 1)] = 1.0
    return A


def perfect_induction(tokens):
    """Equal weight on every key that follows an earlier copy; queries with none attend to BOS."""
    mask = P.induction_mask(tokens)              # [B,T,T]
    B, T = tokens.shape
    A = np.zeros((B, 1, T, T))
    for b in range(B):
        for i in range(T):
            n = mask[b, i].sum()
            if n:
                A[b, 0, i] = mask[b, i] / n
            else:
                A[b, 0, i, 0] = 1.0
    return A


def uniform(B, T):
    A = np.tril(np.ones((T, T))) / np.arange(1, T + 1)[:, None]
    return np.broadcast_to(A, (B, 1, T, T)).copy()


# --- naive oracles, loops straight from the definitions ---------------------------------

def naive_prefix_matching(A, t, queries=None):
    B, H, T, _ = A.shape
    out = np.zeros(H)
    for h in range(H):
        vals = []
        for b in range(B):
            for i in range(T):
                keys = [j for j in range(1, i + 1) if t[b, j - 1] == t[b, i]]
                chosen = queries[b, i] if queries is not None else bool(keys)
                if chosen:
                    vals.append(sum(A[b, h, i, j] for j in keys))
        out[h] = np.mean(vals)
    return out


def naive_duplicate(A, t):
    B, H, T, _ = A.shape
    out = np.zeros(H)
    for h in range(H):
        vals = [sum(A[b, h, i, j] for j in range(i) if t[b, j] == t[b, i])
                for b in range(B) for i in range(T) if any(t[b, j] == t[b, i] for j in range(i))]
        out[h] = np.mean(vals)
    return out


def naive_tl_detector(A, D, measure, exclude_bos, exclude_current):
    """transformer_lens.head_detector.compute_head_attention_similarity_score, one
    sequence and head at a time, on copies, without the final rounding."""
    B, H, T, _ = A.shape
    out = np.zeros(H)
    for h in range(H):
        per_seq = []
        for b in range(B):
            a, d = A[b, h].copy(), D[b].copy()
            if measure == "mul":
                if exclude_bos:
                    a[:, 0] = 0
                if exclude_current:
                    np.fill_diagonal(a, 0)
                per_seq.append((a * d).sum() / a.sum())
            else:
                diff = np.abs(a - d)
                if exclude_bos:
                    diff[:, 0] = 0
                if exclude_current:
                    np.fill_diagonal(diff, 0)
                per_seq.append(1 - diff.mean() * T)
        out[h] = np.mean(per_seq)
    return out


def random_patterns(B, H, T, seed):
    rng = np.random.default_rng(seed)
    scores = rng.standard_normal((B, H, T, T)) * 2
    scores = np.where(np.tri(T, dtype=bool), scores, -np.inf)
    A = np.exp(scores - scores.max(-1, keepdims=True))
    return A / A.sum(-1, keepdims=True)


# --- closed forms on hand-made patterns -------------------------------------------------

def test_perfect_previous_token_pattern():
    t = bos_repeats()
    B, T = t.shape
    A = perfect_previous(B, T)
    assert P.previous_token_score(A)[0] == 1.0                     # every query i>=1 on i-1
    # key i-1 follows an earlier copy of t[i] only if t[i-2] == t[i]: never with distinct R
    assert P.prefix_matching_score(A, t)[0] == 0.0
    # TL "abs": only row 0 differs from the target (|1 - 0| at (0,0)): 1 - 1/T
    D = P.detection_pattern("previous_token_head", t)
    assert P.detector_score(A, D, "abs")[0] == pytest.approx(1 - 1 / T, abs=1e-15)
    assert P.detector_score(A, D, "abs", exclude_current_token=True)[0] == 1.0
    # "mul": attention on target keys / all attention = (T-1)/T
    assert P.detector_score(A, D, "mul")[0] == pytest.approx((T - 1) / T, abs=1e-15)


def test_perfect_induction_pattern():
    t = bos_repeats()
    B, T = t.shape
    A = perfect_induction(t)
    queries = np.zeros((B, T), bool)
    queries[:, 1 + R:] = True                                     # repeats 2-4
    assert P.prefix_matching_score(A, t, queries)[0] == pytest.approx(1.0, abs=1e-15)
    # rows without a match attend to BOS; only row 1 has i-1 = 0 = BOS: prev = 1/(T-1)
    assert P.previous_token_score(A)[0] == pytest.approx(1 / (T - 1), abs=1e-15)
    # the matching key j = i - kR + 1 never holds t[i] itself, so no duplicate attention
    assert P.duplicate_token_score(A, t)[0] == 0.0
    # TL "mul" with the induction target: rows 0..R attend to BOS (not a target), the
    # other T-1-R rows put all their attention on targets: (T-1-R)/T
    D = P.detection_pattern("induction_head", t)
    assert P.detector_score(A, D, "mul")[0] == pytest.approx((T - 1 - R) / T, abs=1e-15)
    # excluding BOS removes those rows' attention entirely: score 1
    assert P.detector_score(A, D, "mul", exclude_bos=True)[0] == pytest.approx(1.0, abs=1e-15)


def test_uniform_pattern():
    t = bos_repeats()
    B, T = t.shape
    A = uniform(B, T)
    i = np.arange(1, T)
    # query i sees i+1 keys with weight 1/(i+1) each
    assert P.previous_token_score(A)[0] == pytest.approx(np.mean(1 / (i + 1)), abs=1e-15)
    # query at 1 + kR + m (repeat k+1, k >= 1) has k matching keys: k / (i + 1)
    q = np.arange(1 + R, T)
    k = (q - 1) // R
    assert P.prefix_matching_score(A, t)[0] == pytest.approx(np.mean(k / (q + 1)), abs=1e-15)


def test_scores_match_naive_loops_on_random_patterns():
    rng = np.random.default_rng(5)
    t = rng.integers(0, 4, size=(3, 12))                          # small vocab: many repeats
    A = random_patterns(3, 2, 12, seed=6)
    # float64 sums of <= 12 terms in a different order: 1e-12 is ~1e4 ulps of slack
    np.testing.assert_allclose(P.prefix_matching_score(A, t), naive_prefix_matching(A, t), atol=1e-12)
    np.testing.assert_allclose(P.duplicate_token_score(A, t), naive_duplicate(A, t), atol=1e-12)
    qm = rng.random((3, 12)) < 0.5
    np.testing.assert_allclose(P.prefix_matching_score(A, t, qm), naive_prefix_matching(A, t, qm), atol=1e-12)
    for name in P.DETECTION_PATTERNS:
        D = P.detection_pattern(name, t)
        for measure in P.ERROR_MEASURES:
            for eb in (False, True):
                for ec in (False, True):
                    np.testing.assert_allclose(
                        P.detector_score(A, D, measure, eb, ec),
                        naive_tl_detector(A, D, measure, eb, ec), atol=1e-12,
                        err_msg=f"{name} {measure} exclude_bos={eb} exclude_current={ec}")


def test_detection_patterns_match_transformer_lens_definitions():
    t = np.array([[3, 1, 3, 2, 1, 3]])
    prev = P.detection_pattern("previous_token_head", t)[0]
    assert np.array_equal(prev, np.eye(6, k=-1))
    dup = P.detection_pattern("duplicate_token_head", t)[0]
    # TL: tril(t[i] == t[j]) with the diagonal removed
    expected = np.tril(t[0][:, None] == t[0][None, :]).astype(float)
    np.fill_diagonal(expected, 0)
    assert np.array_equal(dup, expected)
    ind = P.detection_pattern("induction_head", t)[0]
    # TL: roll dup one column right, zero column 0, tril
    rolled = np.roll(expected, 1, axis=1)
    rolled[:, 0] = 0
    assert np.array_equal(ind, np.tril(rolled))


def test_inputs_unchanged():
    t = bos_repeats()
    A = random_patterns(*t.shape[:1], 3, t.shape[1], seed=1)
    D = P.detection_pattern("induction_head", t)
    A0, t0, D0 = A.copy(), t.copy(), D.copy()
    for arr in (A, t, D):
        arr.setflags(write=False)                                 # any in-place write raises
    P.previous_token_score(A)
    P.duplicate_token_score(A, t)
    P.prefix_matching_score(A, t)
    for m in P.ERROR_MEASURES:
        P.detector_score(A, D, m, exclude_bos=True, exclude_current_token=True)
    assert np.array_equal(A, A0) and np.array_equal(t, t0) and np.array_equal(D, D0)


def test_bad_input_names_the_problem():
    A = uniform(1, 5)
    with pytest.raises(ValueError, match=r"\[batch, heads, T, T\]"):
        P.previous_token_score(A[0])
    with pytest.raises(ValueError, match="tokens must have shape"):
        P.prefix_matching_score(A, np.zeros((1, 4), int))
    with pytest.raises(ValueError, match="error_measure"):
        P.detector_score(A, np.eye(5), "max")
    with pytest.raises(ValueError, match="unknown detection pattern"):
        P.detection_pattern("name_mover", np.zeros((1, 5), int))
