"""Cost of schedule tuning: time per optimisation step, and a gradient evaluation against a
forward solve (target: below 5x).

Problem: noisy streaming least squares (sigma = 0.5) on a power law (alpha = 0.5), d = 2000
coarsened to 64 log bins, T = 20, 41 output times; the predictor of `hsgd.tune` (Kvaerno5,
rtol 1e-6). Schedules: 12 log-spaced knots (at the best constant, and a decaying profile) and
the cosine warm-up family. Compile time is measured separately (first call minus the warm
best-of-3); steps are timed after block_until_ready.

    python benchmarks/tune.py [--out DIR] [--steps 10]
"""

import time

import equinox as eqx
import jax
import numpy as np

from _common import parser, setup, timed, write


def main():
    p = parser(__doc__)
    p.add_argument("--steps", type=int, default=10)
    args = p.parse_args()
    setup(args)
    import hsgd
    from hsgd._tune.tune import Hyperparameters, _value_and_grad, time_grid

    prob = hsgd.Problem.random(hsgd.LeastSquares(0.5), hsgd.Spectrum.power_law(2000, 0.5),
                               jax.random.PRNGKey(0), target_norm=1.0)
    pred = hsgd.StreamingPredictor(prob, time_grid(20.0, 41), ode_bins=64)
    knots = np.concatenate([[0.0], np.geomspace(0.2, 20.0, 11)])
    schedules = {
        "knots (flat)": hsgd.TunableKnots(knots, np.full(12, 0.17)),
        "knots (decaying)": hsgd.TunableKnots(knots, 0.8 * (1 + knots) ** -0.5),
        "cosine family": hsgd.TunableWarmupDecay(20.0, 0.4),
    }
    hyper = Hyperparameters({}, pred.bounds())
    rows = []
    print(f"{'schedule':>18} {'forward s':>10} {'grad s':>9} {'ratio':>6} {'compile s':>10} "
          f"{'step s':>8}")
    for name, sched in schedules.items():
        params, static = eqx.partition(sched, sched.trainable())
        fwd = eqx.filter_jit(lambda s: pred(s, {})[-1])
        f_first, f_best, _ = timed(lambda: fwd(sched))
        g_first, g_best, _ = timed(lambda: _value_and_grad((params, hyper.raw), static, hyper,
                                                           pred, "final"))
        start = time.perf_counter()
        hsgd.tune(pred, sched, 20.0, num_steps=args.steps)
        step_s = (time.perf_counter() - start) / (args.steps + 2)  # + initial, final solves
        row = {"schedule": name, "forward_s": f_best, "grad_s": g_best,
               "ratio": g_best / f_best, "forward_compile_s": f_first - f_best,
               "grad_compile_s": g_first - g_best, "time_per_step_s": step_s}
        rows.append(row)
        print(f"{name:>18} {f_best:10.3f} {g_best:9.3f} {row['ratio']:6.2f} "
              f"{row['grad_compile_s']:10.1f} {step_s:8.3f}", flush=True)
    write(args, __file__, {"problem": "least squares sigma 0.5, power law 0.5, d 2000 -> 64 "
                           "bins, T 20, 41 times", "rows": rows})


if __name__ == "__main__":
    main()
