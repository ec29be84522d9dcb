"""Exercise 6: remove one head and see what the model loses (zero ablation).

Zero ablation deletes a head's write to the residual stream: in layer l,
    x = x + sum over heads h' != h of z_h' @ W_O[h']
and everything after it is recomputed. The induction-heads paper uses ablations
like this to show that induction heads *cause* in-context learning (Argument 3).

Fill in `zero_ablated_logits(params, tokens, cfg, layer, head)`: the logits [B,T,V]
of the model with that head's output removed. You may call anything in minih;
`minih.run_with_cache` and the forward pass in minih/model.py show every step.
Do not modify `params`.
Check with:
    python -m minih.exercises check 6
"""
import numpy as np

import minih


def zero_ablated_logits(params, tokens, cfg, layer, head):
    """-> logits [B, T, V] with head (layer, head) removed"""
    raise NotImplementedError("fill in zero_ablated_logits")
