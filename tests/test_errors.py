"""Bad input gets a ValueError that says what was wrong and what is allowed."""
import numpy as np
import pytest

import minih

CFG = minih.ModelConfig.preset("tiny")
PARAMS = minih.init_params(CFG)
GOOD = np.zeros((2, 4), dtype=np.int64)


@pytest.mark.parametrize("tokens,match", [
    (np.array([[0, 11]]), r"token value 11 is outside \[0, d_vocab\) = \[0, 11\)"),
    (np.array([[-1, 0]]), r"token value -1 is outside"),
    (np.zeros((1, 7), dtype=int), r"T=7 is longer than n_ctx=6"),
    (np.zeros((1, 3)), r"tokens must be integers, got dtype float64"),
    (np.zeros(3, dtype=int), r"shape \[batch, T\], got shape \(3,\); pass tokens\[None\]"),
    (np.zeros((1, 2, 3), dtype=int), r"shape \[batch, T\], got shape \(1, 2, 3\)"),
    (np.zeros((0, 3), dtype=int), r"at least one sequence"),
    ([["a", "b"]], r"tokens must be integers"),
])
def test_bad_tokens(tokens, match):
    with pytest.raises(ValueError, match=match):
        minih.run_with_cache(PARAMS, tokens, CFG)


def test_loss_needs_two_positions():
    with pytest.raises(ValueError, match=r"at least 2 position\(s\).*next token"):
        minih.loss_and_grads(PARAMS, np.zeros((1, 1), dtype=int), CFG)
    minih.run_with_cache(PARAMS, np.zeros((1, 1), dtype=int), CFG)   # T=1 is fine to run


def test_bad_params():
    missing = {k: v for k, v in PARAMS.items() if k != "blocks.1.attn.W_V"}
    with pytest.raises(ValueError, match=r"missing key\(s\) \['blocks.1.attn.W_V'\]"):
        minih.loss_and_grads(missing, GOOD, CFG)
    wrong = dict(PARAMS, **{"blocks.0.attn.W_O": np.zeros((2, 4, 9), np.float32)})
    with pytest.raises(ValueError, match=r"params\['blocks.0.attn.W_O'\] has shape \(2, 4, 9\), expected \(2, 4, 8\)"):
        minih.loss_and_grads(wrong, GOOD, CFG)
    extra = dict(PARAMS, **{"blocks.0.attn.smear": np.zeros(2, np.float32)})
    with pytest.raises(ValueError, match=r"key\(s\) \['blocks.0.attn.smear'\] that this config does not use"):
        minih.run_with_cache(extra, GOOD, CFG)
    f64 = {k: v.astype(np.float64) for k, v in PARAMS.items()}
    with pytest.raises(ValueError, match=r"dtype float64, but the config says dtype='float32'"):
        minih.run_with_cache(f64, GOOD, CFG)
    with pytest.raises(ValueError, match=r"must be a numpy array"):
        minih.run_with_cache(dict(PARAMS, **{"unembed.W_U": [[0.0]]}), GOOD, CFG)


@pytest.mark.parametrize("field,value,match", [
    ("d_head", 0, r"d_head must be >= 1, got 0"),
    ("n_heads", 0, r"n_heads must be >= 1"),
    ("n_layers", -1, r"n_layers must be >= 0"),
    ("n_ctx", 2.5, r"n_ctx must be an int"),
    ("positional", "rotary", r"positional must be one of \('shortformer', 'standard'\), got 'rotary'"),
    ("dtype", "float16", r"dtype must be one of \('float32', 'float64'\)"),
    ("layernorm", "yes", r"layernorm must be True or False"),
    ("init_embed_std", -1.0, r"init_embed_std must be a number >= 0"),
])
def test_bad_config(field, value, match):
    with pytest.raises(ValueError, match=match):
        minih.ModelConfig(**{field: value})


def test_bad_config_names():
    with pytest.raises(ValueError, match=r"has no field\(s\) \['n_layer'\]"):
        CFG.replace(n_layer=3)
    with pytest.raises(ValueError, match=r"unknown model preset 'huge'; presets are"):
        minih.ModelConfig.preset("huge")
    with pytest.raises(ValueError, match=r"unknown backend 'torch'; choose one of"):
        minih.run_with_cache(PARAMS, GOOD, CFG, backend="torch")
    with pytest.raises(ValueError, match=r"AdamWConfig.lr must be >= 0"):
        minih.AdamWConfig(lr=-1)


def test_gradcheck_cli(capsys):
    from minih.cli import main
    assert main(["gradcheck", "--set", "n_layers=1"]) == 0
    assert "PASS: max relative error" in capsys.readouterr().out
    assert main(["gradcheck", "--set", "n_layers=x"]) == 2
    assert "--set n_layers: 'x' is not a valid int" in capsys.readouterr().err
    assert main(["gradcheck", "--set", "d_head=0"]) == 2
    assert "d_head must be >= 1" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["gradcheck", "--preset", "nope"])
    assert e.value.code == 2
