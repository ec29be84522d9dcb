"""The checks of each exercise: finite differences, properties and known answers.

Each check_* function takes the student's function, runs a sequence of named checks
and returns their names; the first failure raises CheckFailed with a message that
says what was checked, shows the numbers, and gives a hint.
"""
from __future__ import annotations

import numpy as np

from ..config import ModelConfig
from ..model import run_with_cache
from ..params import init_params
from ..ops import (attention_pattern, attention_scores, attention_z, cross_entropy_forward,
                   gelu_forward, layernorm_forward, linear_forward)
from ..testing import compare, numerical_grad

# Finite differences in float64 (h = 1e-5) are accurate to ~1e-10 on these ops; a
# correct answer agrees to 1e-7 relative, a wrong one is off by O(1).
RTOL, ATOL = 1e-6, 1e-8


class CheckFailed(Exception):
    pass


def expect(condition_message, hint):
    """Raise CheckFailed if `condition_message` (a compare() result) is not None."""
    if condition_message:
        raise CheckFailed(f"{condition_message}\n  hint: {hint}")


def expect_tuple(result, n, shapes, name):
    if not isinstance(result, tuple) or len(result) != n:
        raise CheckFailed(f"{name} must return a tuple of {n} arrays, got {type(result).__name__}"
                          + (f" of length {len(result)}" if isinstance(result, tuple) else ""))
    for i, (r, shape) in enumerate(zip(result, shapes)):
        if np.shape(r) != shape:
            raise CheckFailed(f"{name}: output {i} has shape {np.shape(r)}, expected {shape}")


def unchanged(fn, *args):
    """Call fn on copies-checked inputs; fail if it modified any of them."""
    before = [np.array(a, copy=True) for a in args]
    out = fn(*args)
    for i, (a, b) in enumerate(zip(args, before)):
        if not np.array_equal(a, b):
            raise CheckFailed(f"your function modified its input number {i + 1}; "
                              f"a backward must not change the arrays it is given")
    return out


# --- exercise 1 ---------------------------------------------------------------------

def check_layernorm_backward(fn):
    passed = []
    rng = np.random.default_rng(1)
    for shape in [(2, 3, 5), (4, 1), (1, 1, 2)]:
        D = shape[-1]
        x, w, b = rng.normal(size=shape), rng.normal(size=D), rng.normal(size=D)
        R = rng.normal(size=shape)
        _, scale = layernorm_forward(x, w, b)
        out = unchanged(fn, R, x, scale, w)
        expect_tuple(out, 3, [shape, (D,), (D,)], "layernorm_backward")
        d_x, d_w, d_b = out
        L = lambda: float((layernorm_forward(x, w, b)[0] * R).sum())
        expect(compare(f"d_b for shape {shape}", d_b, numerical_grad(L, b), RTOL, ATOL),
               "y = xhat * w + b, so dL/db sums d_y over every axis but the last")
        expect(compare(f"d_w for shape {shape}", d_w, numerical_grad(L, w), RTOL, ATOL),
               "dL/dw = sum of d_y * xhat over every axis but the last")
        expect(compare(f"sum of d_x over D, shape {shape}", d_x.sum(-1), np.zeros(shape[:-1]), 0, 1e-9),
               "adding a constant to x leaves y unchanged, so d_x must sum to zero over D: "
               "did you forget that the mean depends on x?")
        expect(compare(f"d_x for shape {shape}", d_x, numerical_grad(L, x), RTOL, ATOL),
               "with g = d_y * w: d_x = (g - mean(g) - xhat * mean(g * xhat)) / scale "
               "(docs/02_backward.md)")
    passed += ["shapes", "inputs untouched", "d_b", "d_w", "d_x sums to zero", "d_x by finite differences"]
    return passed


# --- exercise 2 ---------------------------------------------------------------------

