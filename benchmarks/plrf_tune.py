"""Tuning SGD's schedule on PLRF at a fixed flop budget (issue 19, `hsgd.scaling.tune_at_compute`),
checked on actual SGD against the best constant, cosine and warm-up-stable-decay schedules.

Problem: a sampled PLRF instance, alpha = 1, beta = 0.7, v = 2000, d = 500, batch 1, budget
f = d * k = 5e7 flops (k = 1e5 iterations, horizon t = k/d = 200). Prediction: the exact
finite-d dynamics (SPEC §8). Baselines: best constant on 40 log values around eta * d
(eta = hsgd.scaling.default_eta), best cosine and best WSD (linear warm-up 1%, cool-down over
the last 10/20/40%) on grids around it. Tuned: 12 log-spaced knots, adam, `--steps` steps,
from the best constant. Check: 16 SGD runs per schedule on the same seeds (the simulator on
the instance: its risk is the PLRF loss, computed from the iterate, sharing nothing with the
ODE). Times: tuning (compile included) and the SGD check.

    python benchmarks/plrf_tune.py --out benchmarks/results
"""

import time

import jax

from _common import parser, setup, write


def main():
    p = parser(__doc__)
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--d", type=int, default=500)
    p.add_argument("--iterations", type=float, default=1e5)
    p.add_argument("--runs", type=int, default=16)
    args = p.parse_args()
    setup(args)
    import hsgd

    d, v = args.d, 4 * args.d
    prob = hsgd.Problem.plrf(1.0, 0.7, v, d, jax.random.PRNGKey(0))
    flops = d * args.iterations
    start = time.perf_counter()
    res, base = hsgd.scaling.tune_at_compute(prob, flops, alpha=1.0, num_knots=12,
                                             num_steps=args.steps)
    tune_s = time.perf_counter() - start
    start = time.perf_counter()
    cmp = hsgd.compare(res.predictor, {"tuned": res, **base}, key=jax.random.PRNGKey(5),
                       num_runs=args.runs)
    check_s = time.perf_counter() - start
    print(hsgd.format_comparison(cmp))
    print(f"tune (with baselines, compile included) {tune_s:.1f} s; SGD check {check_s:.1f} s")
    rows = {name: {k: r[k] for k in ("predicted", "sgd_mean", "sgd_sem", "relative_error")}
            for name, r in cmp["results"].items()}
    write(args, __file__, {"d": d, "v": v, "flops": flops, "iterations": args.iterations,
                           "steps": args.steps, "runs": args.runs, "floor": cmp["floor"],
                           "baseline_parameters": {k: c.parameters for k, c in base.items()},
                           "results": rows, "tune_seconds": tune_s, "check_seconds": check_s})


if __name__ == "__main__":
    main()
