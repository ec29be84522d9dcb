"""01 — the forward pass by hand, checked against minih.

Shows: every line of the forward pass of docs/01_notation.md written out with plain
NumPy for a 1-layer model (LayerNorm, shortformer positions), and that it gives exactly
the logits and attention pattern of `minih.run_with_cache`. Read it next to that chapter.

Takes: well under a second on a 2-core CPU.
Prints: the shapes of the main activations and the largest difference from minih
(~1e-15 in float64).

    python examples/01_forward_by_hand.py [--tiny]
"""
import argparse

import numpy as np

import minih

parser = argparse.ArgumentParser()
parser.add_argument("--tiny", action="store_true", help="smaller model (used by the test suite)")
args = parser.parse_args()

cfg = minih.ModelConfig(n_layers=1, n_heads=2, d_model=16 if not args.tiny else 8, d_head=4,
                        n_ctx=10, d_vocab=20, dtype="float64")
params = minih.init_params(cfg, seed=0)
tokens = np.random.default_rng(0).integers(0, cfg.d_vocab, size=(1, 10))   # [B=1, T=10]
B, T = tokens.shape


def layernorm(x, w, b):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)              # biased variance
    return (x - mean) / np.sqrt(var + 1e-5) * w + b


# 1. embed the tokens (shortformer: no positions in the residual stream)
x = params["embed.W_E"][tokens]                                  # [B, T, D]
W_pos = params["pos_embed.W_pos"][:T]                            # [T, D]
# 2. one attention layer
h = layernorm(x, params["blocks.0.ln1.w"], params["blocks.0.ln1.b"])  # [B, T, D]
qk_in = h + W_pos                                                # positions only into q and k
out = np.zeros_like(x)
patterns = []
for head in range(cfg.n_heads):
    q = qk_in @ params["blocks.0.attn.W_Q"][head]                # [B, T, E]
    k = qk_in @ params["blocks.0.attn.W_K"][head]                # [B, T, E]
    v = h @ params["blocks.0.attn.W_V"][head]                    # [B, T, E]
    scores = q @ k.transpose(0, 2, 1) / np.sqrt(cfg.d_head)      # [B, T, T]
    scores[:, np.triu(np.ones((T, T), bool), k=1)] = -np.inf     # query i sees keys j <= i
    pattern = np.exp(scores - scores.max(-1, keepdims=True))
    pattern /= pattern.sum(-1, keepdims=True)                    # softmax over keys
    patterns.append(pattern)
    z = pattern @ v                                              # [B, T, E]
    out += z @ params["blocks.0.attn.W_O"][head]                 # this head's write, [B, T, D]
x = x + out
# 3. unembed
logits = layernorm(x, params["ln_final.w"], params["ln_final.b"]) @ params["unembed.W_U"]  # [B, T, V]

ref_logits, cache = minih.run_with_cache(params, tokens, cfg)
print(f"tokens {tokens.shape}, residual stream {x.shape}, pattern per head {patterns[0].shape}, "
      f"logits {logits.shape}")
print(f"max |logits - minih|  = {np.abs(logits - ref_logits).max():.1e}")
print(f"max |pattern - minih| = {np.abs(np.stack(patterns, 1) - cache['blocks.0.attn.hook_pattern']).max():.1e}")
assert np.allclose(logits, ref_logits, atol=1e-12)
