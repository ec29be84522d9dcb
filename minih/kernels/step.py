"""A whole training step's forward and backward for one shard of the batch, in one kernel.

What it is: minih.model's loss_and_grads (forward, next-token cross-entropy, backward)
for the plain model, with no hook point and no edit, written once more as a single
jitted function. It calls the same kernels the op-by-op Numba backend calls (the fused
attention, LayerNorm, GELU, smeared keys, the loss, the embedding) and, for the plain
products, np.dot (in _mm and its two transposed twins), which Numba compiles into a
direct call of BLAS's gemm. model.py stays the one readable account of the model; this
is its twin for speed, and tests/test_step.py checks it against the NumPy reference,
forward and backward.

Why: the models `reproduce` trains are small (32 sequences of 32 tokens, d_model 64),
and there the op-by-op step spent most of its time outside arithmetic. A shard's
forward and backward were ~60 calls from Python (model.py, the hook points, each op's
checks and reshapes), and two shards on two threads waited for each other at Python's
lock (the GIL) between every two of them: a 1-layer `induction` step took 4.7 ms for
0.13 GFLOP. Here a shard is one call that holds no lock (nogil), so the shards of
minih/kernels/shards.py really run side by side. docs/04_numba.md, "The whole step in
one kernel", has the measurements.

Where it runs: model.loss_and_grads with backend="numba" (training), through
fused_loss_and_grads below, on the batch's shards. Everything that reads activations
(run_with_cache, ablations, hooks) runs model.forward, op by op.

The weights come in stacked over the layers and laid out for the products: W_Q, W_K,
W_V as [L, D, H*E] (head h's columns h*E .. h*E+E-1), W_O as [L, H*E, D]; their
gradients come back the same way, one after another in one flat array (so that the
shards' add up in one sum), and fused_loss_and_grads turns them into the params' shapes. Activations live as [R, D] rows (R = positions of the shard, B_s * T), the
attention's as [B_s, T, H, E].

Shape legend: L = n_layers, B = sequences of the shard, T = positions, R = B*T rows,
D = d_model, H = n_heads, E = d_head, V = d_vocab, M = d_mlp, N = n_ctx
"""
import threading

import numpy as np
from numba.extending import register_jitable

from ..ops.layernorm import LN_EPS
from . import shards
from ._jit import kernel
from .attention import _attention_backward, _attention_forward, _smear_backward, _smear_forward
from .embedding import _embed_backward, _embed_forward, _pos_embed_backward
from .layernorm import _layernorm_backward, _layernorm_forward
from .loss import _cross_entropy_backward, _softmax_nll
from .mlp import _gelu_constants, _gelu_forward_keeping_slope


@kernel()
def _mm(a, b, out):
    """out = a @ b (BLAS's gemm).  a [M, K], b [K, N], out [M, N], all C-contiguous"""
    np.dot(a, b, out)


@kernel()
def _mm_tn(a, b, out):
    """out = a^T @ b: a weight's gradient, summed over the rows.  a [R, K], b [R, N] -> [K, N]"""
    np.dot(a.T, b, out)


@kernel()
def _mm_nt(a, b, out):
    """out = a @ b^T: the gradient of a product's input.  a [R, N], b [K, N] -> [R, K]"""
    np.dot(a, b.T, out)


@kernel()
def _copy(a, b):
    """a[:] = b, as a loop: an array assignment would compile Numba's shape checks and
    their error messages (string formatting: several seconds of the cold start).
    a, b [R, D]"""
    for r in range(a.shape[0]):
        for d in range(a.shape[1]):
            a[r, d] = b[r, d]


@kernel()
def _add(a, b):
    """a += b, elementwise.  a, b [R, D]"""
    for r in range(a.shape[0]):
        for d in range(a.shape[1]):
            a[r, d] += b[r, d]


@kernel()
def _mul(out, a, b):
    """out = a * b, elementwise.  out, a, b [R, D]"""
    for r in range(a.shape[0]):
        for d in range(a.shape[1]):
            out[r, d] = a[r, d] * b[r, d]


@kernel()
def _add_row(a, row):
    """a[r] += row for every r: a bias.  a [R, D], row [D]"""
    for r in range(a.shape[0]):
        for d in range(a.shape[1]):
            a[r, d] += row[d]


