"""The hand-built induction model (minih/interp/handbuilt.py) does what its docstring says.

Oracle: the construction itself. Attention scores are designed to be exactly
`strength` on the intended keys and 0 (or -strength) elsewhere, so the attention
weights and losses it implies can be computed by hand and compared.
"""
import numpy as np
import pytest

import minih
from minih.interp.handbuilt import induction_model, repeated_random_tokens, slots


@pytest.fixture(scope="module", params=[1, 3], ids=["1head", "3heads"])
def model(request):
    return induction_model(d_vocab=16, n_ctx=48, n_heads=request.param)


def test_config_and_params_are_valid(model):
    cfg, params = model
    minih.check_params(params, cfg)                  # raises on any wrong key/shape/dtype
    assert (cfg.layernorm, cfg.positional, cfg.dtype) == (False, "shortformer", "float64")
    assert cfg.d_model == 3 * 16 + 48


def test_layer0_head_attends_to_previous_token(model):
    cfg, params = model
    tokens = repeated_random_tokens(cfg.d_vocab, 12, n_repeats=3, batch=4, seed=1)
    _, cache = minih.run_with_cache(params, tokens, cfg)
    A = cache["blocks.0.attn.hook_pattern"][:, 0]                 # [B,T,T]
    T = tokens.shape[1]
    # designed: score 30 on key i-1, 0 on the other <= i keys, so weight on i-1 is
    # e^30 / (e^30 + i) >= 1 - T e^-30 ~ 1 - 4e-12; 1e-9 leaves room for float64 sums
    assert np.all(A[:, np.arange(1, T), np.arange(T - 1)] > 1 - 1e-9)
    # its OV writes the attended token into the PREV slot: PREV holds t[i-1]
    prev = cache["blocks.0.hook_resid_post"][..., slots(cfg.d_vocab, cfg.n_ctx)["PREV"]]
    onehot_prev = np.eye(cfg.d_vocab)[tokens[:, :-1]]             # [B,T-1,V]
    # unrelated heads (std 0.02 weights) may add up to ~0.1 to each entry; 0.2 is a safe bound
    assert np.abs(prev[:, 1:] - onehot_prev).max() < 0.2


def test_layer1_head_attends_to_token_after_earlier_copy(model):
    cfg, params = model
    seg = 12
    tokens = repeated_random_tokens(cfg.d_vocab, seg, n_repeats=2, batch=4, seed=2)
    _, cache = minih.run_with_cache(params, tokens, cfg)
    A = cache["blocks.1.attn.hook_pattern"][:, 0]                 # [B,T,T]
    i = np.arange(seg, 2 * seg)                                    # queries of the second repeat
    # the one matching key is i - seg + 1 (for the last query i = 2seg-1 it is seg, itself
    # part of the second repeat); designed margin 30 with noise << 1 -> weight > 1 - 1e-9
    assert np.all(A[:, i, i - seg + 1] > 1 - 1e-9)


def test_low_loss_on_second_repeat_high_on_first(model):
    cfg, params = model
    seg = 12
    tokens = repeated_random_tokens(cfg.d_vocab, seg, n_repeats=2, batch=8, seed=3)
    L = minih.per_token_losses(params, tokens, cfg)                # [B, 2*seg-1]
    first, second = L[:, : seg - 1].mean(), L[:, seg:].mean()
    # oracle: perfect copying leaves loss log(1 + (V-1) e^-15) ~ 5e-6 nats per token
    assert second < 1e-3
    # first repeat: no earlier copy; the model copies wrong earlier tokens -> above chance
    assert first > np.log(cfg.d_vocab)


def test_zeroing_the_induction_head_removes_the_icl(model):
    cfg, params = model
    tokens = repeated_random_tokens(cfg.d_vocab, 12, n_repeats=2, batch=4, seed=4)
    ablated = {k: v.copy() for k, v in params.items()}
    ablated["blocks.1.attn.W_O"][0] = 0.0
    L = minih.per_token_losses(ablated, tokens, cfg)
    if cfg.n_heads == 1:
        # oracle: with head 1.0 gone nothing reaches the OUT slot: logits all 0, loss = log V
        np.testing.assert_allclose(L, np.log(cfg.d_vocab), rtol=1e-12)
    else:
        # unrelated heads write ~0.02-scale noise, logits stay within ~1 of 0
        assert abs(L[:, 12:].mean() - np.log(cfg.d_vocab)) < 0.5


def test_other_std_zero_makes_unrelated_heads_exactly_silent():
    cfg, params = induction_model(d_vocab=8, n_ctx=16, n_heads=2, other_std=0.0)
    tokens = repeated_random_tokens(8, 8, n_repeats=2, seed=0)
    _, cache = minih.run_with_cache(params, tokens, cfg)
    for l in range(2):
        assert np.all(cache[f"blocks.{l}.attn.hook_result"][:, :, 1] == 0)
        A = cache[f"blocks.{l}.attn.hook_pattern"][0, 1]           # zero QK -> uniform attention
        np.testing.assert_allclose(A[5, :6], 1 / 6, rtol=1e-12)


def test_bad_arguments():
    with pytest.raises(ValueError, match="d_vocab"):
        induction_model(d_vocab=1)
    with pytest.raises(ValueError, match="n_heads"):
        induction_model(n_heads=0)
    with pytest.raises(ValueError, match="other_std"):
        induction_model(other_std=-1.0)
