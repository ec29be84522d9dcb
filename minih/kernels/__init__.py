"""The Numba backend: the NumPy reference (minih.ops) with fast twins swapped in.

This module starts from every op of minih.ops and replaces those it has a twin for
(TWINS) by a jitted or BLAS version with the same name and signature; an op without a
twin runs the reference itself. So an op is written once, in minih/ops/, and works in
both backends; a twin is an optional optimisation. Each twin's docstring begins by
naming the reference it mirrors, and tests/test_kernels.py checks it against that
reference (float64 and float32, odd shapes, non-contiguous input).

Besides the twins, four speed tricks that exist only here:
  - FUSED: fused_attention_forward / fused_attention_backward do the reference's four
    attention passes in one kernel each, keeping each row's log-sum-exp instead of the
    [B,H,T,T] pattern and recomputing the pattern in the backward. minih.model uses
    them for training, where nothing reads or edits the scores or the pattern.
  - threads: plain matrix products (projections, output projection, unembedding) call
    BLAS through numpy, in fixed row chunks spread over the threads (kernels/blas.py);
    the jitted kernels (kernels/_jit.py has the flags and the cache) split their items
    over the same pool (kernels/threads.py, NUMBA_NUM_THREADS threads).
  - shards: a training step splits its batch, when each shard holds at least 512
    positions, into fixed shards computed side by side, one thread each, every op inside
    on that thread (kernels/shards.py, over_batch_shards; a batch under 2048 positions
    runs on the calling thread alone). The shards depend on B and T alone, so the bits
    of a step do not depend on the thread count.
  - the whole step: fused_loss_and_grads runs each shard's forward, loss and backward
    as one kernel call (kernels/step.py), the kernels above and BLAS's gemm called from
    inside it, with Python's lock released throughout; model.loss_and_grads uses it
    whenever the batch is in shards or small enough for one thread (fused_step_applies),
    and model.per_token_losses its forward alone (fused_per_token_losses).
Read it beside the reference: docs/04_numba.md.

Shape legend: B = batch, T = positions, D = d_model, H = n_heads, E = d_head, V = d_vocab
"""
from ..ops import *                              # noqa: F401,F403  every reference op, then:
from .embedding import (embed_forward, embed_backward, pos_embed_backward, unembed_forward,
                        unembed_backward)
from .layernorm import layernorm_forward, layernorm_backward
from .attention import (project_forward, project_backward, smear_forward, smear_backward,
                        attention_scores, attention_pattern, output_forward, output_backward,
                        head_results, fused_attention_forward, fused_attention_backward)
from .mlp import gelu_forward, gelu_backward
from .loss import cross_entropy_forward, cross_entropy_backward, per_token_loss
from .adamw import adamw_update
from .shards import over_batch_shards
from .step import fused_loss_and_grads, fused_per_token_losses, fused_step_applies

NAME = "numba"

# the reference ops replaced by a twin (the others are minih.ops's own functions: the
# MLP's linear maps among them, one BLAS call already, kernels/mlp.py)
TWINS = ("embed_forward", "embed_backward", "pos_embed_backward", "unembed_forward",
         "unembed_backward", "layernorm_forward", "layernorm_backward", "project_forward",
         "project_backward", "smear_forward", "smear_backward", "attention_scores",
         "attention_pattern", "output_forward",
         "output_backward", "head_results", "gelu_forward", "gelu_backward",
         "cross_entropy_forward", "cross_entropy_backward", "per_token_loss", "adamw_update")
# ops with no reference of their own: the fused attention (checked against the passes)
# and the whole step (checked against model.loss_and_grads and model.per_token_losses
# with the reference ops)
FUSED = ("fused_attention_forward", "fused_attention_backward", "fused_loss_and_grads",
         "fused_per_token_losses")
