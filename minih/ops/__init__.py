"""The NumPy reference backend: every op of the model as a readable forward/backward pair.

Each op is a pair of stateless functions, ``*_forward(...) -> outputs`` and
``*_backward(d_out, <what the forward computed>) -> gradients``. The backward takes
the tensors it needs explicitly (no hidden state), and quotes the forward line it
inverts. The Numba backend (minih.kernels) exports the same names with the same
signatures, so minih.model can run on either: a backend is just a module.

Shape legend for all of minih:
    B = batch, T = sequence length (query position i, key position j),
    D = d_model, H = n_heads, E = d_head, V = d_vocab
"""
from .embedding import (embed_forward, embed_backward, pos_embed_backward, unembed_forward,
                        unembed_backward)
from .layernorm import layernorm_forward, layernorm_backward, LN_EPS
from .attention import (project_forward, project_backward, smear_forward, smear_backward,
                        attention_forward, attention_pattern, attention_backward, output_forward,
                        output_backward, head_results)
from .loss import cross_entropy_forward, cross_entropy_backward, per_token_loss
from .adamw import adamw_update
from ..shards import over_batch_shards      # the batch in shards on the threads: both backends

NAME = "numpy"