def check_attention_backward(fn):
    rng = np.random.default_rng(2)
    for B, T, H, E in [(2, 4, 2, 3), (1, 1, 1, 1), (1, 5, 1, 2)]:
        q, k, v = (rng.normal(size=(B, T, H, E)) for _ in range(3))
        R = rng.normal(size=(B, T, H, E))
        pattern = attention_pattern(attention_scores(q, k))
        out = unchanged(fn, R, q, k, v, pattern)
        expect_tuple(out, 3, [(B, T, H, E)] * 3, "attention_backward")
        d_q, d_k, d_v = out
        L = lambda: float((attention_z(attention_pattern(attention_scores(q, k)), v) * R).sum())
        where = f"shape B,T,H,E = {(B, T, H, E)}"
        expect(compare(f"d_v ({where})", d_v, numerical_grad(L, v), RTOL, ATOL),
               "z = pattern @ v, so d_v = pattern^T @ d_z for each (batch, head)")
        expect(compare(f"d_q[:, 0] ({where})", d_q[:, 0], np.zeros_like(d_q[:, 0]), 0, 1e-12),
               "query 0 sees only key 0, so its pattern row is [1, 0, ...] whatever q is: d_q[:, 0] = 0")
        expect(compare(f"d_q ({where})", d_q, numerical_grad(L, q), RTOL, ATOL),
               "softmax backward per row: d_scores = pattern * (d_pattern - sum(d_pattern * pattern)); "
               "then d_q = d_scores @ k / sqrt(E)")
        expect(compare(f"d_k ({where})", d_k, numerical_grad(L, k), RTOL, ATOL),
               "d_k = d_scores^T @ q / sqrt(E): keys collect gradient from every later query")
    return ["shapes", "inputs untouched", "d_v", "first query gets no gradient", "d_q", "d_k"]


# --- exercise 3 ---------------------------------------------------------------------

def check_cross_entropy_backward(fn):
    rng = np.random.default_rng(3)
    for B, T, V in [(2, 5, 4), (1, 2, 1), (3, 2, 7)]:
        logits = rng.normal(size=(B, T, V)) * 2
        tokens = rng.integers(0, V, size=(B, T))
        d = unchanged(fn, logits, tokens)
        if np.shape(d) != (B, T, V):
            raise CheckFailed(f"cross_entropy_backward must return shape {(B, T, V)}, got {np.shape(d)}")
        where = f"B,T,V = {(B, T, V)}"
        expect(compare(f"last position ({where})", d[:, -1], np.zeros((B, V)), 0, 0),
               "the last position predicts no token: its gradient is exactly 0")
        expect(compare(f"row sums ({where})", d.sum(-1), np.zeros((B, T)), 0, 1e-12),
               "adding a constant to a row of logits changes no probability, so each row of "
               "the gradient sums to zero (softmax minus one-hot)")
        L = lambda: cross_entropy_forward(logits, tokens)[0]
        expect(compare(f"d_logits ({where})", d, numerical_grad(L, logits), RTOL, ATOL),
               "(softmax - onehot(next token)) / (B * (T - 1)) at positions 0..T-2")
    return ["shape", "inputs untouched", "last position zero", "rows sum to zero", "finite differences"]


# --- exercise 4 ---------------------------------------------------------------------

def _repeated_tokens(rng, B=2, R=5, repeats=4, V=20):
    """[B, 1 + R*repeats]: token 0 (BOS) then R distinct random tokens, repeated."""
    segs = np.stack([rng.choice(np.arange(1, V), size=R, replace=False) for _ in range(B)])
    return np.concatenate([np.zeros((B, 1), dtype=np.int64), np.tile(segs, repeats)], axis=1)


def _perfect_induction(tokens, one_key=False):
    """Pattern [B,1,T,T] putting all attention on keys after earlier copies of the query
    token (spread evenly, or all on the latest such key), self-attention elsewhere."""
    B, T = tokens.shape
    p = np.zeros((B, 1, T, T))
    for b in range(B):
        for i in range(T):
            keys = [j for j in range(1, i + 1) if tokens[b, j - 1] == tokens[b, i]]
            if not keys:
                p[b, 0, i, i] = 1.0
            elif one_key:
                p[b, 0, i, keys[-1]] = 1.0
            else:
                p[b, 0, i, keys] = 1.0 / len(keys)
    return p


def _previous_token(B, T):
    p = np.zeros((B, 1, T, T))
    p[:, 0, 0, 0] = 1.0
    p[:, 0, np.arange(1, T), np.arange(T - 1)] = 1.0
    return p


