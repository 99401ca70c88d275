"""Cost of schedule tuning: time per optimisation step, and a gradient evaluation against a
forward solve (target: below 5x), for the three predictors of `hsgd.tune`.

- streaming: noisy least squares (sigma = 0.5) on a power law (alpha = 0.5), d = 2000,
  T = 20, 41 output times, rtol 1e-6. `StreamingPredictor`'s default for least squares: the
  reduced variance ODE (`hsgd.least_squares_as_finite`, LinearKvaerno5) on all 2000 modes;
  and, as `[Kvaerno5]`, the path of every other loss: Kvaerno5 on the full ODE, coarsened to 64
  log bins (`reduced=False`). Schedules: 12 log-spaced knots (flat at the best constant, and
  decaying) and the cosine warm-up family.
- finite: `FiniteProblem.gaussian(2000, 1000, noise 0.5)`, 10 epochs, 41 times, 12 knots;
  `FinitePredictor` (LinearKvaerno5, rtol 1e-8).
- momentum: the same data, batch 20, 2000 iterations (20 epochs), 41 times, 12 knots and the
  momentum tuned jointly; `MomentumPredictor` (the lax.scan recursion).

"forward" is the same jitted solve returning the objective R(T); "gradient" is tune's own jitted
value-and-gradient (objective, gradient and the predicted curve). Both are timed alternately,
`--rounds` times after compilation, and the minimum is kept (wall clock and process CPU time:
the machine is shared, and the minimum is the least disturbed run). For the ODE predictors the
gradient is measured twice, with two numbers of checkpoints of `RecursiveCheckpointAdjoint`:
streaming Kvaerno5, the predictor's default (`checkpoint_count`, enough for every step: each step is
re-run once in reverse mode) against diffrax's default (`default ckpt`, ~sqrt(2 max_steps));
finite, the predictor's default (= diffrax's) against the same memory budget (`budget ckpt`).

    python benchmarks/tune.py [--out DIR] [--steps 10] [--rounds 5]
"""

import math
import time

import equinox as eqx
import jax
import numpy as np

from _common import parser, setup, write


def _min_times(fns, rounds):
    """Alternate the calls `rounds` times; (min wall, min CPU) seconds per name."""
    wall = {k: math.inf for k in fns}
    cpu = {k: math.inf for k in fns}
    for _ in range(rounds):
        for k, f in fns.items():
            w, c = time.perf_counter(), time.process_time()
            jax.block_until_ready(f())
            wall[k] = min(wall[k], time.perf_counter() - w)
            cpu[k] = min(cpu[k], time.process_time() - c)
    return wall, cpu


def _case(hsgd, label, predictors, sched, hyper_init, steps, rounds):
    """Ratios for one schedule: `predictors` maps variant -> predictor (first: the default)."""
    from hsgd._tune.tune import Hyperparameters, _value_and_grad

    default = next(iter(predictors.values()))
    hyper = Hyperparameters(hyper_init, default.bounds())
    params, static = eqx.partition(sched, sched.trainable())
    fwd = eqx.filter_jit(lambda p, pred: pred(eqx.combine(p, static), hyper.values())[-1])
    fns = {"forward": lambda: fwd(params, default)}
    for name, pred in predictors.items():
        fns[name] = (lambda pred: lambda: _value_and_grad((params, hyper.raw), static, hyper,
                                                          pred, "final"))(pred)
    compile_s = {}
    for k, f in fns.items():
        start = time.perf_counter()
        jax.block_until_ready(f())
        compile_s[k] = time.perf_counter() - start
    wall, cpu = _min_times(fns, rounds)
    start = time.perf_counter()
    hsgd.tune(default, sched, float(default.ts[-1]), num_steps=steps,
              hyperparameters=hyper_init or None)
    step_s = (time.perf_counter() - start) / (steps + 1)
    row = {"case": label, "forward_s": wall["forward"], "forward_cpu_s": cpu["forward"],
           "forward_first_call_s": compile_s["forward"], "time_per_step_s": step_s,
           "gradients": {name: {"grad_s": wall[name], "grad_cpu_s": cpu[name],
                                "ratio": wall[name] / wall["forward"],
                                "ratio_cpu": cpu[name] / cpu["forward"],
                                "first_call_s": compile_s[name]} for name in predictors}}
    for name, g in row["gradients"].items():
        print(f"{label:>30} {name:>13} {wall['forward']:9.4f} {g['grad_s']:9.4f} "
              f"{g['ratio']:6.2f} {g['ratio_cpu']:6.2f} {g['first_call_s']:8.1f} "
              f"{step_s:8.3f}", flush=True)
    return row


