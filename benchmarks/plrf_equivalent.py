"""The deterministic PLRF problem against sampled feature matrices (issue 19's check: loss
curves within 2% at d = 1000, v = 4000; SPEC §13).

For each (alpha, beta, batch): the exact finite-d dynamics (SPEC §8, `hsgd.ode`) on
`Problem.plrf(..., deterministic=True)` (4096 modes) against the mean of the same dynamics
over `--samples` sampled W (each reduced exactly by its SVD), at k = 10 ... 1e6 iterations,
stepsize `hsgd.scaling.default_eta`. Only the spectrum and the target weights differ, so the
difference is the equivalent's own error plus the sampling error of the mean (reported as SE).
The sampled curves scatter ~8% per W: 12 samples (SE 1-3%) cannot resolve a 2% bar; 48 can.

    python benchmarks/plrf_equivalent.py --out benchmarks/results
"""

import time

import jax
import numpy as np

from _common import parser, setup, write

CASES = [(1.0, 0.7, 1), (1.0, 0.7, 8), (1.0, 0.3, 1), (0.7, 0.8, 1)]


def main():
    p = parser(__doc__)
    p.add_argument("--samples", type=int, default=48)
    p.add_argument("--d", type=int, default=1000)
    args = p.parse_args()
    setup(args)
    import hsgd

    d, v = args.d, 4 * args.d
    ks = np.array([10, 100, 1000, 1e4, 1e5, 1e6])
    rows = []
    print(f"{'alpha':>5} {'beta':>5} {'B':>3} {'max |rel err|':>14} {'max |z|':>8} "
          f"{'det s':>6} {'sampled s':>9}")
    for a, b, batch in CASES:
        opt = hsgd.SGD(float(hsgd.scaling.default_eta(a, batch)) * d, batch=batch)
        start = time.perf_counter()
        det = hsgd.Problem.plrf(a, b, v, d, deterministic=True, num_modes=4096)
        pred = np.asarray(hsgd.ode(det, opt, ks / d).risk)
        det_s = time.perf_counter() - start
        start = time.perf_counter()
        runs = np.array([np.asarray(hsgd.ode(hsgd.Problem.plrf(
            a, b, v, d, key=jax.random.PRNGKey(1000 + s)), opt, ks / d).risk)
            for s in range(args.samples)])
        samp_s = time.perf_counter() - start
        mean = runs.mean(0)
        se = runs.std(0, ddof=1) / np.sqrt(runs.shape[0])
        rel, z = (pred - mean) / mean, (pred - mean) / se
        rows.append({"alpha": a, "beta": b, "batch": batch, "iterations": ks.tolist(),
                     "deterministic": pred.tolist(), "sampled_mean": mean.tolist(),
                     "sampled_se": se.tolist(), "relative_error": rel.tolist(),
                     "seconds_deterministic": det_s, "seconds_sampled": samp_s})
        print(f"{a:5.2f} {b:5.2f} {batch:3d} {np.max(np.abs(rel)):14.4f} "
              f"{np.max(np.abs(z)):8.2f} {det_s:6.1f} {samp_s:9.1f}")
    write(args, __file__, {"d": d, "v": v, "samples": args.samples, "cases": rows})


if __name__ == "__main__":
    main()