@kernel()
def _add_row_sums(out, a):
    """out[d] += sum_r a[r, d]: a bias's gradient.  a [R, D], out [D]"""
    for r in range(a.shape[0]):
        for d in range(a.shape[1]):
            out[d] += a[r, d]


@kernel()
def _with_positions(out, x, W_pos, T):
    """out[b*T + t] = x[b*T + t] + W_pos[t] for every row.  x, out [B*T, D], W_pos [>=T, D]"""
    for r in range(x.shape[0]):
        t = r % T
        for d in range(x.shape[1]):
            out[r, d] = x[r, d] + W_pos[t, d]


@register_jitable
def workspace_size(L, B, T, D, H, E, M, V, layernorm, shortformer, smeared):
    """Numbers of the workspace a shard's step carves its activations from (_shard_step,
    in the order it takes them)."""
    R, HE = B * T, H * E
    n = R * D                                                    # x, the residual stream
    n += L * R * D * (2 + shortformer) + L * R                   # resid_pre, ln1, qk_in, ln1 scale
    n += L * R * HE * (4 + smeared) + L * B * H * T              # q, k, v, z, k before smearing; lse
    if M:
        n += L * R * D * 2 + L * R + L * R * M * 2               # resid_mid, ln2, its scale; pre, post
    n += R * D + R + R * V + B * (T - 1) * V                     # final, its scale; logits, probs
    n += 3 * R * D + R * HE * (4 + smeared) + 2 * R * M + B * H  # the backward's
    return n


@kernel()
def _view(ws, at, shape):
    """(the next prod(shape) numbers of ws from `at`, as an array of that shape; the
    position after them). One small function for every carving: a reshape at each of
    the ~50 places would compile its own checks (seconds of the cold start)."""
    n = 1
    for size in shape:
        n *= size
    return ws[at:at + n].reshape(shape), at + n


