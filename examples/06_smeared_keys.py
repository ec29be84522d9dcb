"""06 — smeared keys: one layer can learn induction (the paper's Argument 2).

Shows: two 1-layer models trained on the same data, one vanilla and one with smeared
keys (each key mixes in the previous position's key with a learned weight). A vanilla
1-layer model cannot build an induction head (no earlier head can write "the previous
token" into the keys); with smeared keys the key itself can carry it. Both runs use
minih.train and keep snapshots; the prefix-matching score of the best head is read
from each snapshot afterwards.

Takes: about 11 s on a 2-core CPU (measured: AMD EPYC VM, numba backend, other jobs
running; the numpy backend took 70 s there, its BLAS threads fighting for the cores;
seconds with --tiny).
Prints: for each snapshot, tokens seen and the best prefix-matching score of each
model; then the learned smear weights s = sigmoid(alpha) of the smeared model.

    python examples/06_smeared_keys.py [--tiny] [--backend numba]
"""
import argparse
import tempfile

import numpy as np

import minih
from minih.interp.metrics import prefix_matching_scores

parser = argparse.ArgumentParser()
parser.add_argument("--tiny", action="store_true", help="a few steps of a small model (for tests)")
parser.add_argument("--backend", default="numba", choices=["numpy", "numba"],
                    help="numba (default: the fast twin) or numpy (the readable reference)")
args = parser.parse_args()

runs = {}
with tempfile.TemporaryDirectory() as tmp:
    for name, preset in (("vanilla", "induction-1l"), ("smeared", "smeared-1l")):
        tc = minih.TrainConfig.preset(preset, log_snapshots=8, linear_snapshots=4)
        if args.tiny:
            tc = tc.replace(steps=20, batch=4, n_eval=4, model=tc.model.replace(d_model=16, n_heads=2))
        minih.train(tc, f"{tmp}/{name}", backend=args.backend, progress=False)
        runs[name] = minih.load_run(f"{tmp}/{name}")

    vanilla, smeared = runs["vanilla"], runs["smeared"]
    print(f"{'tokens seen':>12} {'vanilla 1L':>11} {'smeared 1L':>11}   (best prefix-matching score)")
    for s in range(len(vanilla)):
        best = [prefix_matching_scores(r.params(s), r.cfg, backend=args.backend).max() for r in (vanilla, smeared)]
        print(f"{vanilla.tokens_seen[s]:>12,d} {best[0]:>11.2f} {best[1]:>11.2f}")
    alpha = smeared.params(len(smeared) - 1)["blocks.0.attn.smear"]
    s = 1 / (1 + np.exp(-alpha))
    print("smear weights s per head (1 = own key only, 0 = previous key only):", np.round(s, 2))