def check_prefix_matching(fn):
    rng = np.random.default_rng(4)
    tokens = _repeated_tokens(rng)
    B, T = tokens.shape
    perfect, prev = _perfect_induction(tokens), _previous_token(B, T)
    selfish = np.broadcast_to(np.eye(T), (B, 1, T, T)).copy()
    pattern = np.concatenate([perfect, prev, selfish], axis=1)       # [B, 3, T, T]
    score = np.asarray(unchanged(fn, pattern, tokens), dtype=float)
    if score.shape != (3,):
        raise CheckFailed(f"prefix_matching_score must return one score per head, shape (3,), "
                          f"got {score.shape}")
    expect(compare("perfect induction head", score[0], 1.0, 0, 1e-9),
           "a head that puts all its attention on tokens following earlier copies of the query "
           "token scores 1; check which queries you average over (only those with a match)")
    expect(compare("previous-token head", score[1], 0.0, 0, 1e-9),
           "the previous token j = i-1 matches only if t[i-2] == t[i]: never in these sequences")
    expect(compare("self-attention head", score[2], 0.0, 0, 1e-9),
           "key j = i would need t[i-1] == t[i]; remember the condition is on t[j-1], not t[j]")
    one = _perfect_induction(tokens, one_key=True)
    expect(compare("all attention on ONE matching key", np.asarray(fn(one, tokens), float)[0], 1.0, 0, 1e-9),
           "in repeat 4 a query has 3 matching keys; a perfect head may use any of them: sum the "
           "attention over matching keys, do not average the entries")
    mix = 0.3 * perfect + 0.7 * prev
    expect(compare("0.3 * perfect + 0.7 * previous-token", np.asarray(fn(mix, tokens), float)[0], 0.3, 0, 1e-9),
           "the score is linear in the pattern")
    relabel = rng.permutation(20)[tokens]
    expect(compare("relabelled tokens", np.asarray(fn(pattern, relabel), float), score, 0, 1e-12),
           "only which tokens are equal matters, not their ids")
    return ["shape", "inputs untouched", "perfect head = 1", "previous-token head = 0",
            "self-attention = 0", "one matching key is enough", "linearity", "relabelling"]


# --- exercise 5 ---------------------------------------------------------------------

def check_eigenvalue_copying(fn):
    rng = np.random.default_rng(5)
    V = D = 12
    E = 3
    P = np.linalg.qr(rng.normal(size=(D, E)))[0]                    # [D,E] orthonormal columns
    I = np.eye(V)
    cases = [("W_V W_O = P P^T (projects tokens onto themselves)", (I, P, P.T, I), 1.0,
              "the eigenvalues are all +1: pure copying scores 1"),
             ("W_V W_O = -P P^T", (I, P, -P.T, I), -1.0,
              "the eigenvalues are all -1: pure anti-copying scores -1"),
             ("a 90-degree rotation inside a plane", (I, P[:, :2], np.array([[0, 1], [-1, 0]]) @ P[:, :2].T, I),
              0.0, "eigenvalues +i and -i: their sum is 0 (take the real part of the sum)")]
    for name, args, expected, hint in cases:
        score = float(np.real(unchanged(fn, *args)))
        expect(compare(name, score, expected, 0, 1e-9), hint)
    W_E, W_V, W_O, W_U = rng.normal(size=(30, 8)), rng.normal(size=(8, 4)), rng.normal(size=(4, 8)), rng.normal(size=(8, 30))
    s = float(np.real(fn(W_E, W_V, W_O, W_U)))
    if not -1 - 1e-12 <= s <= 1 + 1e-12:
        raise CheckFailed(f"score {s} is outside [-1, 1]\n  hint: divide by sum(|eigenvalues|)")
    expect(compare("scaling W_V by 3", float(np.real(fn(W_E, 3 * W_V, W_O, W_U))), s, 1e-9, 1e-12),
           "the score is a ratio: scaling the circuit must not change it")
    M = W_E @ W_V @ W_O @ W_U                                        # the full [V,V] circuit
    lam = np.linalg.eigvals(M)
    expect(compare("the full 30x30 circuit", s, lam.sum().real / np.abs(lam).sum(), 1e-6, 1e-9),
           "compute the eigenvalues of W_O @ W_U @ W_E @ W_V (or of the full circuit)")
    return ["copying = 1", "anti-copying = -1", "rotation = 0", "in [-1, 1]", "scale invariant",
            "matches the full circuit"]


# --- exercise 6 ---------------------------------------------------------------------

def check_zero_ablation(fn):
    cfg = ModelConfig.preset("tiny", dtype="float64", n_heads=3)
    params = init_params(cfg, 6)
    tokens = np.random.default_rng(6).integers(0, cfg.d_vocab, (3, cfg.n_ctx))
    frozen = {k: v.copy() for k, v in params.items()}
    clean, _ = run_with_cache(params, tokens, cfg)
    for layer in range(cfg.n_layers):
        for head in range(cfg.n_heads):
            out = fn(params, tokens, cfg, layer, head)
            if np.shape(out) != clean.shape:
                raise CheckFailed(f"zero_ablated_logits must return logits of shape {clean.shape}, "
                                  f"got {np.shape(out)}")
            if any(not np.array_equal(frozen[k], params[k]) for k in params):
                raise CheckFailed("your function changed params; work on copies")
            # known answer: removing the write z_h @ W_O[h] is the same as W_O[h] = 0
            W_O = params[f"blocks.{layer}.attn.W_O"].copy()
            W_O[head] = 0.0
            ref, _ = run_with_cache({**params, f"blocks.{layer}.attn.W_O": W_O}, tokens, cfg)
            expect(compare(f"logits with head {layer}.{head} removed", out, ref, 1e-9, 1e-9),
                   "remove the head's write z_h @ W_O[h] from the residual stream, then run every "
                   "later layer on the changed stream (layer-0 heads change what layer 1 sees)")
            if np.allclose(out, clean):
                raise CheckFailed(f"removing head {layer}.{head} changed nothing\n  hint: are you "
                                  f"removing the right head's output?")
    return ["shape", "params untouched", "every head of every layer", "later layers recomputed"]