@kernel()
def _shard_step(tokens, W_E, W_pos, W_U, lnf_w, lnf_b,
                W_Q, W_K, W_V, W_O, ln1_w, ln1_b, s,
                W_in, b_in, W_out, b_out, ln2_w, ln2_b,
                layernorm, shortformer, smeared, scale, ninf, gelu_consts, fast_exp, ws,
                losses, backward):
    """Loss and gradients of one shard: tokens [B, T] -> (loss, G), G every gradient, flat:
    each weight's in turn, in the order of the arguments (_GRAD_NAMES), of its shape.
    Also writes every prediction's loss into losses [B, T-1]. backward=False stops there
    (G is then empty): model.per_token_losses, the forward alone.

    layernorm, shortformer, smeared: the config's choices; an MLP when W_in has M > 0
    columns. s [L, H] = sigmoid(smear) (zeros when not smeared). scale = 1/sqrt(E) and
    ninf = -inf in the weights' dtype. ws: a workspace of at least workspace_size(...)
    numbers, which every activation is carved from (so a step allocates only its
    gradients). Each step below names the line of minih.model it computes.
    """
    B, T = tokens.shape
    R = B * T
    L, D, HE = W_Q.shape
    H = s.shape[1]
    E = HE // H
    M = W_in.shape[2]
    V = W_U.shape[1]
    dt = W_E.dtype
    if ws.size < workspace_size(L, B, T, D, H, E, M, V, layernorm, shortformer, smeared):
        raise ValueError("the workspace is too small for this shard")
    at = 0
    x, at = _view(ws, at, (R, D))                                # the residual stream
    resid_pre, at = _view(ws, at, (L, R, D))
    ln1, at = _view(ws, at, (L, R, D))                           # LN1(x) (unused without LN)
    qk_ins, at = _view(ws, at, (L, R * shortformer, D))          # h + W_pos[:T] (shortformer)
    ln1_scale, at = _view(ws, at, (L, R))
    q, at = _view(ws, at, (L, B, T, H, E))
    k, at = _view(ws, at, (L, B, T, H, E))                       # the keys attended (smeared)
    v, at = _view(ws, at, (L, B, T, H, E))
    z, at = _view(ws, at, (L, B, T, H, E))
    k_raw, at = _view(ws, at, (L, B * smeared, T, H, E))         # the keys before smearing
    lse, at = _view(ws, at, (L, B, H, T))
    m_ = 1 if M else 0
    resid_mid, at = _view(ws, at, (L, R * m_, D))
    ln2, at = _view(ws, at, (L, R * m_, D))
    ln2_scale, at = _view(ws, at, (L, R * m_))
    pre, at = _view(ws, at, (L, R, M))                           # then gelu'(pre) (backward)
    post, at = _view(ws, at, (L, R, M))
    final, at = _view(ws, at, (R, D))
    lnf_scale, at = _view(ws, at, (R,))
    logits, at = _view(ws, at, (R, V))
    probs, at = _view(ws, at, (B, T - 1, V))
    d_x, at = _view(ws, at, (R, D))
    d_h, at = _view(ws, at, (R, D))
    tmp, at = _view(ws, at, (R, D))                              # a product, before it is added
    d_z, at = _view(ws, at, (B, T, H, E))
    d_q, at = _view(ws, at, (B, T, H, E))
    d_k, at = _view(ws, at, (B, T, H, E))
    d_v, at = _view(ws, at, (B, T, H, E))
    d_k_raw, at = _view(ws, at, (B * smeared, T, H, E))
    d_post, at = _view(ws, at, (R, M))
    d_pre, at = _view(ws, at, (R, M))
    d_s_part, at = _view(ws, at, (B, H))

    # ---- forward (model.forward, keep="backward") ----
    _embed_forward(W_E, tokens, x.reshape(B, T, D))             # x = W_E[t]
    if not shortformer:
        _with_positions(x, x, W_pos, T)                          # + W_pos[:T] ("standard")
    for l in range(L):
        _copy(resid_pre[l], x)
        if layernorm:                                            # h = LN1(x)
            _layernorm_forward(x, ln1_w[l], ln1_b[l], LN_EPS, ln1[l], ln1_scale[l], 0, R)
            h = ln1[l]
        else:
            h = resid_pre[l]
        if shortformer:                                          # qk_in = h + W_pos[:T]
            _with_positions(qk_ins[l], h, W_pos, T)
            qk_in = qk_ins[l]
        else:
            qk_in = h
        _mm(qk_in, W_Q[l], q[l].reshape(R, HE))                  # q = qk_in @ W_Q
        if smeared:                                              # k' = smear(qk_in @ W_K)
            _mm(qk_in, W_K[l], k_raw[l].reshape(R, HE))
            _smear_forward(k_raw[l], s[l], k[l], 0, B)
        else:
            _mm(qk_in, W_K[l], k[l].reshape(R, HE))              # k = qk_in @ W_K
        _mm(h, W_V[l], v[l].reshape(R, HE))                      # v = h @ W_V
        _attention_forward(q[l], k[l], v[l], scale, ninf, z[l], lse[l], 0, B * H)
        _mm(z[l].reshape(R, HE), W_O[l], tmp)                    # x += sum_h z_h @ W_O[h]
        _add(x, tmp)
        if M:
            _copy(resid_mid[l], x)
            if layernorm:                                        # h2 = LN2(x)
                _layernorm_forward(x, ln2_w[l], ln2_b[l], LN_EPS, ln2[l], ln2_scale[l], 0, R)
                h2 = ln2[l]
            else:
                h2 = resid_mid[l]
            _mm(h2, W_in[l], pre[l])                             # pre = h2 @ W_in + b_in
            _add_row(pre[l], b_in[l])
            # post = gelu(pre), and pre becomes gelu'(pre) for the backward (also in the
            # forward alone: its post is then the training step's, bit for bit)
            _gelu_forward_keeping_slope(pre[l].reshape(-1), post[l].reshape(-1),
                                        gelu_consts, fast_exp)
            _mm(post[l], W_out[l], tmp)                          # x += gelu(pre) @ W_out + b_out
            _add_row(tmp, b_out[l])
            _add(x, tmp)
    if layernorm:                                                # final = LNfinal(x)
        _layernorm_forward(x, lnf_w, lnf_b, LN_EPS, final, lnf_scale, 0, R)
    else:
        _copy(final, x)
    _mm(final, W_U, logits)                                      # logits = final @ W_U

    # ---- the loss (ops.cross_entropy_forward and _backward) ----
    logits3 = logits.reshape(B, T, V)
    _softmax_nll(logits3, tokens, losses, probs, fast_exp, 0, B * (T - 1))  # losses: each -log p
    total = 0.0
    for b in range(B):
        for i in range(T - 1):
            total += losses[b, i]
    loss = total / (B * (T - 1))
    if not backward:
        return loss, np.zeros(0, dt)
    inv_n = (np.ones(1, dt) / (B * (T - 1)))[0]
    _cross_entropy_backward(probs, tokens, inv_n, logits3, 0, R)  # logits now hold d_logits
    d_logits = logits

    # ---- backward (model.backward); d_x is d loss / d the residual stream ----
    # the gradients: one array, carved in the order of the weights (_GRAD_NAMES), so
    # that adding the shards' takes one sum
    G = np.zeros(W_E.size + W_pos.size + W_U.size + lnf_w.size + lnf_b.size + W_Q.size
                 + W_K.size + W_V.size + W_O.size + ln1_w.size + ln1_b.size + s.size
                 + W_in.size + b_in.size + W_out.size + b_out.size + ln2_w.size + ln2_b.size, dt)
    at = 0
    g_W_E, at = _view(G, at, W_E.shape)
    g_W_pos, at = _view(G, at, W_pos.shape)
    g_W_U, at = _view(G, at, W_U.shape)
    g_lnf_w, at = _view(G, at, (1, lnf_w.size))                 # [1, D]: LayerNorm's backward
    g_lnf_b, at = _view(G, at, (1, lnf_b.size))                 # sums into rows of partial sums
    g_W_Q, at = _view(G, at, W_Q.shape)
    g_W_K, at = _view(G, at, W_K.shape)
    g_W_V, at = _view(G, at, W_V.shape)
    g_W_O, at = _view(G, at, W_O.shape)
    g_ln1_w, at = _view(G, at, ln1_w.shape)
    g_ln1_b, at = _view(G, at, ln1_b.shape)
    g_s, at = _view(G, at, s.shape)
    g_W_in, at = _view(G, at, W_in.shape)
    g_b_in, at = _view(G, at, b_in.shape)
    g_W_out, at = _view(G, at, W_out.shape)
    g_b_out, at = _view(G, at, b_out.shape)
    g_ln2_w, at = _view(G, at, ln2_w.shape)
    g_ln2_b, at = _view(G, at, ln2_b.shape)

    _mm_tn(final, d_logits, g_W_U)                               # logits = final @ W_U
    if layernorm:                                                # final = LNfinal(x)
        _mm_nt(d_logits, W_U, tmp)
        _layernorm_backward(tmp, x, lnf_scale, lnf_w, d_x, g_lnf_w, g_lnf_b, 0, 1)
    else:
        _mm_nt(d_logits, W_U, d_x)
    for l in range(L - 1, -1, -1):
        if M:
            # x = x + post @ W_out + b_out
            _mm_tn(post[l], d_x, g_W_out[l])
            _add_row_sums(g_b_out[l], d_x)
            _mm_nt(d_x, W_out[l], d_post)                        # [R, M]
            _mul(d_pre, d_post, pre[l])                          # post = gelu(pre); pre
                                                                 # holds gelu'(pre) (forward)
            h2 = ln2[l] if layernorm else resid_mid[l]           # pre = h2 @ W_in + b_in
            _mm_tn(h2, d_pre, g_W_in[l])
            _add_row_sums(g_b_in[l], d_pre)
            _mm_nt(d_pre, W_in[l], tmp)                          # d h2 [R, D]
            if layernorm:                                        # h2 = LN2(x)
                _layernorm_backward(tmp, resid_mid[l], ln2_scale[l], ln2_w[l], d_h,
                                    g_ln2_w[l:l + 1], g_ln2_b[l:l + 1], 0, 1)
                _add(d_x, d_h)
            else:
                _add(d_x, tmp)
        # x = x + z @ W_O
        _mm_tn(z[l].reshape(R, HE), d_x, g_W_O[l])
        _mm_nt(d_x, W_O[l], d_z.reshape(R, HE))
        # z = softmax(q k'^T / sqrt(E) + mask) @ v, the pattern recomputed from lse
        _attention_backward(d_z, q[l], k[l], v[l], z[l], lse[l], scale, ninf,
                            d_q, d_k, d_v, 0, B * H)
        d_k_used = d_k
        if smeared:                                              # k' = smear(k)
            d_s_part[:] = 0
            _smear_backward(d_k, k_raw[l], s[l], d_k_raw, d_s_part, 0, B)
            for hh in range(H):
                acc = d_s_part[0, hh] - d_s_part[0, hh]
                for b in range(B):
                    acc += d_s_part[b, hh]
                g_s[l, hh] = acc * s[l, hh] * (1 - s[l, hh])     # d s / d smear = s (1 - s)
            d_k_used = d_k_raw
        h = ln1[l] if layernorm else resid_pre[l]
        qk_in = qk_ins[l] if shortformer else h
        d_q2, d_k2, d_v2 = d_q.reshape(R, HE), d_k_used.reshape(R, HE), d_v.reshape(R, HE)
        _mm_tn(qk_in, d_q2, g_W_Q[l])                            # q = qk_in @ W_Q
        _mm_tn(qk_in, d_k2, g_W_K[l])                            # k = qk_in @ W_K
        _mm_tn(h, d_v2, g_W_V[l])                                # v = h @ W_V
        _mm_nt(d_q2, W_Q[l], d_h)                                # d qk_in
        _mm_nt(d_k2, W_K[l], tmp)
        _add(d_h, tmp)
        if shortformer:                                          # qk_in = h + W_pos[:T]
            _pos_embed_backward(d_h.reshape(B, T, D), g_W_pos)
        _mm_nt(d_v2, W_V[l], tmp)                                # d h = d qk_in + d v's part
        _add(d_h, tmp)
        if layernorm:                                            # h = LN1(x), and x passes on
            _layernorm_backward(d_h, resid_pre[l], ln1_scale[l], ln1_w[l], tmp,
                                g_ln1_w[l:l + 1], g_ln1_b[l:l + 1], 0, 1)
            _add(d_x, tmp)
        else:
            _add(d_x, d_h)
    if not shortformer:                                          # x = W_E[t] + W_pos[:T]
        _pos_embed_backward(d_x.reshape(B, T, D), g_W_pos)
    _embed_backward(d_x.reshape(B, T, D), tokens, g_W_E)
    return loss, G


