"""Every public function of minih.metrics leaves its inputs alone (the brief: metrics are
pure functions).

Each function is called on arrays that are read-only, views included (their bases are
frozen too), so a write into an input raises at once; and afterwards every input is
compared with a copy taken before. The inputs are float64 and C-contiguous, so a
function that converts with np.asarray(x, np.float64) gets the caller's own array, not a
copy that would hide a write. A guard checks that every public function is called here,
so a new metric cannot slip past. Every call runs on an attention-only model and on one
with MLPs (their parameters are extra inputs that must stay untouched too).
"""
import copy
import inspect

import numpy as np
import pytest

import minih
from minih.interp import metrics as M


def _model(d_mlp=0):
    cfg = minih.ModelConfig(n_layers=2, n_heads=2, d_model=12, d_head=4, n_ctx=12, d_vocab=9,
                            smeared_keys=True, d_mlp=d_mlp, dtype="float64")
    params = minih.init_params(cfg, 0)
    rng = np.random.default_rng(1)
    for k in params:                                             # non-trivial LN weights and biases
        if k.endswith(".w"):
            params[k] = 1 + 0.3 * rng.standard_normal(params[k].shape)
        elif k.endswith(".b") or k.endswith("b_in") or k.endswith("b_out"):
            params[k] = 0.3 * rng.standard_normal(params[k].shape)
    return cfg, params


class Model:
    """One model and the arrays the calls below read: CFG, PARAMS, TOKENS, CACHE, PATTERN."""

    def __init__(self, d_mlp):
        self.CFG, self.PARAMS = _model(d_mlp)
        self.TOKENS = np.random.default_rng(2).integers(0, self.CFG.d_vocab, (2, self.CFG.n_ctx))
        _, self.CACHE = minih.run_with_cache(self.PARAMS, self.TOKENS, self.CFG)
        self.PATTERN = self.CACHE["blocks.0.attn.hook_pattern"]  # [B, H, T, T]


MODELS = {"attention-only": Model(d_mlp=0), "with MLPs": Model(d_mlp=5)}
RNG = np.random.default_rng(2)
LOSSES = RNG.random((3, 40))                                     # [snapshots, T] losses
STEPS = np.geomspace(1e3, 1e6, 30)                               # tokens seen
CURVE = 3 - 1 / (1 + np.exp(-(np.log(STEPS) - np.log(3e4)) * 3))  # a loss falling in a window
TRAJ = np.cumsum(RNG.random((12, 2)), axis=0)                    # a PCA trajectory [steps, 2]
MAT = RNG.standard_normal((5, 5))

