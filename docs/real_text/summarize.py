"""One table row per probe run (docs/real_text/runs/*/probe.jsonl) for docs/real_text_experiments.md.

    PYTHONPATH=. python docs/real_text/summarize.py [RUN_DIR ...]
"""
import json
import sys
from pathlib import Path

dirs = [Path(p) for p in sys.argv[1:]] or sorted(Path(__file__).parent.glob("runs/*"))
print("| run | steps | tokens | train s | wall s | loss | max prefix matching (L0 / last layer) | max prev-token (L0 / last) | ICL first -> last (icl_w) | min icl_w | crossed 0.5 at |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for d in dirs:
    f = d / "probe.jsonl"
    if not f.exists():
        continue
    recs = [json.loads(l) for l in f.read_text().splitlines() if l.strip()]
    rows = [r for r in recs if "step" in r]
    if not rows:
        continue
    last = rows[-1]
    pm0, pml = max(r["pm"][0] for r in rows), max(r["pm"][-1] for r in rows)
    pv0, pvl = max(r["prev"][0] for r in rows), max(r["prev"][-1] for r in rows)
    first = next((r for r in rows if r["step"] > 0), rows[0])
    crossed = next((f"step {r['step']} ({r['tokens'] / 1e6:.1f}M tok, {r['train_s']:.0f} s)" for r in rows if r["pm"][-1] >= 0.5), "-")
    print(f"| {d.name} | {last['step']} | {last['tokens'] / 1e6:.2f}M | {last['train_s']:.0f} | {last['wall_s']:.0f} | "
          f"{last['loss']:.3f} | {pm0:.2f} / {pml:.2f} | {pv0:.2f} / {pvl:.2f} | "
          f"{first['icl_w']:+.2f} -> {last['icl_w']:+.2f} | {min(r['icl_w'] for r in rows):+.2f} | {crossed} |")
