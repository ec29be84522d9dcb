"""07 — circuits: what the weights say before any data goes in, and the path expansion.

Shows: on the hand-built induction model (or the last snapshot of a run),
1. the full OV circuit of each head, W_E W_V W_O W_U [V, V]: a copying head has a
   large diagonal (its "attended token -> same logit" entries stand out);
2. how much of each head's attention score comes from positions alone (the
   position-position term of the score split), which is what a previous-token head uses;
3. the path expansion of the Framework paper with patterns frozen: how much the loss
   rises without the direct path, each single head, and each virtual head h2∘h1.

Why does the virtual head L1H0∘L0H0 (induction head after previous-token head) score
zero? With patterns frozen, the previous-token head helps the induction head through
its *pattern* (K-composition), which the expansion holds fixed; a virtual head term
is V-composition only. The path expansion and the circuits answer different questions.

Takes: a few seconds on a 2-core CPU.
Prints: per head, the OV diagonal rank statistic and the positional share; then the
path terms sorted by importance.

    python examples/07_circuits_and_paths.py [RUN_DIR] [--tiny]
"""
import numpy as np

from minih.interp import metrics
from minih.interp.paths import term_importance
from _model import explain_nan_copying, model_from_command_line  # examples/_model.py

cfg, params, run = model_from_command_line(d_vocab=32, n_ctx=40)
if run is not None:
    tokens, scored = run.eval_tokens[:16], slice(None)           # every prediction
else:
    seg = np.random.default_rng(0).integers(0, cfg.d_vocab, size=(8, 20))
    tokens = np.concatenate([seg, seg], axis=1)                  # a segment, then again
    scored = slice(20, None)      # predictions in the second copy, where induction pays

# 1. full OV circuits [L, H, V, V]: for each source token, is its own logit the top one?
ov = metrics.full_ov_circuits(params, cfg)
# 2. share of each head's attention scores that comes from positions alone
shares = metrics.positional_shares(params, cfg, tokens)
print(f"{'head':>5} {'OV: own token ranks first':>26} {'OV eigen copying':>17} {'pos-pos share':>14}")
eig = metrics.eigenvalue_copying_scores(params, cfg)
for l in range(cfg.n_layers):
    for h in range(cfg.n_heads):
        own_first = np.mean(np.argmax(ov[l, h], axis=1) == np.arange(cfg.d_vocab))
        print(f"{l:>3}.{h} {own_first:>26.2f} {eig[l, h]:>17.2f} {shares['position_position'][l, h]:>14.2f}")
explain_nan_copying(eig)

# 3. path expansion: loss without each term, patterns and LayerNorm scales frozen
result = term_importance(params, tokens, cfg, positions=scored)
print(f"\nclean loss {result['loss']:.3f}; loss using only paths of order <= k:",
      ", ".join(f"k={k}: {v:.3f}" for k, v in result["order_loss"].items()))
print("terms by importance (loss without the term minus clean loss):")
for term in sorted(result["terms"], key=lambda t: -t["importance"])[:8]:
    print(f"  order {term['order']}  {term['name']:<22} {term['importance']:+.3f}")
