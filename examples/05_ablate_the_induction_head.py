"""05 — remove each head in turn: which one carries the in-context learning?

Shows: the three ablations of minih.interp.ablation (zero, mean, pattern-preserving) applied
to every head of a 2-layer model, and their effect on the loss of the first and the
second copy of a repeated random segment. The second copy is predictable only by
looking back (in-context learning); the induction head's removal should undo that,
and no other head's should. By default on the hand-built induction model; pass a run
directory to ablate the last snapshot of a trained model.

Notice the pattern-preserving row for the previous-token head 0.0: nothing changes.
Its job is to shape the induction head's *attention* (K-composition), and pattern-
preserving ablation freezes every attention pattern; zero and mean ablation let the
induction head's pattern change, so they show head 0.0's role too.

Takes: a few seconds on a 2-core CPU.
Prints: for each head and each ablation, the loss on the first and second copies.

    python examples/05_ablate_the_induction_head.py [RUN_DIR] [--tiny]
"""
import numpy as np

import minih
from minih.interp.ablation import Ablation, ablated_per_token_losses
from _model import model_from_command_line             # examples/_model.py

cfg, params, run = model_from_command_line(d_vocab=64, n_ctx=48)
d_vocab = run.manifest["train"]["data"].get("d_vocab", cfg.d_vocab) if run else cfg.d_vocab

# 16 sequences: a random segment, then the same segment again
L = cfg.n_ctx // 2
rng = np.random.default_rng(0)
seg = rng.integers(0, d_vocab, size=(16, L))
tokens = np.concatenate([seg, seg], axis=1)                      # [16, 2L]
first, second = slice(0, L - 1), slice(L, 2 * L - 1)             # predictions inside each copy


def report(name, losses):                                        # losses [B, 2L-1]
    a, b = losses[:, first].mean(), losses[:, second].mean()
    print(f"{name:<28} first copy {a:6.3f}   second copy {b:6.3f}   in-context gain {a - b:6.3f}")


report("clean", minih.per_token_losses(params, tokens, cfg))
for kind in ("zero", "mean", "pattern"):
    print(f"--- {kind} ablation ---")
    for l in range(cfg.n_layers):
        for h in range(cfg.n_heads):
            losses = ablated_per_token_losses(params, tokens, cfg, Ablation([(l, h)], kind))
            report(f"without head {l}.{h}", losses)
