"""Every verdict rule of the reproduction can come out NO: each is run on a case built to
pass and on counter-cases where the paper's claim does not hold (oracle: the case's
construction)."""
import math

import pytest

from minih.app.reproduce import verdicts as V

NAN = math.nan


def row(formed_at=NAN, steepest=NAN, departure=NAN, turn=NAN, pairs=None, rate=1.0):
    r = {"formed_at": formed_at, "steepest_icl_at": steepest, "departure_tokens": departure,
         "pca_turn_tokens": turn, "steepest_icl_rate": rate}
    if pairs is not None:
        r["icl_pairs"] = {f"p{i}": {"steepest_at": p, "first": 0.0, "last": -1.0}
                          for i, p in enumerate(pairs)}
    return r


def family_1(**changes):
    """A family where everything happens at 1e5 tokens in 2L and 3L, and the 1L control
    forms nothing and turns elsewhere (1e4)."""
    models = {"1L": row(turn=1e4, rate=0.1),
              "2L": row(1e5, 1.1e5, 0.9e5, 1e5, pairs=[1e5, 1.2e5]),
              "3L": row(1e5, 0.9e5, 1e5, 1.1e5, pairs=[1e5, 1e5])}
    for name, fields in changes.items():
        models[name] = {**models[name], **fields}
    return models


def test_argument_1_passes_when_everything_co_occurs():
    v = V.argument_1(family_1(), "1L")
    assert v.ok, v.lines()
    assert all(held for _, held in v.criteria)


@pytest.mark.parametrize("changes, failing", [
    # the control forms an induction head too
    ({"1L": {"formed_at": 2e5}}, "control"),
    # ICL falls with no induction head anywhere
    ({"2L": {"formed_at": NAN}, "3L": {"formed_at": NAN}}, "other models forms"),
    # the steepest ICL fall is a decade away from the formation in one model
    ({"3L": {"steepest_icl_at": 1e6}}, "falls fastest"),
    # at another pair of context indices the fall is elsewhere
    ({"2L": {"icl_pairs": {"p0": {"steepest_at": 1e7, "first": 0.0, "last": -1.0}}}},
     "pair of context indices"),
    # the loss never leaves the control's curve near the formation
    ({"2L": {"departure_tokens": 1e7}, "3L": {"departure_tokens": NAN}}, "leaves the 1-layer"),
    # the control's PCA trajectory turns at the same place: the turn shows nothing
    ({"1L": {"pca_turn_tokens": 1e5}}, "PCA trajectory turns"),
])
def test_argument_1_counter_cases(changes, failing):
    v = V.argument_1(family_1(**changes), "1L")
    assert not v.ok
    assert any(failing in what for what, held in v.criteria if not held), v.lines()


def test_argument_1_ignores_index_pairs_where_the_icl_score_does_not_fall():
    # late pairs of a short context: induction is fully engaged at both indices, the score
    # stays near 0 and its "steepest fall" is noise; such a pair cannot locate anything
    flat = {"p9": {"steepest_at": 1e7, "first": -0.05, "last": -0.12}}
    models = family_1(**{"2L": {"icl_pairs": {**family_1()["2L"]["icl_pairs"], **flat}}})
    assert V.argument_1(models, "1L").ok
    falls = {"p9": {"steepest_at": 1e7, "first": 0.0, "last": -0.5}}
    models = family_1(**{"2L": {"icl_pairs": {**family_1()["2L"]["icl_pairs"], **falls}}})
    assert not V.argument_1(models, "1L").ok


def test_argument_1_without_a_control_is_no():
    models = family_1()
    del models["1L"]
    v = V.argument_1(models, "1L")
    assert not v.ok and "control" in v.criteria[0][0]


def test_argument_2():
    ok = {"1L": row(), "1L smeared": row(2e5), "2L": row(1e5), "2L smeared": row(0.5e5)}
    assert V.argument_2(ok).ok
    assert not V.argument_2({**ok, "1L smeared": row()}).ok            # smearing does nothing
    assert not V.argument_2({**ok, "1L": row(3e5)}).ok                 # vanilla 1L forms one too
    assert not V.argument_2({**ok, "2L smeared": row(5e5)}).ok         # smearing delays it


