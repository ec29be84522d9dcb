"""Each NumPy reference op's backward against central finite differences, on its own.

Oracle: for an op y = f(x), the scalar L = sum(y * R) with a fixed random R has
dL/dx = backward(R, ...); we compare with numerical_grad in float64. Tolerance
1e-7 relative + 1e-9 absolute: the second-order stencil with h = 1e-5 is accurate to
~1e-10 on these small, smooth ops; a wrong backward is off by O(1) relative.
"""
import numpy as np
import pytest

from minih import ops
from helpers import assert_close, numerical_grad

RTOL, ATOL = 1e-7, 1e-9
rng = np.random.default_rng(0)


def check(name, loss, analytic, wrt):
    assert_close(name, analytic, numerical_grad(loss, wrt), RTOL, ATOL)


@pytest.mark.parametrize("shape", [(2, 3, 5), (1, 1, 1), (1, 4, 2)])
def test_layernorm_backward(shape):
    x, w, b = rng.normal(size=shape), rng.normal(size=shape[-1]), rng.normal(size=shape[-1])
    R = rng.normal(size=shape)
    L = lambda: float((ops.layernorm_forward(x, w, b)[0] * R).sum())
    y, scale = ops.layernorm_forward(x, w, b)
    d_x, d_w, d_b = ops.layernorm_backward(R, x, scale, w)
    check("d_x", L, d_x, x)
    check("d_w", L, d_w, w)
    check("d_b", L, d_b, b)


def test_layernorm_forward_matches_definition():
    # oracle: the formula (x - mean) / sqrt(var + 1e-5) * w + b, var biased, written out directly
    x, w, b = rng.normal(size=(3, 7)), rng.normal(size=7), rng.normal(size=7)
    scale = np.sqrt(x.var(-1, keepdims=True) + 1e-5)
    expect = (x - x.mean(-1, keepdims=True)) / scale * w + b
    y, got_scale = ops.layernorm_forward(x, w, b)
    assert_close("ln", y, expect, 1e-12, 1e-12)
    assert_close("scale", got_scale, scale, 1e-12, 1e-12)
    # its two steps: the scale, then normalising with it (the model hooks the scale between)
    np.testing.assert_array_equal(ops.layernorm_scale(x), got_scale)
    np.testing.assert_array_equal(ops.layernorm_normalize(x, got_scale, w, b), y)
    # with another scale given, normalise uses that one: linear in x
    other = rng.uniform(0.5, 2, size=(3, 1))
    assert_close("given scale", ops.layernorm_normalize(x, other, w, b),
                 (x - x.mean(-1, keepdims=True)) / other * w + b, 1e-12, 1e-12)


@pytest.mark.parametrize("B,T,D,H,E", [(2, 3, 4, 2, 3), (1, 1, 1, 1, 1)])
def test_project_backward(B, T, D, H, E):
    x, W = rng.normal(size=(B, T, D)), rng.normal(size=(H, D, E))
    R = rng.normal(size=(B, T, H, E))
    assert_close("forward", ops.project_forward(x, W), np.einsum("btd,hde->bthe", x, W), 1e-12, 1e-12)
    L = lambda: float((ops.project_forward(x, W) * R).sum())
    d_x, d_W = ops.project_backward(R, x, W)
    check("d_x", L, d_x, x)
    check("d_W", L, d_W, W)


@pytest.mark.parametrize("B,T,H,E", [(2, 4, 3, 2), (1, 1, 1, 1), (1, 2, 1, 3)])
def test_smear_backward(B, T, H, E):
    k, smear = rng.normal(size=(B, T, H, E)), rng.normal(size=H)
    R = rng.normal(size=(B, T, H, E))
    L = lambda: float((ops.smear_forward(k, smear) * R).sum())
    d_k, d_smear = ops.smear_backward(R, k, smear)
    check("d_k", L, d_k, k)
    check("d_smear", L, d_smear, smear)


def test_smear_forward_by_hand():
    # oracle: the smearing formula, one position at a time
    k, smear = rng.normal(size=(1, 3, 2, 2)), np.array([0.0, 2.0])
    s = 1 / (1 + np.exp(-smear))
    out = ops.smear_forward(k, smear)
    assert_close("k'[0]", out[:, 0], k[:, 0], 0, 0)
    for j in (1, 2):
        assert_close(f"k'[{j}]", out[:, j], s[:, None] * k[:, j] + (1 - s[:, None]) * k[:, j - 1], 1e-15, 1e-15)


