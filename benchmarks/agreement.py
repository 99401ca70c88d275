"""Full-size ODE-vs-SGD agreement (issue acceptance check): d = 4000, mean of 16 SGD runs.

Settings (SPEC §7, scaled up), X* ~ N(0, s^2 I/d) with |X*| ≈ s, X0 = 0 unless stated:

| loss | spectrum | gamma | T | init |
|---|---|---|---|---|
| least squares, sigma = 0.5 | uniform [0.2, 1.8] | 1.0 | 6 | s = 1 |
| logistic (Bernoulli teacher) | uniform [0.1, 1.9] | 2.0 | 8 | s = 2 |
| softmax, C = 3 | uniform [0.1, 1.9] | 2.0 | 8 | s = 2 |
| phase retrieval | uniform [0.5, 1.5] | 0.03 | 8 | s = 1, X0 = 0.3 X* + N(0, 0.25 I/d) |
| Huber (user-defined), sigma = 0.5 | power law alpha = 0.5 | 1.0 | 8 | s = 1.5 |
| logistic | power law alpha = 0.5 | 1.0 | 10 | s = 2 |

Acceptance: max relative error over the grid <= 2% (5% for phase retrieval).

    python benchmarks/agreement.py [--d 4000] [--runs 16] [--out DIR]
"""

import time

import jax
import jax.numpy as jnp
import numpy as np

from _common import parser, setup, write


def huber(x, x_star, eps):
    u = x[0] - x_star[0] - eps
    return jnp.where(jnp.abs(u) < 1.0, 0.5 * u**2, jnp.abs(u) - 0.5)


def cases(hsgd):
    return {
        "least_squares": (hsgd.LeastSquares(0.5), lambda d: hsgd.Spectrum.uniform(d, 0.2, 1.8),
                          1.0, 6.0, dict(target_norm=1.0), 0.02),
        "logistic": (hsgd.Logistic(), lambda d: hsgd.Spectrum.uniform(d, 0.1, 1.9), 2.0, 8.0,
                     dict(target_norm=2.0), 0.02),
        "softmax_C3": (hsgd.Softmax(3), lambda d: hsgd.Spectrum.uniform(d, 0.1, 1.9), 2.0, 8.0,
                       dict(target_norm=2.0), 0.02),
        "phase_retrieval": (hsgd.PhaseRetrieval(), lambda d: hsgd.Spectrum.uniform(d, 0.5, 1.5),
                            0.03, 8.0, dict(target_norm=1.0, overlap=0.3, init_norm=0.5), 0.05),
        "huber_user_defined": (hsgd.CustomLoss(huber, noise=hsgd.GaussianNoise(0.5)),
                               lambda d: hsgd.Spectrum.power_law(d, 0.5), 1.0, 8.0,
                               dict(target_norm=1.5), 0.02),
        "logistic_power_law": (hsgd.Logistic(), lambda d: hsgd.Spectrum.power_law(d, 0.5), 1.0,
                               10.0, dict(target_norm=2.0), 0.02),
    }


def main():
    p = parser(__doc__)
    p.add_argument("--d", type=int, default=4000)
    p.add_argument("--runs", type=int, default=16)
    p.add_argument("--only", default=None, help="comma-separated case names")
    args = p.parse_args()
    setup(args)
    import hsgd

    results = {}
    print(f"{'case':>20} {'max rel err':>12} {'bound':>6} {'pass':>5} {'max SE/mean':>12} "
          f"{'ode s':>7} {'sgd s':>7}")
    for name, (loss, spectrum, gamma, T, kw, bound) in cases(hsgd).items():
        if args.only and name not in args.only.split(","):
            continue
        prob = hsgd.Problem.random(loss, spectrum(args.d), jax.random.PRNGKey(0), **kw)
        ts = np.linspace(0.0, T, 17)
        start = time.perf_counter()
        sol = jax.block_until_ready(hsgd.ode(prob, gamma, ts))
        ode_s = time.perf_counter() - start
        start = time.perf_counter()
        sgd = hsgd.simulate(prob, gamma, ts, jax.random.PRNGKey(1), num_runs=args.runs)
        mean = np.asarray(jax.block_until_ready(sgd.mean()))
        sgd_s = time.perf_counter() - start
        rel = np.abs(np.asarray(sol.risk) - mean) / mean
        se = np.asarray(sgd.std()) / np.sqrt(args.runs) / mean
        results[name] = dict(max_rel_error=float(rel.max()), bound=bound,
                             passed=bool(rel.max() <= bound), max_standard_error=float(se.max()),
                             rel_error=rel.tolist(), ts=ts.tolist(), ode_s=ode_s, sgd_s=sgd_s,
                             gamma=gamma, horizon=T, init=kw)
        print(f"{name:>20} {rel.max():12.4f} {bound:6.2f} {str(rel.max() <= bound):>5} "
              f"{se.max():12.4f} {ode_s:7.2f} {sgd_s:7.1f}", flush=True)
    write(args, __file__, {"d": args.d, "runs": args.runs, "cases": results})


if __name__ == "__main__":
    main()
