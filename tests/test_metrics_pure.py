"""Every public function of minih.metrics leaves its inputs alone (the brief: metrics are
pure functions).

Each function is called on arrays that are read-only, views included (their bases are
frozen too), so a write into an input raises at once; and afterwards every input is
compared with a copy taken before. The inputs are float64 and C-contiguous, so a
function that converts with np.asarray(x, np.float64) gets the caller's own array, not a
copy that would hide a write. A guard checks that every public function is called here,
so a new metric cannot slip past.
"""
import copy
import inspect

import numpy as np
import pytest

import minih
from minih.interp import metrics as M


def _model():
    cfg = minih.ModelConfig(n_layers=2, n_heads=2, d_model=12, d_head=4, n_ctx=12, d_vocab=9,
                            smeared_keys=True, dtype="float64")
    params = minih.init_params(cfg, 0)
    rng = np.random.default_rng(1)
    for k in params:                                             # non-trivial LN weights
        if k.endswith(".w"):
            params[k] = 1 + 0.3 * rng.standard_normal(params[k].shape)
        elif k.endswith(".b"):
            params[k] = 0.3 * rng.standard_normal(params[k].shape)
    return cfg, params


CFG, PARAMS = _model()
RNG = np.random.default_rng(2)
TOKENS = RNG.integers(0, CFG.d_vocab, (2, CFG.n_ctx))
_, CACHE = minih.run_with_cache(PARAMS, TOKENS, CFG)
PATTERN = CACHE["blocks.0.attn.hook_pattern"]                    # [B, H, T, T]
LOSSES = RNG.random((3, 40))                                     # [snapshots, T] losses
STEPS = np.geomspace(1e3, 1e6, 30)                               # tokens seen
CURVE = 3 - 1 / (1 + np.exp(-(np.log(STEPS) - np.log(3e4)) * 3))  # a loss falling in a window
TRAJ = np.cumsum(RNG.random((12, 2)), axis=0)                    # a PCA trajectory [steps, 2]
MAT = RNG.standard_normal((5, 5))

