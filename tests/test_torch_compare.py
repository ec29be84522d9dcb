"""Optional outside check: minih's loss and gradients equal PyTorch autograd's on the
same parameters (float64). Skips when torch is not installed; torch is never a
dependency of minih. The torch model below is written independently from the forward
pass as docs/01_notation.md states it, not from minih's code."""
import itertools
import math

import numpy as np
import pytest

import minih

torch = pytest.importorskip("torch")


def torch_loss(P, tokens, cfg):
    t = torch.as_tensor(tokens)
    T = t.shape[1]
    pos = P["pos_embed.W_pos"][:T]

    def ln(x, w, b):
        mu = x.mean(-1, keepdim=True)
        var = ((x - mu) ** 2).mean(-1, keepdim=True)
        return (x - mu) / torch.sqrt(var + 1e-5) * w + b

    x = P["embed.W_E"][t] + (pos if cfg.positional == "standard" else 0)
    mask = torch.triu(torch.ones(T, T, dtype=torch.bool), 1)
    for l in range(cfg.n_layers):
        a = f"blocks.{l}."
        h = ln(x, P[a + "ln1.w"], P[a + "ln1.b"]) if cfg.layernorm else x
        qk_in = h + pos if cfg.positional == "shortformer" else h
        q = torch.einsum("btd,hde->bhte", qk_in, P[a + "attn.W_Q"])
        k = torch.einsum("btd,hde->bhte", qk_in, P[a + "attn.W_K"])
        v = torch.einsum("btd,hde->bhte", h, P[a + "attn.W_V"])
        if cfg.smeared_keys:
            s = torch.sigmoid(P[a + "attn.smear"])[None, :, None, None]
            k = torch.cat([k[:, :, :1], s * k[:, :, 1:] + (1 - s) * k[:, :, :-1]], dim=2)
        scores = (q @ k.transpose(-1, -2) / math.sqrt(cfg.d_head)).masked_fill(mask, float("-inf"))
        z = torch.softmax(scores, -1) @ v
        x = x + torch.einsum("bhte,hed->btd", z, P[a + "attn.W_O"])
        if cfg.d_mlp:
            h2 = ln(x, P[a + "ln2.w"], P[a + "ln2.b"]) if cfg.layernorm else x
            pre = h2 @ P[a + "mlp.W_in"] + P[a + "mlp.b_in"]
            # torch's own tanh GELU (GPT-2's gelu_new), not minih's formula written again
            post = torch.nn.functional.gelu(pre, approximate="tanh")
            x = x + post @ P[a + "mlp.W_out"] + P[a + "mlp.b_out"]
    if cfg.layernorm:
        x = ln(x, P["ln_final.w"], P["ln_final.b"])
    logits = x @ P["unembed.W_U"]
    return torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, cfg.d_vocab),
                                             t[:, 1:].reshape(-1))


@pytest.mark.parametrize("n_layers,layernorm,positional,smeared,d_mlp",
                         itertools.product([0, 1, 3], [True, False], ["shortformer", "standard"],
                                           [False, True], [0, 7]))
@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_loss_and_grads_match_torch(n_layers, layernorm, positional, smeared, d_mlp, backend):
    cfg = minih.ModelConfig(n_layers=n_layers, n_heads=3, d_model=12, d_head=5, n_ctx=9,
                            d_vocab=17, layernorm=layernorm, positional=positional,
                            smeared_keys=smeared, smear_init=0.4, d_mlp=d_mlp, dtype="float64")
    params = minih.init_params(cfg, seed=n_layers)
    rng = np.random.default_rng(2)
    for key in params:                 # biases start at 0: make them count
        if key.endswith(("b_in", "b_out")):
            params[key] = rng.normal(size=params[key].shape)
    tokens = np.random.default_rng(1).integers(0, cfg.d_vocab, (4, 9))
    loss, grads = minih.loss_and_grads(params, tokens, cfg, backend=backend)
    P = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    ref = torch_loss(P, tokens, cfg)
    ref.backward()
    # float64 on both sides: only summation order differs (~1e-15 relative)
    assert loss == pytest.approx(ref.item(), rel=1e-12)
    for key in params:
        # torch leaves .grad unset for unused parameters (W_pos with 0 shortformer layers)
        ref_grad = P[key].grad.numpy() if P[key].grad is not None else np.zeros_like(params[key])
        np.testing.assert_allclose(grads[key], ref_grad, rtol=1e-9, atol=1e-12, err_msg=key)
