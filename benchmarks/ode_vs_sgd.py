"""ODE wall time (compile separately) vs one SGD run, d = 1e3, 1e4, 1e5, power-law spectrum.

Problem: streaming logistic regression, power law alpha = 0.5 (tr K/d = 1), |X*| = 2, X0 = 0,
gamma = 1, horizon T = 5 (t = k/d). The ODE uses the spectrum coarsened to 256 log-spaced bins
(so its cost is flat in d); SGD runs the full d-dimensional iteration. For d = 1e5 one SGD run
to T = 5 takes 5e5 steps of O(d) work: it is timed on a shorter horizon (`--sgd-horizon-large`)
and extrapolated linearly in t (the cost per step is constant), which the JSON records.

    python benchmarks/ode_vs_sgd.py [--out DIR] [--float32]
"""

import jax
import jax.numpy as jnp

from _common import parser, setup, timed, write


def main():
    p = parser(__doc__)
    p.add_argument("--horizon", type=float, default=5.0)
    p.add_argument("--bins", type=int, default=256)
    p.add_argument("--sgd-horizon-large", type=float, default=0.5,
                   help="SGD horizon actually run for d >= 1e5 (then extrapolated)")
    args = p.parse_args()
    setup(args)
    import hsgd

    rows = []
    print(f"{'d':>8} {'ode s':>9} {'compile s':>10} {'steps':>6} {'sgd s (T)':>10} "
          f"{'measured T':>10} {'speed-up':>9}")
    for d in (1_000, 10_000, 100_000):
        spec = hsgd.Spectrum.power_law(d, 0.5)
        prob = hsgd.Problem.random(hsgd.Logistic(), spec, jax.random.PRNGKey(0), target_norm=2.0)
        coarse = prob.coarsen(args.bins)
        ts = jnp.linspace(0.0, args.horizon, 11)
        first, ode_s, sol = timed(lambda: hsgd.ode(coarse, 1.0, ts).risk)
        sgd_T = args.horizon if d < 100_000 else args.sgd_horizon_large
        sgd_ts = jnp.array([0.0, sgd_T])
        # warm-up compiles the SGD loop on a short horizon, then time the real one
        hsgd.simulate(prob, 1.0, jnp.array([0.0, 10.0 / d]), jax.random.PRNGKey(1), num_runs=1)
        _, sgd_measured, _ = timed(lambda: hsgd.simulate(prob, 1.0, sgd_ts, jax.random.PRNGKey(1),
                                                         num_runs=1).risk, repeats=1)
        sgd_s = sgd_measured * args.horizon / sgd_T
        n_steps = int(hsgd.ode(coarse, 1.0, ts).num_steps)
        row = dict(d=d, modes=coarse.spectrum.num_modes, ode_s=ode_s,
                   ode_compile_s=max(first - ode_s, 0.0), ode_steps=n_steps,
                   sgd_one_run_s=sgd_s, sgd_measured_horizon=sgd_T,
                   sgd_measured_s=sgd_measured, speedup=sgd_s / ode_s,
                   ode_final_risk=float(sol[-1]))
        rows.append(row)
        print(f"{d:>8} {ode_s:9.4f} {row['ode_compile_s']:10.2f} {n_steps:6d} {sgd_s:10.2f} "
              f"{sgd_T:10.3g} {row['speedup']:8.0f}x")
    write(args, __file__, {"horizon": args.horizon, "bins": args.bins, "rows": rows})


if __name__ == "__main__":
    main()