def attention(q, k, v):
    """The reference's four attention passes: q, k, v -> z, scores, pattern."""
    scores = ops.attention_scores(q, k)
    pattern = ops.attention_pattern(scores)
    return ops.attention_z(pattern, v), scores, pattern


@pytest.mark.parametrize("B,T,H,E", [(2, 4, 2, 3), (1, 1, 1, 1), (1, 3, 1, 1), (5, 5, 2, 2)])
def test_attention_backward(B, T, H, E):
    q, k, v = (rng.normal(size=(B, T, H, E)) for _ in range(3))
    R = rng.normal(size=(B, T, H, E))
    L = lambda: float((attention(q, k, v)[0] * R).sum())
    _, _, pattern = attention(q, k, v)
    d_q, d_k, d_v = ops.attention_backward(R, q, k, v, pattern)
    check("d_q", L, d_q, q)
    check("d_k", L, d_k, k)
    check("d_v", L, d_v, v)


def test_attention_forward_by_loops():
    # oracle: the causal softmax written with explicit loops over (batch, head, query)
    B, T, H, E = 5, 5, 2, 3
    q, k, v = (rng.normal(size=(B, T, H, E)) for _ in range(3))
    z, scores, pattern = attention(q, k, v)
    for b in range(B):
        for h in range(H):
            for i in range(T):
                s = np.array([q[b, i, h] @ k[b, j, h] / np.sqrt(E) for j in range(i + 1)])
                p = np.exp(s - s.max()) / np.exp(s - s.max()).sum()
                assert_close("scores row", scores[b, h, i, :i + 1], s, 1e-12, 1e-14)
                assert_close("pattern row", pattern[b, h, i, :i + 1], p, 1e-12, 1e-14)
                assert np.all(pattern[b, h, i, i + 1:] == 0) and np.all(np.isneginf(scores[b, h, i, i + 1:]))
                assert_close("z row", z[b, i, h], p @ v[b, :i + 1, h], 1e-12, 1e-14)


def test_attention_keeps_float32():
    # the passes must not promote float32 activations to float64 (1/sqrt(E), -inf, the mask)
    q, k, v = (rng.normal(size=(2, 4, 2, 3)).astype(np.float32) for _ in range(3))
    z, scores, pattern = attention(q, k, v)
    assert z.dtype == scores.dtype == pattern.dtype == np.float32
    assert all(g.dtype == np.float32 for g in ops.attention_backward(z, q, k, v, pattern))


def test_attention_backward_with_a_saturated_softmax():
    # oracle: finite differences. Scores of +-30 make the pattern rows nearly one-hot:
    # the backward must still give the forward's gradient (no NaN, no lost row)
    B, T, H, E = 2, 6, 1, 4
    q, k, v = (rng.normal(size=(B, T, H, E)) for _ in range(3))
    q *= 30
    R = rng.normal(size=(B, T, H, E))
    L = lambda: float((attention(q, k, v)[0] * R).sum())
    _, _, pattern = attention(q, k, v)
    assert np.all(np.isfinite(pattern))
    d_q, d_k, d_v = ops.attention_backward(R, q, k, v, pattern)
    check("d_q", L, d_q, q)
    check("d_k", L, d_k, k)
    check("d_v", L, d_v, v)


@pytest.mark.parametrize("B,T,H,E,D", [(2, 3, 2, 3, 4), (1, 1, 1, 1, 1)])
def test_output_backward(B, T, H, E, D):
    z, W_O = rng.normal(size=(B, T, H, E)), rng.normal(size=(H, E, D))
    R = rng.normal(size=(B, T, D))
    assert_close("sum of head results", ops.output_forward(z, W_O),
                 ops.head_results(z, W_O).sum(axis=2), 1e-12, 1e-12)
    L = lambda: float((ops.output_forward(z, W_O) * R).sum())
    d_z, d_W_O = ops.output_backward(R, z, W_O)
    check("d_z", L, d_z, z)
    check("d_W_O", L, d_W_O, W_O)


