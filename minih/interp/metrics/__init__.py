"""Every measurement of the papers, as pure functions (docs/05_metrics.md).

One module per purpose:
    losses      per-token loss, loss by position, ICL score, d loss / d log position
    phase       phase-change window on the ICL curve, the loss bump, curve departure
    pca         PCA of per-token losses over training
    patterns    head scores from attention patterns (hand-testable): previous-token,
                duplicate-token, prefix matching, TransformerLens head detector
    heads       the same for a model: run it, score every head at once [L, H]
    copying     empirical copying score
    circuits    full OV/QK circuits, eigenvalue copying, composition scores and
                baseline, K-composition QK trace
    positional  split of attention scores into token/position terms

None of them modifies its inputs.

Models with MLPs (d_mlp > 0): the scores read from a model run (losses, ICL score,
patterns: prefix matching, previous-token, duplicate-token, detectors, positional
split) run the whole model, MLPs included, and keep their definitions; the circuits
(circuits.py) read the attention weights only and ignore the MLPs; the empirical
copying score is a head's direct effect through its OV circuit, so later MLPs are
ignored there too.
"""
from .losses import (per_token_losses, loss_by_position, icl_indices, icl_score,
                     loss_log_position_derivative)
from .phase import (smooth_log, phase_change_window, steepest_fall, loss_bump, curve_departure,
                    PhaseWindow)
from .pca import loss_pca, turning_point, knee_point, LossPCA
from .patterns import (previous_token_score, duplicate_token_score, prefix_matching_score,
                       detection_pattern, detector_score, summed_attention,
                       previous_token_mask, duplicate_token_mask, induction_mask,
                       DETECTION_PATTERNS, ERROR_MEASURES)
from .heads import (candidate_tokens, prefix_matching_tokens, prefix_matching_scores,
                    previous_token_scores, duplicate_token_scores, detector_scores,
                    stacked_patterns, DEFAULT_BOS)
from .copying import (copying_tokens, direct_logits_per_source, copying_score_from_logits,
                      empirical_copying_scores)
from .circuits import (ln_linear, embed_through_ln, folded_weights, full_ov_circuits,
                       full_qk_circuits, eigenvalue_positivity, eigenvalue_copying_scores,
                       small_ov_circuits,
                       composition_score, composition_scores, composition_baseline,
                       composition_baseline_samples,
                       k_composition_qk_terms, k_composition_qk_trace, COMPOSITION_KINDS)
from .positional import score_terms, term_shares, positional_shares, TERMS