def main():
    p = parser(__doc__)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    setup(args)
    import hsgd
    from hsgd._tune.tune import time_grid

    def diffrax_default(max_steps):  # equinox's checkpointed_while_loop default
        return math.floor(-1.5 + math.sqrt(2 * max_steps + 0.25)) + 1

    print(f"{'case':>30} {'gradient':>13} {'forward s':>9} {'grad s':>9} {'ratio':>6} "
          f"{'cpu r.':>6} {'compile':>8} {'step s':>8}")
    rows = []
    prob = hsgd.Problem.random(hsgd.LeastSquares(0.5), hsgd.Spectrum.power_law(2000, 0.5),
                               jax.random.PRNGKey(0), target_norm=1.0)
    ts = time_grid(20.0, 41)
    reduced = {"reduced": hsgd.StreamingPredictor(prob, ts)}
    full = {"predictor ckpt": hsgd.StreamingPredictor(prob, ts, ode_bins=64, reduced=False),
            "default ckpt": hsgd.StreamingPredictor(prob, ts, ode_bins=64, reduced=False,
                                                    checkpoints=diffrax_default(16384))}
    knots = np.concatenate([[0.0], np.geomspace(0.2, 20.0, 11)])
    for name, sched in {"streaming knots (flat)": hsgd.TunableKnots(knots, np.full(12, 0.17)),
                        "streaming knots (decaying)": hsgd.TunableKnots(
                            knots, 0.8 * (1 + knots) ** -0.5),
                        "streaming cosine family": hsgd.TunableWarmupDecay(20.0, 0.4)}.items():
        rows.append(_case(hsgd, name, reduced, sched, {}, args.steps, args.rounds))
        rows.append(_case(hsgd, name + " [Kvaerno5]", full, sched, {}, args.steps,
                          args.rounds))

    data = hsgd.FiniteProblem.gaussian(2000, 1000, 0, noise_std=0.5)
    ts = time_grid(10.0, 41)
    finite = {"predictor ckpt": hsgd.FinitePredictor(data, ts),  # = diffrax's default
              "budget ckpt": hsgd.FinitePredictor(data, ts, checkpoints=2**21 // 1001)}
    rows.append(_case(hsgd, "finite knots (decaying)", finite,
                      hsgd.TunableKnots.init(10.0, 12, "log", 0.5), {}, args.steps, args.rounds))

    mom = {"recursion": hsgd.MomentumPredictor(data, time_grid(2000, 41), batch=20,
                                               momentum=0.5)}
    rows.append(_case(hsgd, "momentum knots + momentum", mom,
                      hsgd.TunableKnots.init(2000.0, 12, "log", 0.5), {"momentum": 0.5},
                      args.steps, args.rounds))
    print("(shared 2-core CPU: timings are noisy; minima over alternated rounds)")
    write(args, __file__, {
        "problems": {"streaming": "least squares sigma 0.5, power law 0.5, d 2000, T 20, 41 "
                                  "times, rtol 1e-6: reduced (LinearKvaerno5, 2000 modes); "
                                  "[Kvaerno5]: full ODE, 64 bins",
                     "finite": "gaussian n 2000 d 1000 noise 0.5, 10 epochs, 41 times, "
                               "LinearKvaerno5 rtol 1e-8",
                     "momentum": "same data, batch 20, momentum tuned, 2000 iterations"},
        "rounds": args.rounds, "rows": rows})


if __name__ == "__main__":
    main()
