"""Solution to exercise 6: zero ablation.

A head's write is z_h @ W_O[h]; zeroing W_O[h] removes exactly that write and
nothing else, so the simplest correct answer runs the model with W_O[h] = 0 on a copy
of the parameters. (minih/interp/ablation.py does it inside the forward pass instead, which
also gives mean and pattern-preserving ablation.)
"""
import numpy as np

import minih


def zero_ablated_logits(params, tokens, cfg, layer, head):
    """-> logits [B, T, V] with head (layer, head) removed"""
    ablated = dict(params)                                          # a new dict ...
    W_O = params[f"blocks.{layer}.attn.W_O"].copy()                 # ... and a new W_O
    W_O[head] = 0.0
    ablated[f"blocks.{layer}.attn.W_O"] = W_O
    logits, _ = minih.run_with_cache(ablated, tokens, cfg)
    return logits
