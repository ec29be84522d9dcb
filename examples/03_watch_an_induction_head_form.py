"""03 — train a 2-layer model and watch its induction head form.

Shows: a training loop written out with minih's pieces (data source, loss_and_grads via
train_step, AdamW) on the `induction-2l` preset (dense repeated random tokens), and,
every few steps, the loss and the best prefix-matching score of a layer-1 head. The
phase change is visible as a sudden rise of that score together with a drop in loss.

Takes: about 14 s on a 2-core CPU (measured: AMD EPYC VM, numba backend, other jobs
running; the numpy backend took 68-95 s there, its BLAS threads fighting for the cores;
seconds with --tiny).
Prints: a line per checkpoint: step, tokens seen, training loss, the best layer-1
prefix-matching score and its head; then the step where it first passed 0.5.

    python examples/03_watch_an_induction_head_form.py [--tiny] [--backend numba]
"""
import argparse
import time

import numpy as np

import minih
from minih.interp.metrics import prefix_matching_scores

parser = argparse.ArgumentParser()
parser.add_argument("--tiny", action="store_true", help="a few steps of a small model (for tests)")
parser.add_argument("--backend", default="numba", choices=["numpy", "numba"],
                    help="numba (default: the fast twin) or numpy (the readable reference)")
args = parser.parse_args()

tc = minih.TrainConfig.preset("induction-2l")           # model, data source, schedule
if args.tiny:
    tc = tc.replace(steps=30, batch=8, model=tc.model.replace(d_model=16, n_heads=2, d_head=8))
cfg, source = tc.model, tc.data
params = minih.init_params(cfg, seed=0)
state = minih.adamw_init(params)
rng = np.random.default_rng(1)                          # the data stream
every = max(tc.steps // 20, 1)

print(f"{cfg.n_layers} layers x {cfg.n_heads} heads, d_model {cfg.d_model}, context {cfg.n_ctx}, "
      f"vocabulary {cfg.d_vocab}; {tc.steps} steps of {tc.batch} sequences")
formed, start = None, time.perf_counter()
for step in range(1, tc.steps + 1):
    tokens = source.sample(rng, tc.batch, cfg.n_ctx)    # [B, T] int64
    loss, _ = minih.train_step(params, state, tokens, cfg, tc.optim, backend=args.backend)
    if step % every == 0 or step == tc.steps:
        scores = prefix_matching_scores(params, cfg, backend=args.backend)   # [L, H]
        layer1 = scores[1]
        head = int(np.argmax(layer1))
        bar = "#" * int(round(layer1[head] * 30))
        print(f"step {step:5d}  tokens {step * tc.batch * cfg.n_ctx / 1e6:5.2f}M  loss {loss:.3f}  "
              f"best layer-1 prefix matching {layer1[head]:.2f} (head 1.{head}) {bar}")
        if formed is None and layer1[head] > 0.5:
            formed = step
took = time.perf_counter() - start
if formed:
    print(f"induction head formed by step {formed} "
          f"({formed * tc.batch * cfg.n_ctx / 1e6:.2f}M tokens); {took:.0f} s in all")
else:
    print(f"no layer-1 head passed prefix matching 0.5 in {tc.steps} steps ({took:.0f} s)")
