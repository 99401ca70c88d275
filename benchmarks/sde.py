"""Homogenized SGD (`hsgd.sde`) vs SGD (`hsgd.simulate`): fluctuations, means and wall time.

Two problems (SPEC §1), X0 = 0, horizon T = 4 (t = k/d), record times 0, 0.5, ..., 4:
least squares on the uniform spectrum [0.2, 1.8], noise sigma = 0.5, gamma = 1; logistic
regression (Bernoulli teacher) on the uniform spectrum [0.1, 1.9], |X*| = 2, gamma = 2.
For d in {250, 500, 1000, 2000}: 32 SDE paths and 32 SGD runs (same instance). Reported:
the final-time std of the risk over paths / runs and their ratio (expect ~1: homogenized SGD
has SGD's fluctuations), the log-log slope of std vs d (expect ~ -0.5), the largest relative
error over the grid of each mean vs the ODE, and wall times (SDE: compile separately, best of
the timed calls; SGD: same). The SDE uses its defaults (Euler-Maruyama, default_dt).

    python benchmarks/sde.py [--out DIR] [--float32] [--paths 32] [--dims 250 500 1000 2000]
"""

import jax
import jax.numpy as jnp
import numpy as np

from _common import parser, setup, timed, write


def main():
    p = parser(__doc__)
    p.add_argument("--paths", type=int, default=32)
    p.add_argument("--dims", type=int, nargs="+", default=[250, 500, 1000, 2000])
    p.add_argument("--horizon", type=float, default=4.0)
    args = p.parse_args()
    setup(args)
    import hsgd

    ts = jnp.linspace(0.0, args.horizon, 9)
    cases = {
        "least_squares": lambda d: (hsgd.Problem.random(
            hsgd.LeastSquares(noise_std=0.5), hsgd.Spectrum.uniform(d, 0.2, 1.8),
            jax.random.PRNGKey(0)), 1.0),
        "logistic": lambda d: (hsgd.Problem.random(
            hsgd.Logistic(), hsgd.Spectrum.uniform(d, 0.1, 1.9), jax.random.PRNGKey(0),
            target_norm=2.0), 2.0),
    }
    rows = []
    header = (f"{'loss':>13} {'d':>5} {'std sde':>9} {'std sgd':>9} {'ratio':>6} "
              f"{'err sde':>8} {'err sgd':>8} {'sde s':>7} {'compile':>8} {'sgd s':>7} "
              f"{'steps':>6}")
    print(header)
    for name, make in cases.items():
        for d in args.dims:
            prob, gamma = make(d)
            ode = np.asarray(hsgd.ode(prob, gamma, ts).risk)
            # two calls with different keys: the second reuses the compiled solve
            keys = iter(jax.random.split(jax.random.PRNGKey(d), 8))
            first, sde_s, _ = timed(lambda: hsgd.sde(prob, gamma, ts, next(keys),
                                                     num_paths=args.paths).risk, repeats=1)
            sde_res = hsgd.sde(prob, gamma, ts, jax.random.PRNGKey(1), num_paths=args.paths)
            sgd_first, sgd_s, _ = timed(lambda: hsgd.simulate(
                prob, gamma, ts, jax.random.PRNGKey(2), num_runs=args.paths).risk, repeats=1)
            sgd_res = hsgd.simulate(prob, gamma, ts, jax.random.PRNGKey(3), num_runs=args.paths)
            dt = hsgd._sde.default_dt(prob, gamma)
            sde_mean, sgd_mean = np.asarray(sde_res.mean()), np.asarray(sgd_res.mean())
            row = dict(
                loss=name, d=d, gamma=gamma, paths=args.paths, dt=dt,
                steps=int(np.ceil(args.horizon / dt - 1e-9)),
                std_sde=float(sde_res.std()[-1]), std_sgd=float(sgd_res.std()[-1]),
                err_sde=float(np.max(np.abs(sde_mean - ode) / ode)),
                err_sgd=float(np.max(np.abs(sgd_mean - ode) / ode)),
                final_risk_ode=float(ode[-1]), final_mean_sde=float(sde_mean[-1]),
                final_mean_sgd=float(sgd_mean[-1]),
                sde_s=sde_s, sde_compile_s=max(first - sde_s, 0.0),
                sgd_s=sgd_s, sgd_compile_s=max(sgd_first - sgd_s, 0.0))
            row["std_ratio"] = row["std_sde"] / row["std_sgd"]
            rows.append(row)
            print(f"{name:>13} {d:>5} {row['std_sde']:9.3e} {row['std_sgd']:9.3e} "
                  f"{row['std_ratio']:6.2f} {row['err_sde']:8.2%} {row['err_sgd']:8.2%} "
                  f"{sde_s:7.2f} {row['sde_compile_s']:8.2f} {sgd_s:7.2f} {row['steps']:6d}",
                  flush=True)
    slopes = {}
    for name in cases:
        sel = [r for r in rows if r["loss"] == name]
        logd = np.log([r["d"] for r in sel])
        slopes[name] = {k: float(np.polyfit(logd, np.log([r[f"std_{k}"] for r in sel]), 1)[0])
                        for k in ("sde", "sgd")}
        print(f"{name}: log-log slope of final std vs d: sde {slopes[name]['sde']:+.2f}, "
              f"sgd {slopes[name]['sgd']:+.2f} (expect -0.5)")
    write(args, __file__, {"horizon": args.horizon, "ts": np.asarray(ts).tolist(),
                           "rows": rows, "slopes": slopes})


if __name__ == "__main__":
    main()
