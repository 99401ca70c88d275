"""Exact finite-d dynamics on the research group's power-law problem: accuracy and time of the
default `hsgd.ode` (issue 19, SPEC §8).

Problem (the research group's test case, the one of benchmarks/stiff.py with its finite d):
streaming least squares, D = 1e4 modes, lambda_j proportional to j^-2 (tr K/d = 1, so
lambda_1 = 0.61 D: gamma lambda_1 / d = 0.61 per iteration), target weights d x*_j^2
proportional to j^-1.4 (||X*||_K^2 = 1), X0 = 0, no label noise, batch 1, gamma = 1, 51 output
times (0 and 50 log-spaced on [1e-3, 10]; t = 10 is 1e5 iterations). At this d the finite-d
self-interaction matters: kappa = 0.989 (SPEC §8 (ii)) against 0.5 in the d -> infinity limit.

What is timed: `hsgd.ode` on the instance (its default: the continuous finite-d form on
StructuredKvaerno5) at several rtol. References: (1) the same equation solved at rtol 1e-11
(converged: its distance to the rtol 1e-12 solve is printed) — the integration error;
(2) the exact per-iteration recursion (`recursion=True`, lax.scan over the 1e5 iterations) —
the continuous form's own (model) difference from the exact dynamics, which is largest in the
first iterations (SPEC §8) and reported from k = 10, 100 and 1000 on. In-run baseline: a
first-order implicit Euler in log time on the same finite-d equation (our own implementation,
Sherman-Morrison per step; benchmarks/stiff.py's, with the self-interaction) at dt 0.1 / 0.01 /
0.001. Compile time is timed separately (first call); times are best of repeats after warm-up.

    python benchmarks/plrf.py --out benchmarks/results
"""

import jax
import jax.numpy as jnp
import numpy as np
from stiff import TS, alternating, log_time_implicit_euler, rel, row

from _common import parser, setup, timed, write

GAMMA = 1.0


def problem(hsgd, D):
    j = np.arange(1, D + 1, dtype=float)
    lam = j**-2.0
    lam = lam / lam.mean()
    tau = j**-1.4
    tau = tau / np.mean(lam * tau)
    return hsgd.Problem.from_arrays(hsgd.LeastSquares(0.0), lam, np.sqrt(tau / D))


def rel_from(x, ref, ts, t_min):
    keep = np.asarray(ts) >= t_min
    return float(np.max(np.abs(np.asarray(x)[keep] / np.asarray(ref)[keep] - 1)))


def main():
    args = parser(__doc__).parse_args()
    setup(args)
    import hsgd

    D = 10**4
    prob = problem(hsgd, D)
    ts = jnp.asarray(TS)
    stab = hsgd.theory.finite_d_stability(prob, GAMMA, 1)
    print(f"D = {D}: kappa {float(stab.kappa):.4f} (d -> infinity {float(stab.kappa_limit):.3f})")
    ref = np.asarray(hsgd.ode(prob, GAMMA, ts, rtol=1e-11).risk)
    ref12 = np.asarray(hsgd.ode(prob, GAMMA, ts, rtol=1e-12).risk)
    check = rel(ref, ref12)
    print(f"reference (continuous finite-d form, rtol 1e-11) vs rtol 1e-12: {check:.1e}")
    recursion = jax.jit(lambda p: hsgd.ode(p, GAMMA, ts, recursion=True).risk)
    first_x, best_x, exact = timed(lambda: recursion(prob), 2)
    exact = np.asarray(exact)
    limit = np.asarray(hsgd.ode(prob, GAMMA, ts, finite_d=False).risk)
    model = {f"k>={k}": rel_from(ref, exact, TS, k / D) for k in (10, 100, 1000)}
    print("continuous form vs the exact recursion: "
          + ", ".join(f"{k} {v:.2e}" for k, v in model.items())
          + f"; d -> infinity ODE vs the recursion: {rel_from(limit, exact, TS, 10 / D):.2f}")

    rows = []
    default = jax.jit(lambda p: hsgd.ode(p, GAMMA, ts))
    fn_e, steps_e = log_time_implicit_euler(prob, GAMMA, 0.0, TS, 0.01, d=D)
    first_d, _, sol = timed(lambda: default(prob), 0)
    first_e, _, _ = timed(fn_e, 0)
    t_d, t_e = alternating([lambda: default(prob), fn_e], 7)
    rows.append(row(f"hsgd.ode default (finite-d, rtol 1e-7), {D} modes", first_d, t_d,
                    rel(sol.risk, ref), int(sol.num_steps),
                    vs_recursion_from_k100=rel_from(sol.risk, exact, TS, 100 / D),
                    ratio_vs_euler_dt_0_01=t_d / t_e))
    for rtol in (1e-5, 1e-6, 1e-9):
        f = jax.jit(lambda p, r=rtol: hsgd.ode(p, GAMMA, ts, rtol=r))
        first, best, s = timed(lambda f=f: f(prob), 3)
        rows.append(row(f"hsgd.ode finite-d rtol {rtol:g}", first, best, rel(s.risk, ref),
                        int(s.num_steps), vs_recursion_from_k100=rel_from(s.risk, exact, TS,
                                                                          100 / D)))
    for dt in (0.1, 0.01, 0.001):
        fn, steps = log_time_implicit_euler(prob, GAMMA, 0.0, TS, dt, d=D)
        first, best, risk = timed(fn)
        rows.append(row(f"log-time implicit Euler dt {dt:g} (baseline)", first, best,
                        rel(risk, ref), steps))
    rows.append(row("exact recursion (lax.scan, 1e5 iterations)", first_x, best_x,
                    rel(exact, ref), int(TS[-1] * D),
                    note="error here = continuous form vs recursion (model, not integration)"))
    write(args, __file__, dict(D=D, gamma=GAMMA, kappa=float(stab.kappa),
                               kappa_limit=float(stab.kappa_limit), reference_check=check,
                               continuous_vs_recursion=model,
                               limit_vs_recursion=rel_from(limit, exact, TS, 10 / D), rows=rows))


if __name__ == "__main__":
    main()