# --- exercise 7 ---------------------------------------------------------------------

def _erf_gelu_slope(u):
    """The exact (erf) GELU's slope, Phi(u) + u phi(u): a known wrong answer here, since
    minih's GELU is the tanh form (they differ by up to ~9e-4)."""
    from scipy.special import erf
    return 0.5 * (1.0 + erf(u / np.sqrt(2.0))) + u * np.exp(-0.5 * u * u) / np.sqrt(2.0 * np.pi)


def check_gelu_backward(fn):
    rng = np.random.default_rng(7)
    chain_hint = ("gelu'(u) = 0.5 (1 + t) + 0.5 u (1 - t^2) c (1 + 3 k u^2) with t = tanh(a): "
                  "the product rule on 0.5 u (1 + t), then the chain rule through tanh "
                  "(1 - t^2) and through a = c (u + k u^3) (da/du = c (1 + 3 k u^2)); did you "
                  "forget da/du?")
    # known answers first: they say the most about a wrong formula
    known = np.array([0.0, 10.0, 30.0, -10.0, -30.0])
    slope = unchanged(fn, np.ones_like(known), known)
    if np.shape(slope) != known.shape:
        raise CheckFailed(f"gelu_backward must return the shape of u, {known.shape}, got "
                          f"{np.shape(slope)}\n  hint: GELU acts on each entry alone: "
                          f"d_u = d_post * gelu'(u)")
    slope = np.asarray(slope, dtype=float)
    expect(compare("gelu'(0)", slope[0], 0.5, 0, 1e-12),
           "at u = 0, t = tanh(0) = 0, so gelu'(0) = 0.5 (1 + 0) + 0 = 1/2")
    expect(compare("gelu'(u) for u = 10, 30", slope[1:3], np.ones(2), 0, 1e-9),
           "for large u, t -> 1 and 1 - t^2 -> 0: GELU becomes the identity, slope 1")
    expect(compare("gelu'(u) for u = -10, -30", slope[3:], np.zeros(2), 0, 1e-9),
           "for very negative u, t -> -1: GELU is flat at 0 there, slope 0")
    for shape in [(2, 3, 5), (4,), (1, 1, 1)]:
        u, R = rng.normal(size=shape) * 2, rng.normal(size=shape)   # |u| up to ~6: the curved part
        d_u = unchanged(fn, R, u)
        if np.shape(d_u) != shape:
            raise CheckFailed(f"gelu_backward must return the shape of u, {shape}, got {np.shape(d_u)}\n"
                              f"  hint: GELU acts on each entry alone: d_u = d_post * gelu'(u)")
        d_u = np.asarray(d_u, dtype=float)
        where = f"shape {shape}"
        slope = np.asarray(fn(np.ones_like(u), u), dtype=float)     # d_post = 1: gelu'(u) itself
        expect(compare(f"d_u against d_post * gelu'(u) ({where})", d_u, R * slope, 1e-12, 1e-14),
               "the backward is entry by entry: d_u = d_post * gelu'(u) (multiply by d_post)")
        expect(compare(f"gelu'(u) + gelu'(-u) ({where})", slope + np.asarray(fn(np.ones_like(u), -u), float),
                       np.ones(shape), 0, 1e-9),
               "gelu(u) - gelu(-u) = u exactly (a is odd in u), so the slopes at u and -u add "
               "to 1: check the signs of your terms")
        if compare("", slope, _erf_gelu_slope(u), 1e-7, 1e-9) is None:
            raise CheckFailed(f"gelu'(u) ({where}) is the slope of the exact GELU, Phi(u) + u phi(u)\n"
                              f"  hint: minih's GELU is the tanh form, 0.5 u (1 + tanh(c (u + k u^3))) "
                              f"(GPT-2's gelu_new); differentiate that one")
        L = lambda: float((gelu_forward(u) * R).sum())
        expect(compare(f"d_u by finite differences ({where})", d_u, numerical_grad(L, u), RTOL, ATOL),
               chain_hint)
    u32 = rng.normal(size=(3, 4)).astype(np.float32)
    out32 = fn(np.ones_like(u32), u32)
    if getattr(out32, "dtype", None) != np.float32:
        raise CheckFailed(f"gelu_backward turned float32 inputs into {getattr(out32, 'dtype', type(out32).__name__)}\n"
                          f"  hint: write the constants as Python floats (math.sqrt(2 / math.pi)); "
                          f"a NumPy float64 scalar such as np.sqrt(2 / np.pi) makes the result float64")
    return ["shape", "inputs untouched", "gelu'(0) = 1/2", "slope -> 1 for large u",
            "slope -> 0 for very negative u", "d_post times the slope", "gelu'(u) + gelu'(-u) = 1",
            "tanh form (not erf)", "finite differences", "float32 stays float32"]


