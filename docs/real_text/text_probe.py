"""Experiment driver: train a model on BPE text with minih.train and watch for an induction head.

    PYTHONPATH=. python docs/real_text/text_probe.py NAME [--set field=value ...]

Fields are TrainConfig fields (steps, batch, lr, warmup, seed, ...), ModelConfig fields
prefixed with `model.` and BPEText fields prefixed with `data.`; `--minutes` bounds
the wall time. At every snapshot (every `--every` steps; n_eval 128 held-out windows)
it logs one JSON line to docs/real_text/runs/NAME/probe.jsonl and a readable line to stdout:

    step, tokens, train seconds, wall seconds, eval loss,
    icl        the ICL score (SPEC: loss at index round(500/512 T) - round(50/512 T))
    icl_w      the same from the mean loss over +-5% (late) and +-2.5% (early) of T around
               each index (less noisy than two single positions)
    pm         best prefix-matching score of each layer (SPEC test, R drawn without the
               10% most and least frequent training tokens)
    prev       best previous-token score of each layer on evaluation text

The run stops (with a checkpoint: `--resume` goes on) at the time budget, or `--after` snapshots after the best last-layer prefix-matching
score first reaches 0.5 (0 = never stop early).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np

import minih
from minih.data import make_source
from minih.interp.metrics import heads as H
from minih.interp.metrics.losses import icl_indices, icl_score


def parse_value(v: str):
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(v.lower(), v)


def build(sets: list[str]) -> minih.TrainConfig:
    tc_kw, model_kw, data_kw = {}, {}, {}
    for s in sets:
        k, v = s.split("=", 1)
        v = parse_value(v)
        if k.startswith("model."):
            model_kw[k[6:]] = v
        elif k.startswith("data."):
            data_kw[k[5:]] = v
        else:
            tc_kw[k] = v
    data = make_source("bpe", **data_kw)
    model = minih.ModelConfig(**{**dict(n_layers=2, n_heads=8, d_model=128, d_head=16, n_ctx=256),
                                 **model_kw, "d_vocab": data.d_vocab})
    # optimizer fields (lr, weight_decay, ...) may be named directly, as in TrainConfig.replace
    return minih.TrainConfig(model=model, data=data).replace(**tc_kw)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("name")
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--minutes", type=float, default=15.0)
    ap.add_argument("--every", type=int, default=100, help="steps between snapshots")
    ap.add_argument("--after", type=int, default=4, help="snapshots to go on after pm >= 0.5")
    ap.add_argument("--root", default=str(Path(__file__).parent / "runs"))
    ap.add_argument("--resume", action="store_true", help="continue the run from its checkpoint")
    args = ap.parse_args(argv)

    tc = build(["n_eval=128", "log_snapshots=0"] + args.set)
    tc = tc.replace(linear_snapshots=max(1, tc.steps // args.every))
    out = Path(args.root) / args.name
    out.mkdir(parents=True, exist_ok=True)
    log = open(out / "probe.jsonl", "a")
    counts = tc.data.token_counts()
    T = tc.T
    early, late = icl_indices(T)
    w = max(1, round(0.05 * T))
    start = time.time()
    done, crossed = set(), [None]
    header = {"name": args.name, "argv": sys.argv[1:], "train": tc.to_dict(),
              "threads": os.environ.get("NUMBA_NUM_THREADS"), "data": tc.data.describe()}
    log.write(json.dumps({"header": header}) + "\n")
    print(f"{args.name}: {tc.data.describe()['train_tokens']} train tokens, T={T}, "
          f"{tc.tokens_per_step} tokens/step, icl indices {early}/{late}", flush=True)

    def analyse():
        idx_path = out / "run" / "snapshots.json"
        if not idx_path.exists():
            return
        run = minih.load_run(out / "run")
        for i, step in enumerate(run.steps):
            step = int(step)
            if step in done:
                continue
            done.add(step)
            params = run.params(i)
            losses = run.losses[i]                                           # [N, T-1]
            by_pos = losses.mean(0)
            pm = H.prefix_matching_scores(params, tc.model, backend="numba", token_counts=counts)
            prev = H.previous_token_scores(params, tc.model, run.eval_tokens[:32], backend="numba")
            icl_w = float(by_pos[late - 1 - w: late - 1 + w].mean() - by_pos[early - 1 - w // 2: early - 1 + w // 2 + 1].mean())
            rec = {"step": step, "tokens": int(run.tokens_seen[i]), "train_s": float(run.seconds[i]),
                   "wall_s": round(time.time() - start, 1), "loss": float(losses.mean()),
                   "icl": float(icl_score(losses)), "icl_w": icl_w,
                   "pm": [round(float(x), 3) for x in pm.max(1)],
                   "pm_head": int(pm[-1].argmax()),
                   "prev": [round(float(x), 3) for x in prev.max(1)]}
            log.write(json.dumps(rec) + "\n")
            log.flush()
            print(f"step {step:6d} tok {rec['tokens'] / 1e6:7.2f}M train {rec['train_s']:7.1f}s "
                  f"wall {rec['wall_s']:7.1f}s loss {rec['loss']:.3f} icl {rec['icl']:+.3f} "
                  f"icl_w {icl_w:+.3f} pm {rec['pm']} prev {rec['prev']}", flush=True)
            if crossed[0] is None and pm[-1].max() >= 0.5:
                crossed[0] = step

    def on_step(step, loss):
        if step % args.every == 1 or step < 50:
            analyse()
        # stopping = a Ctrl-C to ourselves: minih.train then checkpoints and returns,
        # so the run can go on later with --resume
        if time.time() - start > args.minutes * 60 or (
                crossed[0] is not None and args.after and
                len([s for s in done if s > crossed[0]]) >= args.after):
            if not stopping:
                stopping.append(step)
                os.kill(os.getpid(), signal.SIGINT)

    stopping = []
    if args.resume:
        done.update(int(json.loads(l)["step"]) for l in open(out / "probe.jsonl") if '"step"' in l)
    res = minih.train(tc, out / "run", backend="numba", progress=False, overwrite=not args.resume,
                      resume=args.resume, on_step=on_step, checkpoint_seconds=300)
    print(res.summary(), flush=True)
    analyse()
    print(f"crossed 0.5 at step {crossed[0]}; wall {time.time() - start:.0f}s", flush=True)


if __name__ == "__main__":
    main()
