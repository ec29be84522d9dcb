"""ModelConfig.init_pos="sinusoidal": W_pos starts as sines and cosines, everything else as usual."""
import numpy as np
import pytest

import minih
from minih.params import sinusoidal_positions


def test_sinusoidal_positions_formula():
    P = sinusoidal_positions(50, 8)
    i = np.arange(50)
    np.testing.assert_allclose(P[:, 0], np.sqrt(2) * np.sin(i))                  # frequency 1
    np.testing.assert_allclose(P[:, 3], np.sqrt(2) * np.cos(i / 10_000 ** (2 / 8)))
    assert abs((P ** 2).mean() - 1) < 0.05 * 2          # mean square ~1 (low frequencies are ~constant)


def test_other_weights_are_those_of_a_normal_init():
    cfg = minih.ModelConfig(init_pos="sinusoidal", init_pos_std=0.5)
    p, q = minih.init_params(cfg, 3), minih.init_params(cfg.replace(init_pos="normal"), 3)
    np.testing.assert_allclose(p["pos_embed.W_pos"], 0.5 * sinusoidal_positions(cfg.n_ctx, cfg.d_model),
                               rtol=1e-6, atol=1e-6)
    for k in p:
        if k != "pos_embed.W_pos":
            np.testing.assert_array_equal(p[k], q[k])
    with pytest.raises(ValueError, match="init_pos"):
        minih.ModelConfig(init_pos="rotary")
