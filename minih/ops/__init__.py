"""The NumPy reference backend: every op of the model as a readable forward/backward pair.

Each op is a pair of stateless functions, ``*_forward(...) -> outputs`` and
``*_backward(d_out, <what the forward computed>) -> gradients``. The backward takes
the tensors it needs explicitly (no hidden state), and quotes the forward line it
inverts. Everything here runs on the calling thread, one plain NumPy line at a time:
step into it with a debugger and you see the formula.

The Numba backend (minih.kernels) is this module with fast twins swapped in for some
ops: same names, same signatures, same numbers within the dtype's tolerance. So
minih.model runs on either (a backend is just a module), and an op added here works
in both backends at once.

Shape legend for all of minih:
    B = batch, T = sequence length (query position i, key position j),
    D = d_model, H = n_heads, E = d_head, V = d_vocab
"""
from .embedding import (embed_forward, embed_backward, pos_embed_backward, unembed_forward,
                        unembed_backward)
from .layernorm import (layernorm_scale, layernorm_normalize, layernorm_forward,
                        layernorm_backward, LN_EPS)
from .attention import (project_forward, project_backward, smear_forward, smear_backward,
                        attention_scores, attention_pattern, attention_z, attention_backward,
                        output_forward, output_backward, head_results)
from .mlp import linear_forward, linear_backward, gelu_forward, gelu_backward
from .loss import cross_entropy_forward, cross_entropy_backward, per_token_loss
from .adamw import adamw_update

NAME = "numpy"

# every op of the backend: minih.kernels takes these and replaces the ones it has twins for
__all__ = ["embed_forward", "embed_backward", "pos_embed_backward", "unembed_forward",
           "unembed_backward", "layernorm_scale", "layernorm_normalize", "layernorm_forward",
           "layernorm_backward", "LN_EPS", "project_forward", "project_backward",
           "smear_forward", "smear_backward", "attention_scores", "attention_pattern",
           "attention_z", "attention_backward", "output_forward", "output_backward",
           "head_results", "linear_forward", "linear_backward", "gelu_forward", "gelu_backward",
           "cross_entropy_forward", "cross_entropy_backward", "per_token_loss",
           "adamw_update"]
