"""Check the hand-written backward against central finite differences, in float64.

For every parameter entry p_i, the numerical derivative uses the fourth-order
central stencil (step h):

    n_i = (L(p_i - 2h) - 8 L(p_i - h) + 8 L(p_i + h) - L(p_i + 2h)) / (12 h)

Its truncation error is h^4 / 30 * |L'''''| and its rounding error about
1.5 * 1e-16 * |L| / h. We use h = 5e-4: with h = 1e-4 rounding gave absolute
errors of 1e-11; with h = 1e-3 truncation gave 1.5e-9 in a 4-layer model without
LayerNorm (large higher derivatives). At 5e-4 every config of the test suite
stays below ~2e-12 absolute. The relative error reported is

    rel_i = |a_i - n_i| / max(|a_i|, |n_i|, 1e-5)

(the floor 1e-5 keeps entries whose true gradient is ~0 from dividing noise by
noise; an entry below it is judged by its absolute error, ~1e-12 / 1e-5 = 1e-7).
A wrong backward gives errors of the order of the gradient itself (rel ~ 1e-1),
a correct one stays below 2e-7 in every config the tests run: the default
tolerance 1e-6 sits between them.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .config import ModelConfig, check_int, check_number
from .model import forward, get_backend, loss_and_grads
from .params import check_config, check_params, check_tokens, init_params

DENOM_FLOOR = 1e-5


@dataclass
class ParamCheck:
    key: str
    max_rel_err: float           # worst rel_i over the checked entries
    worst_index: tuple           # index of that entry in the parameter
    analytic: float              # a_i at the worst entry
    numeric: float               # n_i at the worst entry
    n_checked: int               # entries checked (all, or a random sample)


@dataclass
class GradcheckReport:
    cfg: ModelConfig
    loss: float
    rows: list = field(default_factory=list)

    @property
    def max_rel_err(self) -> float:
        return max((r.max_rel_err for r in self.rows), default=0.0)

    def ok(self, tol: float = 1e-6) -> bool:
        if check_number(tol, "tol") <= 0:
            raise ValueError(f"tol must be > 0, got {tol}")
        return self.max_rel_err < tol

    def __str__(self) -> str:
        lines = [f"gradcheck (float64, loss {self.loss:.6f}): max relative error "
                 f"{self.max_rel_err:.2e}",
                 f"{'parameter':<26} {'checked':>7} {'max rel err':>11}  worst entry: analytic / numeric"]
        for r in self.rows:
            lines.append(f"{r.key:<26} {r.n_checked:>7} {r.max_rel_err:>11.2e}  "
                         f"{r.worst_index}: {r.analytic:+.6e} / {r.numeric:+.6e}")
        return "\n".join(lines)


def gradcheck(cfg: ModelConfig | None = None, params=None, tokens=None, *, seed: int = 0,
              batch: int = 2, seq_len: int | None = None, h: float = 5e-4,
              max_entries: int | None = None, backend: str = "numpy",
              progress=None) -> GradcheckReport:
    """Compare `loss_and_grads` with finite differences for every parameter.

    cfg defaults to the "tiny" preset; params default to init_params(cfg, seed);
    tokens default to random tokens [batch, seq_len or n_ctx]. Everything is cast to
    float64 first. `max_entries` checks a seeded random sample of that many entries
    per parameter instead of all of them (for large models). `progress`, if given, is
    called with 1 after every checked entry (e.g. a tqdm bar's update).
    """
    # the arguments, checked by name before any work
    if cfg is not None:
        check_config(cfg)
    if params is not None and not isinstance(params, dict):
        raise ValueError(f"params must be a dict of arrays or None, got {type(params).__name__}")
    if not isinstance(seed, np.random.Generator):
        seed = check_int(seed, "seed", minimum=0)
    batch = check_int(batch, "batch", minimum=1)
    seq_len = None if seq_len is None else check_int(seq_len, "seq_len", minimum=2)
    max_entries = None if max_entries is None else check_int(max_entries, "max_entries", minimum=1)
    if check_number(h, "h") <= 0:
        raise ValueError(f"h must be > 0, got {h}")
    cfg = (cfg or ModelConfig.preset("tiny")).replace(dtype="float64")
    rng = np.random.default_rng(seed)
    if params is None:
        params = init_params(cfg, seed)
    params = {k: np.array(v, dtype=np.float64) for k, v in params.items()}  # a copy
    check_params(params, cfg)
    if tokens is None:
        tokens = rng.integers(0, cfg.d_vocab, size=(batch, cfg.n_ctx if seq_len is None else seq_len))
    tokens = check_tokens(tokens, cfg, min_len=2)
    ops = get_backend(backend)

    def loss_at(p):
        logits, _ = forward(p, tokens, cfg, ops, keep="backward")
        return ops.cross_entropy_forward(logits, tokens)[0]

    loss, grads = loss_and_grads(params, tokens, cfg, backend=backend)
    report = GradcheckReport(cfg=cfg, loss=loss)
    for key, value in params.items():
        flat = value.reshape(-1)                  # a view: edits below change params[key]
        idx = np.arange(flat.size)
        if max_entries is not None and flat.size > max_entries:
            idx = np.sort(rng.choice(flat.size, size=max_entries, replace=False))
        numeric = np.empty(len(idx))
        for n, i in enumerate(idx):
            orig = flat[i]
            f = {}
            for step in (-2, -1, 1, 2):
                flat[i] = orig + step * h
                f[step] = loss_at(params)
            flat[i] = orig
            numeric[n] = (f[-2] - 8 * f[-1] + 8 * f[1] - f[2]) / (12 * h)
            if progress is not None:
                progress(1)
        analytic = grads[key].reshape(-1)[idx]
        rel = np.abs(analytic - numeric) / np.maximum.reduce(
            [np.abs(analytic), np.abs(numeric), np.full(len(idx), DENOM_FLOOR)])
        w = int(np.argmax(rel))
        report.rows.append(ParamCheck(key, float(rel[w]),
                                      tuple(int(i) for i in np.unravel_index(idx[w], value.shape)),
                                      float(analytic[w]), float(numeric[w]), len(idx)))
    return report
