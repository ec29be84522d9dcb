"""Exercise 4: the prefix-matching score of an attention head (induction-heads paper).

An induction head, at a token A, looks back for earlier copies of A and attends to
the token that came *after* each copy. The prefix-matching score measures that:

    for each query i that has at least one earlier copy of its token:
        s_i = sum of pattern[i, j] over keys j with tokens[j-1] == tokens[i] and j-1 < i
    score = mean of s_i over those queries (and over the batch)

Fill in `prefix_matching_score`: pattern [B, H, T, T] (rows = queries, sum to 1),
tokens [B, T] -> one score per head, [H]. Do not modify the inputs.
Hint: build a boolean [B, T, T] mask of the "matching" keys first.
Check with:
    python -m minih.exercises check 4
"""
import numpy as np


def prefix_matching_score(pattern, tokens):
    """pattern [B,H,T,T], tokens [B,T] -> [H]"""
    raise NotImplementedError("fill in prefix_matching_score")
