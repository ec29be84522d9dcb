"""The phase change of a probe run, by minih's rules: ICL score (SPEC indices) per snapshot,
the 10%-90% window of its smoothed change against log tokens (metrics.phase), and the
prefix-matching score (from probe.jsonl) before and after the window.

    PYTHONPATH=. python docs/real_text/phase_report.py docs/real_text/runs/NAME [--from-step S]
"""
import argparse
import json
from pathlib import Path

import numpy as np

import minih
from minih.interp.metrics.losses import icl_score
from minih.interp.metrics.phase import phase_change_window

ap = argparse.ArgumentParser()
ap.add_argument("run_dir")
ap.add_argument("--from-step", type=int, default=1, help="ignore snapshots before this step")
args = ap.parse_args()
d = Path(args.run_dir)
run = minih.load_run(d / "run")
probe = {r["step"]: r for r in map(json.loads, open(d / "probe.jsonl")) if "step" in r}
keep = np.array([s >= args.from_step and int(s) in probe for s in run.steps])
steps, tokens = run.steps[keep], run.tokens_seen[keep]
icl = icl_score(run.losses[keep])                                     # [S]
pm = np.array([probe[int(s)]["pm"][-1] for s in steps])
w = phase_change_window(tokens, icl)
print(f"{d.name}: snapshots {len(steps)}, steps {steps[0]}..{steps[-1]}")
for s, t, i, p in zip(steps, tokens, icl, pm):
    print(f"  step {s:6d}  tokens {t / 1e6:6.2f}M  ICL {i:+.3f}  prefix matching {p:.3f}")
print(f"window (10%-90% of the smoothed ICL change {w.total_change:+.3f} nats): tokens "
      f"{w.start_tokens / 1e6:.2f}M .. {w.end_tokens / 1e6:.2f}M (steps {steps[w.start_index]}..{steps[w.end_index]})")
before = max(0, w.start_index - 1)
print(f"ICL {icl[before]:+.3f} (step {steps[before]}) -> {icl[min(len(icl) - 1, w.end_index + 1)]:+.3f} "
      f"(step {steps[min(len(icl) - 1, w.end_index + 1)]}); prefix matching {pm[before]:.3f} -> "
      f"{pm[min(len(pm) - 1, w.end_index + 1)]:.3f}")