@pytest.mark.parametrize("B,T,V", [(2, 4, 5), (1, 2, 1), (3, 2, 2)])
def test_cross_entropy_backward(B, T, V):
    logits = rng.normal(size=(B, T, V)) * 3
    tokens = rng.integers(0, V, size=(B, T))
    L = lambda: ops.cross_entropy_forward(logits, tokens)[0]
    _, probs = ops.cross_entropy_forward(logits, tokens)
    check("d_logits", L, ops.cross_entropy_backward(probs, tokens), logits)
    # oracle for the value: the definition, -log softmax at the next token, averaged
    p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    nll = -np.log(np.take_along_axis(p[:, :-1], tokens[:, 1:, None], -1)[..., 0])
    assert_close("per_token_loss", ops.per_token_loss(logits, tokens), nll, 1e-12, 1e-12)
    assert abs(L() - nll.mean()) < 1e-12


def test_cross_entropy_is_stable_for_huge_logits():
    # a naive exp would overflow to inf/nan; log-softmax subtracts the max first
    # position 0 puts logit 1000 on token 0 but the next token is 1: loss 1000 exactly
    logits = np.array([[[1000.0, 0.0], [0.0, 1000.0]]])
    loss, probs = ops.cross_entropy_forward(logits, np.array([[0, 1]]))
    assert loss == pytest.approx(1000.0) and np.all(np.isfinite(probs))


def test_embedding_backward_accumulates_repeats():
    # token 1 appears twice: its gradient row is the sum of both positions' gradients
    tokens = np.array([[1, 0, 1]])
    d_x = rng.normal(size=(1, 3, 4))
    d_W = ops.embed_backward(d_x, tokens, d_vocab=3)
    assert_close("row 1", d_W[1], d_x[0, 0] + d_x[0, 2], 1e-15, 0)
    assert_close("row 0", d_W[0], d_x[0, 1], 0, 0)
    assert np.all(d_W[2] == 0)
    W = rng.normal(size=(3, 4))
    L = lambda: float((ops.embed_forward(W, tokens) * d_x).sum())
    check("d_W_E", L, d_W, W)


@pytest.mark.parametrize("B,T,D,V", [(2, 3, 4, 5), (1, 1, 1, 1)])
def test_unembed_backward(B, T, D, V):
    x, W_U, R = rng.normal(size=(B, T, D)), rng.normal(size=(D, V)), rng.normal(size=(B, T, V))
    L = lambda: float((ops.unembed_forward(x, W_U) * R).sum())
    d_x, d_W_U = ops.unembed_backward(R, x, W_U)
    check("d_x", L, d_x, x)
    check("d_W_U", L, d_W_U, W_U)


@pytest.mark.parametrize("B,T,D,n_ctx", [(2, 3, 4, 5), (1, 1, 1, 1), (3, 4, 2, 4)])
def test_pos_embed_backward(B, T, D, n_ctx):
    # forward: pos = W_pos[:T], the same rows for every sequence of the batch
    W_pos, R = rng.normal(size=(n_ctx, D)), rng.normal(size=(B, T, D))
    L = lambda: float((np.broadcast_to(W_pos[:T], (B, T, D)) * R).sum())
    d_W_pos = ops.pos_embed_backward(R, n_ctx)
    check("d_W_pos", L, d_W_pos, W_pos)
    assert np.all(d_W_pos[T:] == 0)                              # rows no position reads


def test_adamw_update_matches_formula():
    # oracle: two steps of AdamW written out by hand (PyTorch's algorithm)
    p0, g1, g2 = rng.normal(size=5), rng.normal(size=5), rng.normal(size=5)
    lr, b1, b2, eps, wd = 0.1, 0.9, 0.99, 1e-8, 0.05
    p, m, v = p0.copy(), np.zeros(5), np.zeros(5)
    ops.adamw_update(p, g1, m, v, lr, b1, b2, eps, wd, step=1)
    ops.adamw_update(p, g2, m, v, lr, b1, b2, eps, wd, step=2, grad_scale=0.5)
    ref = p0.copy()
    m_ref, v_ref = np.zeros(5), np.zeros(5)
    for t, g in ((1, g1), (2, 0.5 * g2)):
        m_ref = b1 * m_ref + (1 - b1) * g
        v_ref = b2 * v_ref + (1 - b2) * g ** 2
        ref = ref * (1 - lr * wd) - lr * (m_ref / (1 - b1 ** t)) / (np.sqrt(v_ref / (1 - b2 ** t)) + eps)
    assert_close("p", p, ref, 1e-14, 1e-15)
    assert_close("m", m, m_ref, 1e-14, 1e-15)
