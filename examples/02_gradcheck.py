"""02 — check the hand-written backward pass against finite differences.

Shows: `minih.gradcheck` comparing every gradient entry of a small 2-layer model with
smeared keys against a fourth-order central difference of the float64 loss, and the
same check catching a deliberately broken backward (the LayerNorm gradient with the
mean term forgotten).

Takes: about 2 s on a 2-core CPU (under a second with --tiny).
Prints: a table, one row per parameter, with the largest relative error (~1e-8 for
a correct backward) and then the broken one (order 1: 1.9 in our run, worst on
pos_embed.W_pos).

    python examples/02_gradcheck.py [--tiny]
"""
import argparse

import numpy as np

import minih
import minih.ops

parser = argparse.ArgumentParser()
parser.add_argument("--tiny", action="store_true", help="smaller model (used by the test suite)")
args = parser.parse_args()

cfg = minih.ModelConfig.preset("tiny", smeared_keys=True, smear_init=0.5,
                               n_layers=1 if args.tiny else 2)
report = minih.gradcheck(cfg, seed=0)
print(report)
print("correct backward:", "PASS" if report.ok(1e-6) else "FAIL")

# Break the LayerNorm backward: drop the two terms that come from mean and scale
# depending on x. The checker must notice.
real = minih.ops.layernorm_backward


def broken_layernorm_backward(d_y, x, scale, w):
    d_x, d_w, d_b = real(d_y, x, scale, w)
    return d_y * w / scale, d_w, d_b


minih.ops.layernorm_backward = broken_layernorm_backward
try:
    broken = minih.gradcheck(cfg, seed=0)
finally:
    minih.ops.layernorm_backward = real
worst = max(broken.rows, key=lambda r: r.max_rel_err)
print(f"\nbroken LayerNorm backward: max relative error {broken.max_rel_err:.1e} "
      f"(worst: {worst.key}) ->", "FAIL (as it should)" if not broken.ok(1e-6) else "PASS?!")
assert report.ok(1e-6) and not broken.ok(1e-6)