# --- the Python side: the params in, the gradients out -----------------------------------

_GRAD_NAMES = ("W_E", "W_pos", "W_U", "lnf_w", "lnf_b", "W_Q", "W_K", "W_V", "W_O", "ln1_w",
               "ln1_b", "s", "W_in", "b_in", "W_out", "b_out", "ln2_w", "ln2_b")
S_SLOT = _GRAD_NAMES.index("s")                 # where stacked() puts sigmoid(smear)


def stacked(params, cfg):
    """The params as _shard_step takes them: per-layer weights stacked over the layers and
    laid out for the products (W_Q, W_K, W_V [L, D, H*E], W_O [L, H*E, D]), absent ones
    (no LayerNorm, no MLP, no smearing) as empty arrays; and s = sigmoid(smear) [L, H]."""
    return gated(stacked_raw(params, cfg), cfg)


def gated(raw, cfg) -> tuple:
    """stacked_raw's weights as _shard_step takes them: s = sigmoid(smear) [L, H], in the
    smear's dtype, in place of the smear logits (zeros when the keys are not smeared)."""
    smear = raw[S_SLOT]
    if cfg.smeared_keys:
        s = np.ascontiguousarray((1.0 / (1.0 + np.exp(-smear))).astype(smear.dtype))
    else:
        s = np.zeros((cfg.n_layers, cfg.n_heads), smear.dtype)
    return tuple(raw[:S_SLOT]) + (s,) + tuple(raw[S_SLOT + 1:])


