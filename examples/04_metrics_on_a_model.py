"""04 — every head score of the papers, on one model.

Shows: the head scores of minih.metrics computed for every head at once: prefix
matching, previous-token, duplicate-token, both copying scores, the TransformerLens
head-detector score for induction heads, and the K-composition of each layer-0 head
into each layer-1 head against its random baseline. By default on minih's hand-built
induction model (minih/interp/handbuilt.py), where the right answers are known: head 0.0
is a previous-token head, head 1.0 the induction head. Pass a run directory to score
the last snapshot of a trained model instead.

Takes: a few seconds on a 2-core CPU.
Prints: one table row per head, then the K-composition matrix.

    python examples/04_metrics_on_a_model.py [RUN_DIR] [--tiny]
"""
import numpy as np

from minih.interp import metrics
from _model import explain_nan_copying, model_from_command_line  # examples/_model.py

cfg, params, run = model_from_command_line(d_vocab=32, n_ctx=48)
if run is not None:
    text = run.eval_tokens
else:                     # evaluation text: random tokens with a repeated segment
    rng = np.random.default_rng(0)
    seg = rng.integers(0, cfg.d_vocab, size=(8, 12))
    text = np.concatenate([seg, rng.integers(0, cfg.d_vocab, size=(8, 6)), seg], axis=1)

scores = {
    "prefix matching": metrics.prefix_matching_scores(params, cfg),
    "previous token": metrics.previous_token_scores(params, cfg, text),
    "duplicate token": metrics.duplicate_token_scores(params, cfg, text),
    "copying (empirical)": metrics.empirical_copying_scores(params, cfg),
    "copying (eigenvalues)": metrics.eigenvalue_copying_scores(params, cfg),
    "TL detector: induction": metrics.detector_scores(params, cfg, text, "induction_head"),
}
print(f"{'head':>5} " + " ".join(f"{name:>22}" for name in scores))
for l in range(cfg.n_layers):
    for h in range(cfg.n_heads):
        print(f"{l:>3}.{h} " + " ".join(f"{s[l, h]:>22.3f}" for s in scores.values()))
explain_nan_copying(scores["copying (eigenvalues)"])

if cfg.n_layers >= 2:
    K = metrics.composition_scores(params, cfg)["K"][0, :, 1, :]      # [layer-0 head, layer-1 head]
    base = metrics.composition_baseline(cfg.d_model, cfg.d_head)
    print(f"\nK-composition, layer 0 (rows) into layer 1 (columns); random baseline {base:.3f}")
    for h0 in range(cfg.n_heads):
        print(f"  0.{h0}  " + "  ".join(f"{v:.3f}" for v in K[h0]))