# name -> a function of nothing returning (args, kwargs) of one call
CALLS = {
    "candidate_tokens": lambda: ((9,), dict(token_counts=RNG.integers(1, 5, 9).astype(float))),
    "composition_baseline_samples": lambda: ((6, 2), dict(n_samples=5)),
    "composition_score": lambda: ((RNG.standard_normal((4, 6)), RNG.standard_normal((6, 5))), {}),
    "composition_scores": lambda: ((PARAMS, CFG), {}),
    "copying_score_from_logits": lambda: ((RNG.standard_normal((2, 3, 2, 9)), TOKENS[:, :3]), {}),
    "copying_tokens": lambda: ((9,), dict(n_seqs=2, seq_len=5,
                                           token_counts=RNG.integers(1, 5, 9).astype(float))),
    "detection_pattern": lambda: (("induction_head", TOKENS), {}),
    "detector_score": lambda: ((PATTERN, M.detection_pattern("previous_token_head", TOKENS)), {}),
    "detector_scores": lambda: ((PARAMS, CFG, TOKENS), {}),
    "direct_logits_per_source": lambda: ((PARAMS, CFG, CACHE), {}),
    "duplicate_token_mask": lambda: ((TOKENS,), {}),
    "duplicate_token_score": lambda: ((PATTERN, TOKENS), {}),
    "duplicate_token_scores": lambda: ((PARAMS, CFG, TOKENS), {}),
    "eigenvalue_copying_scores": lambda: ((PARAMS, CFG), {}),
    "eigenvalue_positivity": lambda: ((MAT,), {}),
    "embed_through_ln": lambda: ((PARAMS, CFG, 1), {}),
    "empirical_copying_scores": lambda: ((PARAMS, CFG, TOKENS[:, :5]), {}),
    "folded_weights": lambda: ((PARAMS, CFG), {}),
    "full_ov_circuits": lambda: ((PARAMS, CFG), {}),
    "full_qk_circuits": lambda: ((PARAMS, CFG), {}),
    "icl_indices": lambda: ((40,), {}),
    "icl_score": lambda: ((LOSSES,), dict(early=5, late=30)),
    "induction_mask": lambda: ((TOKENS,), {}),
    "k_composition_qk_terms": lambda: ((PARAMS, CFG), {}),
    "k_composition_qk_trace": lambda: ((PARAMS, CFG, RNG.random((2, 2))), {}),
    "knee_point": lambda: ((TRAJ,), {}),
    "ln_linear": lambda: ((PARAMS, CFG, "final"), {}),
    "loss_bump": lambda: ((STEPS, CURVE, (STEPS[1], STEPS[-1])), {}),
    "curve_departure": lambda: ((STEPS, CURVE, CURVE + 0.5), {}),
    "steepest_fall": lambda: ((STEPS, CURVE), {}),
    "loss_by_position": lambda: ((LOSSES,), {}),
    "loss_log_position_derivative": lambda: ((LOSSES,), {}),
    "loss_pca": lambda: (([RNG.random((4, 3, 10)), RNG.random((4, 3, 10))],), {}),
    "per_token_losses": lambda: ((PARAMS, TOKENS, CFG), {}),
    "phase_change_window": lambda: ((STEPS, CURVE), {}),
    "positional_shares": lambda: ((PARAMS, CFG, TOKENS), dict(cache=CACHE)),
    "prefix_matching_score": lambda: ((PATTERN, TOKENS), {}),
    "prefix_matching_scores": lambda: ((PARAMS, CFG, TOKENS), {}),
    "prefix_matching_tokens": lambda: ((9,), dict(n_ctx=12, n_seqs=2, seg_len=3, n_repeats=4)),
    "previous_token_mask": lambda: ((5,), {}),
    "previous_token_score": lambda: ((PATTERN,), {}),
    "previous_token_scores": lambda: ((PARAMS, CFG, TOKENS), {}),
    "score_terms": lambda: ((PARAMS, CFG, CACHE, 1), {}),
    "small_ov_circuits": lambda: ((PARAMS, CFG, 0), {}),
    "smooth_log": lambda: ((STEPS, CURVE), {}),
    "stacked_patterns": lambda: ((PARAMS, CFG, TOKENS), {}),
    "summed_attention": lambda: ((PATTERN, M.induction_mask(TOKENS)), {}),
    "term_shares": lambda: ((M.score_terms(PARAMS, CFG, CACHE, 1),), {}),
    "turning_point": lambda: ((TRAJ,), {}),
    # a cached function (functools.lru_cache): its arguments are numbers only
    "composition_baseline": lambda: ((6, 2), {}),
}


def _public_functions():
    return sorted(n for n in dir(M) if not n.startswith("_") and callable(getattr(M, n))
                  and not inspect.isclass(getattr(M, n)) and not inspect.ismodule(getattr(M, n)))


def test_every_public_metric_is_called_here():
    assert sorted(CALLS) == _public_functions()


def _arrays(x):
    """Every ndarray inside x (dicts, lists, tuples), with the arrays they are views of."""
    if isinstance(x, np.ndarray):
        out = [x]
        while isinstance(out[-1].base, np.ndarray):
            out.append(out[-1].base)
        return out
    if isinstance(x, dict):
        return [a for v in x.values() for a in _arrays(v)]
    if isinstance(x, (list, tuple)):
        return [a for v in x for a in _arrays(v)]
    return []


def _freeze(x):
    """Make every array of x read-only; return the ones that were writable (to thaw)."""
    was = [a for a in _arrays(x) if a.flags.writeable]
    for a in was:
        a.setflags(write=False)
    return was


def _equal(a, b):
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.shape == b.shape and np.array_equal(a, b, equal_nan=True)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    return a == b


@pytest.mark.parametrize("name", sorted(CALLS))
def test_metric_leaves_its_inputs_alone(name):
    args, kwargs = CALLS[name]()
    before = copy.deepcopy((args, kwargs))
    thaw = _freeze((args, kwargs))
    try:
        getattr(M, name)(*args, **kwargs)                        # a write raises here ..
    finally:
        for a in reversed(thaw):                                 # bases before their views
            a.setflags(write=True)
    assert _equal((args, kwargs), before), f"{name} changed an input"  # .. or shows here
