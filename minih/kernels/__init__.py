"""The Numba backend: a fast twin of every op of minih.ops, with the same names and signatures.

Each function's docstring begins by naming the NumPy reference it mirrors, and
tests/test_kernels.py checks it against that reference (float64 and float32,
odd shapes, non-contiguous input). Plain matrix products (projections, output
projection, unembedding) call BLAS through numpy, in fixed row chunks spread over
the threads (minih/kernels/blas.py); everything else is a jitted kernel
(minih/kernels/_jit.py has the flags and the cache; minih/threads.py runs the
kernels and the products on NUMBA_NUM_THREADS threads). A training step splits its
batch instead, with either backend, when each shard holds at least 512 positions:
minih/shards.py computes fixed shards of it side by side, one thread each, every op
inside on that thread (and a batch under 2048 positions on the calling thread alone).
Read it beside the reference: docs/04_numba.md.

Shape legend: B = batch, T = positions, D = d_model, H = n_heads, E = d_head, V = d_vocab
"""
from .embedding import (embed_forward, embed_backward, pos_embed_backward, unembed_forward,
                        unembed_backward)
from .layernorm import layernorm_forward, layernorm_backward, LN_EPS
from .attention import (project_forward, project_backward, smear_forward, smear_backward,
                        attention_forward, attention_pattern, attention_backward, output_forward,
                        output_backward, head_results)
from .loss import cross_entropy_forward, cross_entropy_backward, per_token_loss
from .adamw import adamw_update
from ..shards import over_batch_shards      # the same function as minih.ops's (no jitted code)

NAME = "numba"