def test_argument_3():
    assert V.argument_3(-1.0, 0.8, 0.1, n_heads=2).ok
    assert not V.argument_3(-1.0, 0.2, 0.05, n_heads=2).ok             # removes little
    assert not V.argument_3(-1.0, 0.8, 0.9, n_heads=2).ok              # others remove as much
    assert not V.argument_3(-1.0, 0.8, None, n_heads=2).ok             # no contrast possible
    assert not V.argument_3(0.2, 0.8, 0.1, n_heads=2).ok               # no ICL to remove
    assert not V.argument_3(-1.0, NAN, 0.1, n_heads=0).ok              # no induction head


def test_argument_5():
    assert V.argument_5(0.9, 0.8, 0.3, 0.1, 0.7).ok
    assert not V.argument_5(0.05, 0.8, 0.3, 0.1, 0.7).ok               # heads at chance
    assert not V.argument_5(0.9, 0.1, 0.3, 0.1, 0.7).ok                # no previous-token head
    assert not V.argument_5(0.9, 0.8, 0.05, 0.1, 0.7).ok               # K-composition at baseline
    assert not V.argument_5(0.9, 0.8, 0.3, 0.1, -0.2).ok               # OV suppresses


def family_6(**changes):
    """Both families where the paper's continuity holds: the 1-layer models form nothing and
    fall slowly; 2 and 3 layers form induction heads whose ablation removes 80% of the ICL."""
    models = {"1L": row(rate=0.1), "2L": row(1e5, rate=1.0), "3L": row(1e5, rate=2.0),
              "1L MLP": row(rate=0.2), "2L MLP": row(2e5, rate=1.5), "3L MLP": row(2e5, rate=1.2)}
    for name, fields in changes.items():
        models[name] = {**models[name], **fields}
    for n, r in models.items():
        r.setdefault("share_removed", 0.8 if n[0] != "1" else NAN)
    depth = {n: r for n, r in models.items() if "MLP" not in n}
    return depth, {n: r for n, r in models.items() if "MLP" in n}


def test_argument_6():
    depth, mlp = family_6()
    assert V.argument_6(depth, mlp).ok
    v = V.argument_6(depth, None)                                         # no MLP family trained
    assert not v.ok and "MLPs" in v.criteria[-1][0]
    counter = {"a 1L model with MLPs forms a head": {"1L MLP": row(1e5, rate=0.2)},
               "a deeper model with MLPs forms none": {"3L MLP": row(rate=1.2)},
               "the 1L attention-only model forms one": {"1L": row(1e5, rate=0.1)},
               "a deeper model falls no faster than 1L": {"3L": row(1e5, rate=0.05)},
               "a 2L with MLPs falls no faster": {"2L MLP": row(2e5, rate=0.1)},
               "ablation removes little with MLPs": {"2L MLP": {"share_removed": 0.3}},
               "ablation removes little without": {"3L": {"share_removed": 0.49}},
               "a share that is not a number": {"2L": {"share_removed": NAN}}}
    for why, changes in counter.items():
        assert not V.argument_6(*family_6(**changes)).ok, why


def test_near():
    assert V.near(1e5, 1.9e5) and not V.near(1e5, 2.1e5)
    assert not V.near(NAN, 1e5) and not V.near(1e5, None) and not V.near(0, 1)


def test_argument_4():
    base = {"literal": {"uniform": 0.1, "previous_token": 0.05},
            "translation": {"uniform": 0.1, "previous_token": 0.05},
            "fuzzy": {"uniform": 0.15, "previous_token": 0.33}}
    gains = {"literal": 2.0, "translation": 1.0, "fuzzy": 0.5}
    good = {"literal": 0.9, "translation": 0.7, "fuzzy": 0.6}
    assert V.argument_4([(1, 0)], good, base, gains).ok
    # fuzzy at the level of a pure previous-token head: above the 0.3 threshold, but no evidence
    assert not V.argument_4([(1, 0)], {**good, "fuzzy": 0.35}, base, gains).ok
    assert not V.argument_4([(1, 0)], {**good, "translation": 0.12}, base, gains).ok
    assert not V.argument_4([], good, base, gains).ok                   # no head copies literally
    assert not V.argument_4([(1, 0)], good, base, {**gains, "translation": -0.1}).ok
