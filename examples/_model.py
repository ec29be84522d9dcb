"""Shared by examples 04, 05 and 07: the model they study, from the command line, and
one note they print.

    cfg, params, run = model_from_command_line(d_vocab=32, n_ctx=48)

With a run directory argument: the last snapshot of that run (run is the minih Run).
Without: minih's hand-built induction model (minih/interp/handbuilt.py), whose answers are
known: head 0.0 attends to the previous token, head 1.0 is the induction head (run is
None). --tiny shrinks the hand-built model for the test suite.

    explain_nan_copying(eigenvalue_scores)   # after a table with the eigenvalue copying score
"""
import argparse

import numpy as np

import minih
from minih.interp.handbuilt import induction_model


def model_from_command_line(d_vocab: int, n_ctx: int):
    parser = argparse.ArgumentParser()
    parser.add_argument("run", nargs="?", help="a run directory (default: the hand-built model)")
    parser.add_argument("--tiny", action="store_true", help="a smaller hand-built model (for tests)")
    args = parser.parse_args()
    if args.run:
        run = minih.load_run(args.run)
        print(f"the last snapshot (step {run.steps[-1]}) of {args.run}")
        return run.cfg, run.params(len(run) - 1), run
    print("the hand-built induction model (head 0.0: previous token; head 1.0: induction)")
    cfg, params = induction_model(d_vocab=16 if args.tiny else d_vocab, n_ctx=n_ctx, n_heads=2)
    return cfg, params, None


def explain_nan_copying(eigenvalue_scores):
    """Say why a head's eigenvalue copying score (metrics.eigenvalue_copying_scores) is nan."""
    if np.isnan(eigenvalue_scores).any():
        print("(nan eigenvalue copying score: that head's full OV circuit W_E W_V W_O W_U is zero, "
              "what it writes reaches no logit directly (as for the hand-built previous-token "
              "head, which writes only for a later head to read), and sum/sum|.| of zero "
              "eigenvalues is undefined; docs/05_metrics.md)")
