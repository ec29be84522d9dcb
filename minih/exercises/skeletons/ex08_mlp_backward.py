"""Exercise 8: the backward pass of a whole MLP (models with MLPs).

Forward (minih.model.mlp_block, with the ops of minih/ops/mlp.py), at every position:
    pre     = h2 @ W_in + b_in           h2 [..., D], W_in [D, M], b_in [M]  -> [..., M]
    post    = gelu(pre)                  the tanh GELU of exercise 7         -> [..., M]
    mlp_out = post @ W_out + b_out       W_out [M, D], b_out [D]             -> [..., D]
The leading axes "..." are positions, e.g. [B, T]; the same weights serve all of them.

Fill in `mlp_backward`: given d_mlp_out = dL/d mlp_out and what the forward computed
(pre, post, h2) and the two weight matrices, return the tuple
    (d_h2 [..., D], d_W_in [D, M], d_b_in [M], d_W_out [M, D], d_b_out [D]).
Hints: go backwards through the three lines. For y = x @ W + b: d_x = d_y @ W^T per
position, while d_W = x^T @ d_y and d_b = sum of d_y are summed over every position
(flatten the leading axes first). Between the two linear maps, multiply by gelu'(pre):
your exercise 7 answer, or minih.ops.gelu_backward. d_h2 is the MLP's part only: the
model adds the residual stream's own d_x (and runs LN2's backward) outside this function.
Derivation: docs/02_backward.md, "The MLP". Check your answer with:
    python -m minih.exercises check 8
"""
import numpy as np


def mlp_backward(d_mlp_out, pre, post, h2, W_in, W_out):
    """d_mlp_out [..., D]; pre, post [..., M]; h2 [..., D]; W_in [D, M]; W_out [M, D]
    -> (d_h2 [..., D], d_W_in [D, M], d_b_in [M], d_W_out [M, D], d_b_out [D])"""
    raise NotImplementedError("fill in mlp_backward")
