"""Score every snapshot of a finished minih run directory (e.g. one written by
`python -m minih train text-2l`) the way text_probe.py does while training, into
RUN_DIR/../probe.jsonl layout: writes OUT/probe.jsonl with OUT/run -> the run.

    PYTHONPATH=. python docs/real_text/score_run.py RUN_DIR OUT_NAME
"""
import json
import os
import sys
from pathlib import Path

import numpy as np

import minih
from minih.data import source_from_dict
from minih.interp.metrics import heads as H
from minih.interp.metrics.losses import icl_indices, icl_score

run_dir, name = Path(sys.argv[1]).resolve(), sys.argv[2]
out = Path(__file__).parent / "runs" / name
out.mkdir(parents=True, exist_ok=True)
if not (out / "run").exists():
    os.symlink(run_dir, out / "run")
run = minih.load_run(run_dir)
data = source_from_dict(run.manifest["train"]["data"])
counts = data.token_counts()
T = run.eval_tokens.shape[1]
early, late = icl_indices(T)
w = max(1, round(0.05 * T))
with open(out / "probe.jsonl", "w") as log:
    for i, step in enumerate(run.steps):
        params, losses = run.params(i), run.losses[i]
        by_pos = losses.mean(0)
        pm = H.prefix_matching_scores(params, run.cfg, backend="numba", token_counts=counts)
        prev = H.previous_token_scores(params, run.cfg, run.eval_tokens[:32], backend="numba")
        icl_w = float(by_pos[late - 1 - w: late - 1 + w].mean()
                      - by_pos[early - 1 - w // 2: early - 1 + w // 2 + 1].mean())
        rec = {"step": int(step), "tokens": int(run.tokens_seen[i]), "train_s": float(run.seconds[i]),
               "wall_s": float("nan"), "loss": float(losses.mean()), "icl": float(icl_score(losses)),
               "icl_w": icl_w, "pm": [round(float(x), 3) for x in pm.max(1)],
               "pm_head": int(pm[-1].argmax()), "prev": [round(float(x), 3) for x in prev.max(1)]}
        log.write(json.dumps(rec) + "\n")
        print(f"step {rec['step']:6d} tok {rec['tokens'] / 1e6:6.2f}M train {rec['train_s']:6.1f}s "
              f"loss {rec['loss']:.3f} icl {rec['icl']:+.3f} icl_w {icl_w:+.3f} pm {rec['pm']} prev {rec['prev']}",
              flush=True)