def stacked_raw(params, cfg, copy: bool = False):
    """stacked(), but with the smear logits themselves [L, H] in s's place: the layout of
    the gradients G (whose s entry is d loss / d smear), in which the fused training keeps
    the weights and AdamW's moments (minih/training/fused.py). Works on any dict with the
    params' keys and shapes (AdamW's m and v too). copy: fresh arrays only (else W_E,
    W_pos, W_U and LN final may be the params' own arrays)."""
    L, H, D, E, M = cfg.n_layers, cfg.n_heads, cfg.d_model, cfg.d_head, cfg.d_mlp
    dt = params["embed.W_E"].dtype

    def layers(name, shape):                                     # [L, *shape], or empty
        names = [f"blocks.{l}.{name}" for l in range(L)]
        if L == 0 or names[0] not in params:                     # (no layers: nothing to stack)
            # (0,) * len(shape), not tuple(0 for _ in shape): on CPython 3.11 that
            # generator kept 56 bytes alive per call, 352 bytes a training step
            return np.zeros((L,) + (shape if L == 0 else (0,) * len(shape)), dt)
        return np.ascontiguousarray(np.stack([params[n] for n in names]).reshape((L,) + shape))

    def heads_in(name):                                          # [H, D, E] -> [D, H*E]
        if L == 0:
            return np.zeros((0, D, H * E), dt)
        return np.ascontiguousarray(np.stack([params[f"blocks.{l}.attn.{name}"].transpose(1, 0, 2)
                                              for l in range(L)]).reshape(L, D, H * E))

    smear = layers("attn.smear", (H,)) if cfg.smeared_keys else np.zeros((L, H), dt)
    c = np.array if copy else np.ascontiguousarray
    lnf_w = c(params["ln_final.w"]) if cfg.layernorm else np.zeros(0, dt)
    lnf_b = c(params["ln_final.b"]) if cfg.layernorm else np.zeros(0, dt)
    return (c(params["embed.W_E"]), c(params["pos_embed.W_pos"]), c(params["unembed.W_U"]),
            lnf_w, lnf_b, heads_in("W_Q"), heads_in("W_K"), heads_in("W_V"),
            layers("attn.W_O", (H * E, D)), layers("ln1.w", (D,)), layers("ln1.b", (D,)),
            smear, layers("mlp.W_in", (D, M)), layers("mlp.b_in", (M,)),
            layers("mlp.W_out", (M, D)), layers("mlp.b_out", (D,)), layers("ln2.w", (D,)),
            layers("ln2.b", (D,)))


