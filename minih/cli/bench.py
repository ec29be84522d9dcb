"""`python -m minih bench`: training speed of both backends beside PyTorch (minih/app/bench.py)."""
from __future__ import annotations

import json

from ..app.bench import CONFIG_GROUPS, CONFIGS, format_profile, format_table, op_profile, run_bench, target_checks
from ..config import ModelConfig
from . import output_file

def add_arguments(p):
    p.add_argument("--configs", default="ref,small",
                   help="comma-separated, from: " + ", ".join(CONFIGS) + "; 'reproduce' names "
                        "every config reproduce trains (default: ref,small)")
    p.add_argument("--steps", type=int, default=10, help="timed steps per implementation (default 10)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps before timing (default 2)")
    p.add_argument("--rounds", type=int, default=2,
                   help="measure every implementation this many times, in fresh processes, "
                        "the rounds interleaved; tokens/s from the median of all their steps "
                        "(default 2)")
    p.add_argument("--no-torch", action="store_true", help="skip PyTorch even when it is installed")
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile (slow to compile)")
    p.add_argument("--no-numpy", action="store_true", help="skip the numpy backend")
    p.add_argument("--no-start", action="store_true", help="skip the cold/warm start measurement")
    p.add_argument("--no-memory", action="store_true", help="skip the memory-growth check")
    p.add_argument("--out", default="bench.json", help="JSON results file (default: bench.json)")
    p.add_argument("--profile", action="store_true",
                   help="only time each op of a training step (forward and backward apart), "
                        "for the numpy and numba backends, in this process; print and exit")


def run(args) -> int:
    configs = []
    for c in (c.strip() for c in args.configs.split(",") if c.strip()):
        for name in CONFIG_GROUPS.get(c, [c]):
            if name not in configs:
                configs.append(name)
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown or not configs:
        raise ValueError(f"--configs: unknown {unknown}; choose from {sorted(CONFIGS)} "
                         f"or {', '.join(CONFIG_GROUPS)}")
    if args.steps < 1 or args.warmup < 0 or args.rounds < 1:
        raise ValueError(f"--steps and --rounds must be >= 1 and --warmup >= 0, got "
                         f"{args.steps}, {args.rounds}, {args.warmup}")
    if not args.profile:
        output_file(args.out)                  # before minutes of timing, not after
    if args.profile:
        for name in configs:
            overrides, batch = CONFIGS[name]
            for backend in (["numpy"] if not args.no_numpy else []) + ["numba"]:
                print(format_profile(name, op_profile(ModelConfig(**overrides), batch, backend,
                                                      args.steps, args.warmup)), "\n")
        return 0
    result = run_bench(configs, args.steps, args.warmup, torch=not args.no_torch,
                       compiled=not args.no_compile, numpy_backend=not args.no_numpy,
                       start=not args.no_start, memory=not args.no_memory, rounds=args.rounds)
    result["targets"] = [{"target": what, "measured": value, "unit": unit, "met": met}
                         for what, value, unit, met in target_checks(result)]
    print(format_table(result))
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(f"\nwrote {args.out}")
    return 0