# --- exercise 8 ---------------------------------------------------------------------

def check_mlp_backward(fn):
    rng = np.random.default_rng(8)
    for lead, D, M in [((2, 3), 4, 5), ((1, 1), 1, 1), ((4,), 3, 6)]:
        h2, R = rng.normal(size=lead + (D,)), rng.normal(size=lead + (D,))
        W_in, b_in = rng.normal(size=(D, M)), rng.normal(size=M)
        W_out, b_out = rng.normal(size=(M, D)), rng.normal(size=D)
        n_pos = int(np.prod(lead))
        if n_pos > 1:
            R.reshape(-1, D)[0] = 0.0             # the loss does not read the first position
        pre = linear_forward(h2, W_in, b_in)
        post = gelu_forward(pre)
        out = unchanged(fn, R, pre, post, h2, W_in, W_out)
        expect_tuple(out, 5, [lead + (D,), (D, M), (M,), (M, D), (D,)], "mlp_backward")
        d_h2, d_W_in, d_b_in, d_W_out, d_b_out = (np.asarray(a, dtype=float) for a in out)
        L = lambda: float((linear_forward(gelu_forward(linear_forward(h2, W_in, b_in)), W_out, b_out)
                           * R).sum())
        where = f"positions {lead}, D = {D}, M = {M}"
        expect(compare(f"d_b_out ({where})", d_b_out, numerical_grad(L, b_out), RTOL, ATOL),
               "mlp_out = post @ W_out + b_out adds b_out at every position: d_b_out is "
               "d_mlp_out summed over every position")
        expect(compare(f"d_W_out ({where})", d_W_out, numerical_grad(L, W_out), RTOL, ATOL),
               "d_W_out = post^T @ d_mlp_out, summed over every position (flatten the leading "
               "axes to [positions, M] and [positions, D] first)")
        if n_pos > 1:
            expect(compare(f"d_h2 at a position the loss does not read ({where})", d_h2.reshape(-1, D)[0],
                           np.zeros(D), 0, 1e-12),
                   "the MLP acts on each position alone: where d_mlp_out is 0, d_h2 is 0; "
                   "keep d_h2 per position, sum only the weights' and biases' gradients")
        no_gelu = (R @ W_out.T).reshape(-1, M).sum(axis=0)
        if compare("", d_b_in, no_gelu, 1e-7, 1e-9) is None:
            raise CheckFailed(f"d_b_in ({where}) is d_post summed, as if there were no GELU\n"
                              f"  hint: the GELU sits between the two linear maps: "
                              f"d_pre = d_post * gelu'(pre) (exercise 7), then d_b_in sums d_pre")
        expect(compare(f"d_b_in ({where})", d_b_in, numerical_grad(L, b_in), RTOL, ATOL),
               "d_post = d_mlp_out @ W_out^T; d_pre = d_post * gelu'(pre) (the slope at pre, "
               "not post or gelu(pre)); d_b_in is d_pre summed over every position")
        expect(compare(f"d_W_in ({where})", d_W_in, numerical_grad(L, W_in), RTOL, ATOL),
               "d_W_in = h2^T @ d_pre, summed over every position")
        numeric_h2 = numerical_grad(L, h2)
        if compare("", d_h2 - R, numeric_h2, RTOL, ATOL) is None:
            raise CheckFailed(f"d_h2 ({where}) has d_mlp_out added to it\n"
                              f"  hint: return the MLP's part only, d_pre @ W_in^T: the residual "
                              f"stream's own d_x is added by the model outside this function")
        expect(compare(f"d_h2 ({where})", d_h2, numeric_h2, RTOL, ATOL),
               "d_h2 = d_pre @ W_in^T, at each position")
    return ["shapes", "inputs untouched", "d_b_out", "d_W_out", "d_h2 per position", "d_b_in",
            "d_W_in", "d_h2 by finite differences"]

