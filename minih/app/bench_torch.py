"""The same model in PyTorch, for `python -m minih bench` only (never a dependency).

It is the model a user would write in PyTorch instead of using minih, with minih's
architecture: heads kept separate, LayerNorm on every read of the residual stream (when
the config says so), shortformer or standard positions, smeared keys (when the config
says so), F.scaled_dot_product_attention (PyTorch's fused causal attention), an MLP
with the tanh GELU after each attention layer when d_mlp > 0, unembedding,
cross-entropy, AdamW. torch is imported inside the functions, so importing this
module costs nothing when torch is absent.

Shape legend: B = batch, T = positions, D = d_model, H = n_heads, E = d_head, V = d_vocab,
M = d_mlp
"""
from __future__ import annotations

import math
import time


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def _model(cfg):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    class Transformer(nn.Module):
        def __init__(self):
            super().__init__()
            D, H, E, L, M = cfg.d_model, cfg.n_heads, cfg.d_head, cfg.n_layers, cfg.d_mlp
            self.W_E = nn.Parameter(torch.randn(cfg.d_vocab, D))
            self.W_pos = nn.Parameter(torch.randn(cfg.n_ctx, D))
            self.W_QKV = nn.ParameterList([nn.Parameter(torch.randn(3, H, D, E) / math.sqrt(D))
                                           for _ in range(L)])
            self.W_O = nn.ParameterList([nn.Parameter(torch.randn(H, E, D) / math.sqrt(H * E))
                                         for _ in range(L)])
            self.smear = nn.ParameterList([nn.Parameter(torch.zeros(H))
                                           for _ in range(L if cfg.smeared_keys else 0)])
            self.lns = nn.ModuleList([nn.LayerNorm(D) if cfg.layernorm else nn.Identity()
                                      for _ in range(L)])
            # the MLPs: LN2, then D -> M -> D with biases (nn.Linear), as minih's d_mlp > 0
            self.ln2s = nn.ModuleList([nn.LayerNorm(D) if cfg.layernorm else nn.Identity()
                                       for _ in range(L if M else 0)])
            self.mlps = nn.ModuleList([nn.Sequential(nn.Linear(D, M), nn.GELU(approximate="tanh"),
                                                     nn.Linear(M, D)) for _ in range(L if M else 0)])
            self.ln_f = nn.LayerNorm(D) if cfg.layernorm else nn.Identity()
            self.W_U = nn.Parameter(torch.randn(D, cfg.d_vocab) / math.sqrt(D))

        def forward(self, tokens):
            B, T = tokens.shape
            pos = self.W_pos[:T]                                         # [T,D]
            shortformer = cfg.positional == "shortformer"
            x = self.W_E[tokens] + (0 if shortformer else pos)           # [B,T,D]
            for l in range(cfg.n_layers):
                h = self.lns[l](x)
                W_QKV = self.W_QKV[l]
                if shortformer:                          # positions enter queries and keys only
                    q, k = torch.einsum("btd,shde->sbhte", h + pos, W_QKV[:2])
                    v = torch.einsum("btd,hde->bhte", h, W_QKV[2])
                else:
                    q, k, v = torch.einsum("btd,shde->sbhte", h, W_QKV)
                if cfg.smeared_keys:                     # k'[j] = s k[j] + (1 - s) k[j-1]
                    s = torch.sigmoid(self.smear[l])[None, :, None, None]
                    k = torch.cat([k[:, :, :1], s * k[:, :, 1:] + (1 - s) * k[:, :, :-1]], dim=2)
                z = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # [B,H,T,E]
                x = x + torch.einsum("bhte,hed->btd", z, self.W_O[l])
                if cfg.d_mlp:
                    x = x + self.mlps[l](self.ln2s[l](x))                # [B,T,D] via [B,T,M]
            return self.ln_f(x) @ self.W_U                               # [B,T,V]

    return Transformer()


def torch_tokens_per_s(cfg, batch: int, steps: int, warmup: int, threads: int,
                       compiled: bool, seed: int = 0) -> dict:
    """Median training-step time of the PyTorch model (eager or torch.compile'd).

    A step: forward, next-token cross-entropy over T-1 predictions (as minih),
    backward, AdamW. Tokens per second count the B*T positions of the batch.
    """
    import numpy as np
    import torch
    import torch.nn.functional as F

    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    model = _model(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    tokens = torch.randint(0, cfg.d_vocab, (batch, cfg.n_ctx))

    def step():
        logits = model(tokens)
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, cfg.d_vocab), tokens[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    f = torch.compile(step) if compiled else step
    t0 = time.perf_counter()
    f()                                                  # the first call compiles
    first = time.perf_counter() - t0
    for _ in range(warmup):
        f()
    times = []
    c0 = time.process_time()
    for _ in range(steps):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    cpu = (time.process_time() - c0) / steps
    med = float(np.median(times))
    return {"impl": "torch.compile" if compiled else "torch eager", "torch": torch.__version__,
            "threads": torch.get_num_threads(), "first_step_s": first, "median_step_s": med,
            "step_times_s": times, "tokens_per_s": batch * cfg.n_ctx / med,
            "cpu_s_per_step": cpu, "tokens_per_cpu_s": batch * cfg.n_ctx / cpu}