# name -> a function of a Model returning (args, kwargs) of one call
CALLS = {
    "candidate_tokens": lambda m: ((9,), dict(token_counts=RNG.integers(1, 5, 9).astype(float))),
    "composition_baseline_samples": lambda m: ((6, 2), dict(n_samples=5)),
    "composition_score": lambda m: ((RNG.standard_normal((4, 6)), RNG.standard_normal((6, 5))), {}),
    "composition_scores": lambda m: ((m.PARAMS, m.CFG), {}),
    "copying_score_from_logits": lambda m: ((RNG.standard_normal((2, 3, 2, 9)), m.TOKENS[:, :3]), {}),
    "copying_tokens": lambda m: ((9,), dict(n_seqs=2, seq_len=5,
                                           token_counts=RNG.integers(1, 5, 9).astype(float))),
    "detection_pattern": lambda m: (("induction_head", m.TOKENS), {}),
    "detector_score": lambda m: ((m.PATTERN, M.detection_pattern("previous_token_head", m.TOKENS)), {}),
    "detector_scores": lambda m: ((m.PARAMS, m.CFG, m.TOKENS), {}),
    "direct_logits_per_source": lambda m: ((m.PARAMS, m.CFG, m.CACHE), {}),
    "duplicate_token_mask": lambda m: ((m.TOKENS,), {}),
    "duplicate_token_score": lambda m: ((m.PATTERN, m.TOKENS), {}),
    "duplicate_token_scores": lambda m: ((m.PARAMS, m.CFG, m.TOKENS), {}),
    "eigenvalue_copying_scores": lambda m: ((m.PARAMS, m.CFG), {}),
    "eigenvalue_positivity": lambda m: ((MAT,), {}),
    "embed_through_ln": lambda m: ((m.PARAMS, m.CFG, 1), {}),
    "empirical_copying_scores": lambda m: ((m.PARAMS, m.CFG, m.TOKENS[:, :5]), {}),
    "folded_weights": lambda m: ((m.PARAMS, m.CFG), {}),
    "full_ov_circuits": lambda m: ((m.PARAMS, m.CFG), {}),
    "full_qk_circuits": lambda m: ((m.PARAMS, m.CFG), {}),
    "icl_indices": lambda m: ((40,), {}),
    "icl_score": lambda m: ((LOSSES,), dict(early=5, late=30)),
    "induction_mask": lambda m: ((m.TOKENS,), {}),
    "k_composition_qk_terms": lambda m: ((m.PARAMS, m.CFG), {}),
    "k_composition_qk_trace": lambda m: ((m.PARAMS, m.CFG, RNG.random((2, 2))), {}),
    "knee_point": lambda m: ((TRAJ,), {}),
    "ln_linear": lambda m: ((m.PARAMS, m.CFG, "final"), {}),
    "loss_bump": lambda m: ((STEPS, CURVE, (STEPS[1], STEPS[-1])), {}),
    "curve_departure": lambda m: ((STEPS, CURVE, CURVE + 0.5), {}),
    "steepest_fall": lambda m: ((STEPS, CURVE), {}),
    "loss_by_position": lambda m: ((LOSSES,), {}),
    "loss_log_position_derivative": lambda m: ((LOSSES,), {}),
    "loss_pca": lambda m: (([RNG.random((4, 3, 10)), RNG.random((4, 3, 10))],), {}),
    "per_token_losses": lambda m: ((m.PARAMS, m.TOKENS, m.CFG), {}),
    "phase_change_window": lambda m: ((STEPS, CURVE), {}),
    "positional_shares": lambda m: ((m.PARAMS, m.CFG, m.TOKENS), dict(cache=m.CACHE)),
    "prefix_matching_score": lambda m: ((m.PATTERN, m.TOKENS), {}),
    "prefix_matching_scores": lambda m: ((m.PARAMS, m.CFG, m.TOKENS), {}),
    "prefix_matching_tokens": lambda m: ((9,), dict(n_ctx=12, n_seqs=2, seg_len=3, n_repeats=4)),
    "previous_token_mask": lambda m: ((5,), {}),
    "previous_token_score": lambda m: ((m.PATTERN,), {}),
    "previous_token_scores": lambda m: ((m.PARAMS, m.CFG, m.TOKENS), {}),
    "score_terms": lambda m: ((m.PARAMS, m.CFG, m.CACHE, 1), {}),
    "small_ov_circuits": lambda m: ((m.PARAMS, m.CFG, 0), {}),
    "smooth_log": lambda m: ((STEPS, CURVE), {}),
    "stacked_patterns": lambda m: ((m.PARAMS, m.CFG, m.TOKENS), {}),
    "summed_attention": lambda m: ((m.PATTERN, M.induction_mask(m.TOKENS)), {}),
    "term_shares": lambda m: ((M.score_terms(m.PARAMS, m.CFG, m.CACHE, 1),), {}),
    "turning_point": lambda m: ((TRAJ,), {}),
    # a cached function (functools.lru_cache): its arguments are numbers only
    "composition_baseline": lambda m: ((6, 2), {}),
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


@pytest.mark.parametrize("model", sorted(MODELS))
@pytest.mark.parametrize("name", sorted(CALLS))
def test_metric_leaves_its_inputs_alone(name, model):
    args, kwargs = CALLS[name](MODELS[model])
    before = copy.deepcopy((args, kwargs))
    thaw = _freeze((args, kwargs))
    try:
        getattr(M, name)(*args, **kwargs)                        # a write raises here ..
    finally:
        for a in reversed(thaw):                                 # bases before their views
            a.setflags(write=True)
    assert _equal((args, kwargs), before), f"{name} changed an input"  # .. or shows here
