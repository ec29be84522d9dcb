"""Checkpoints: everything needed to continue a run bit for bit, in one atomic .npz.

    checkpoint.npz
        param/{key}        the params (keys of params.py)
        adam_m/{key}       AdamW first moments
        adam_v/{key}       AdamW second moments
        meta               a JSON string: step, optimizer step, tokens_seen, seconds,
                           the data Generator's bit_generator.state, the TrainConfig
        train_loss         float64 [step]: training loss of every update so far

Written to a temporary file of the writing process, then renamed (minih/training/run.py atomic_write), so a kill
during the write leaves the previous checkpoint intact. Reading checks every piece
and raises ValueError naming what is wrong: a damaged checkpoint never turns into a
silent fresh start.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..params import check_params, param_shapes
from .run import CHECKPOINT, load_npz, save_npz


def save_checkpoint(out: Path, params: dict, opt_state: dict, rng: np.random.Generator, step: int,
                    tokens_seen: int, train_loss: list, seconds: float, tc) -> None:
    meta = {"step": int(step), "opt_step": int(opt_state["step"]), "tokens_seen": int(tokens_seen),
            "seconds": float(seconds), "rng_state": rng.bit_generator.state,
            "rng_bit_generator": type(rng.bit_generator).__name__, "train": tc.to_dict()}
    arrays = {"meta": np.array(json.dumps(meta)), "train_loss": np.asarray(train_loss, dtype=np.float64)}
    for key in params:
        arrays["param/" + key] = params[key]
        arrays["adam_m/" + key] = opt_state["m"][key]
        arrays["adam_v/" + key] = opt_state["v"][key]
    save_npz(Path(out) / CHECKPOINT, arrays)


def load_checkpoint(out: Path, tc) -> dict:
    """The checkpoint of run `out` as a dict: params, opt_state, rng, step, tokens_seen,
    train_loss (list), seconds. `tc` is the run's TrainConfig: the checkpoint must match it."""
    path = Path(out) / CHECKPOINT
    if not path.exists():
        raise ValueError(f"cannot resume: {path} does not exist (the run never saved a checkpoint)")
    arrays = load_npz(path, "checkpoint")
    try:
        meta = json.loads(str(arrays.pop("meta")))
        train_loss = arrays.pop("train_loss")
        step = meta["step"]
        rng = np.random.Generator(getattr(np.random, meta["rng_bit_generator"])())
        rng.bit_generator.state = meta["rng_state"]
        saved = type(tc).from_dict(meta["train"])
        opt_step, tokens_seen, seconds = meta["opt_step"], meta["tokens_seen"], float(meta["seconds"])
    except (KeyError, ValueError, TypeError, AttributeError) as e:
        raise ValueError(f"checkpoint {path} is corrupt: its metadata cannot be read ({e})") from None
    # compared as configs, not as dicts: a checkpoint of an older layout (lr beside
    # steps) matches the same config written in today's layout
    if saved.replace(steps=tc.steps) != tc:
        raise ValueError(f"checkpoint {path} belongs to a different config than run.json")
    groups = {}
    for prefix in ("param/", "adam_m/", "adam_v/"):
        groups[prefix] = {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}
        # never written by minih (a diverging run checkpoints its last good state): resuming
        # from NaN would fail at once and blame the learning rate
        bad = [prefix + k for k, v in groups[prefix].items()
               if np.issubdtype(np.asarray(v).dtype, np.number) and not np.isfinite(v).all()]
        if bad:
            raise ValueError(f"checkpoint {path} is damaged: NaN or inf in {bad}")
        try:
            check_params(groups[prefix], tc.model)
        except ValueError as e:
            raise ValueError(f"checkpoint {path} is corrupt ({prefix.rstrip('/')}: {e})") from None
    if len(train_loss) != step:
        raise ValueError(f"checkpoint {path} is corrupt: {len(train_loss)} losses for step {step}")
    # the params' canonical order (param_shapes): sums over keys (the gradient norm)
    # then run in the same order as in an uninterrupted run, so they round the same way
    order = list(param_shapes(tc.model))
    params, m, v = ({k: groups[p][k] for k in order} for p in ("param/", "adam_m/", "adam_v/"))
    opt_state = {"step": opt_step, "m": m, "v": v}
    return {"params": params, "opt_state": opt_state, "rng": rng, "step": step,
            "tokens_seen": tokens_seen, "train_loss": [float(x) for x in train_loss],
            "seconds": seconds}