def unstacked(G, weights, cfg) -> dict:
    """_shard_step's flat gradients G, laid out as `weights` (stacked's), -> {param key:
    gradient} in the params' shapes, C-contiguous (views of G where no copy is needed)."""
    g, at = {}, 0
    for name, w in zip(_GRAD_NAMES, weights):
        g[name] = G[at:at + w.size].reshape(w.shape)
        at += w.size
    L, H, D, E = cfg.n_layers, cfg.n_heads, cfg.d_model, cfg.d_head
    c = np.ascontiguousarray
    grads = {"embed.W_E": g["W_E"], "pos_embed.W_pos": g["W_pos"]}
    for l in range(L):
        p = f"blocks.{l}."
        if cfg.layernorm:
            grads[p + "ln1.w"], grads[p + "ln1.b"] = g["ln1_w"][l], g["ln1_b"][l]
        for name in ("W_Q", "W_K", "W_V"):                       # [D, H*E] -> [H, D, E]
            grads[p + "attn." + name] = c(g[name][l].reshape(D, H, E).transpose(1, 0, 2))
        grads[p + "attn.W_O"] = g["W_O"][l].reshape(H, E, D)
        if cfg.smeared_keys:
            grads[p + "attn.smear"] = g["s"][l]
        if cfg.d_mlp:
            if cfg.layernorm:
                grads[p + "ln2.w"], grads[p + "ln2.b"] = g["ln2_w"][l], g["ln2_b"][l]
            for name in ("W_in", "b_in", "W_out", "b_out"):
                grads[p + "mlp." + name] = g[name][l]
    if cfg.layernorm:
        grads["ln_final.w"], grads["ln_final.b"] = g["lnf_w"], g["lnf_b"]
    grads["unembed.W_U"] = g["W_U"]
    return grads


def fused_step_applies(tokens) -> bool:
    """Whether fused_loss_and_grads is the faster path for this batch: always, except a
    batch of one shard too big for one thread (B*T >= MIN_SPLIT_POSITIONS), whose ops the
    op-by-op path splits over the threads."""
    B, T = np.shape(tokens)
    return len(shards.shard_bounds(B, T)) > 1 or B * T < shards.MIN_SPLIT_POSITIONS


_workspaces = threading.local()   # .ws: this thread's workspace, kept for its next shard


def workspace(n: int, dtype) -> np.ndarray:
    """This thread's workspace of at least n numbers of `dtype` (kept between calls).

    Why: a step's activations are the same sizes every step. Allocated afresh, each
    array above glibc's mmap threshold (128 KiB) was mapped, faulted in and zeroed by the
    system every step: induction-1l 3.35 ms a step against 2.52 ms with the memory kept
    (docs/04_numba.md, "The whole step in one kernel"). Kept here, no step allocates
    them, whatever the allocator's settings. One per thread, because the shards run side
    by side; each holds one shard's activations (REF: 14 MB), and the largest shard seen
    so far.
    """
    ws = getattr(_workspaces, "ws", None)
    if ws is None or ws.dtype != dtype or ws.size < n:
        ws = _workspaces.ws = np.empty(n, dtype=dtype)
    return ws


def fused_loss_and_grads(params, tokens, cfg):
    """model.loss_and_grads (numba) in one kernel call per shard: (loss, grads by param key).

    params and tokens are assumed checked (model.loss_and_grads does it). The shards are
    those of minih/kernels/shards.py, their means weighted by size as there.
    """
    weights = stacked(params, cfg)
    loss, G = flat_loss_and_grads(weights, tokens, cfg)
    return loss, unstacked(G, weights, cfg)


def flat_loss_and_grads(weights, tokens, cfg):
    """(loss, G) of a batch from stacked() weights: G every gradient, flat, in the layout
    of stacked_raw (each shard's kernel call, their means weighted by size)."""
    tokens = np.ascontiguousarray(tokens, dtype=np.int64)         # (checked by the caller)
    dt = weights[0].dtype
    flags = _flags(cfg, dt)

    def shard(t):
        losses = np.empty((t.shape[0], t.shape[1] - 1), dt)
        loss, G = _shard_step(np.ascontiguousarray(t), *weights, *flags,
                              _workspace_for(t, cfg, flags, dt), losses, True)
        return loss, {"G": G}

    loss, g = shards.over_batch_shards(shard, tokens)
    return float(loss), g["G"]


def fused_per_token_losses(params, tokens, cfg):
    """model.per_token_losses (numba) in one kernel call per shard, the forward alone:
    [B, T-1]. params and tokens are assumed checked (model.per_token_losses does it).

    Why: the snapshots' evaluation (64 sequences, 60 times a run) ran op by op at 0.6-0.8
    of a whole training step's time; see docs/04_numba.md.
    """
    tokens = np.ascontiguousarray(tokens, dtype=np.int64)
    weights = stacked(params, cfg)
    dt = weights[0].dtype
    flags = _flags(cfg, dt)
    B, T = tokens.shape
    losses = np.empty((B, T - 1), dt)

    def shard(b0, b1):
        t = tokens[b0:b1]
        _shard_step(t, *weights, *flags, _workspace_for(t, cfg, flags, dt), losses[b0:b1], False)

    shards.over_shards(shard, tokens)
    return losses


def _flags(cfg, dt) -> tuple:
    """_shard_step's arguments after the weights, up to the workspace."""
    gelu_consts, fast_exp = _gelu_constants(dt)                  # (float32: the fast exp)
    return (bool(cfg.layernorm), cfg.positional == "shortformer", bool(cfg.smeared_keys),
            dt.type(1 / np.sqrt(cfg.d_head)), dt.type(-np.inf), gelu_consts, fast_exp)


def _workspace_for(t, cfg, flags, dt) -> np.ndarray:
    """This thread's workspace, big enough for a shard of tokens t [B, T]."""
    B, T = t.shape
    layernorm, shortformer, smeared = flags[:3]
    return workspace(workspace_size(cfg.n_layers, B, T, cfg.d_model, cfg.n_heads, cfg.d_head,
                                    cfg.d_mlp, cfg.d_vocab, layernorm, shortformer, smeared), dt)
