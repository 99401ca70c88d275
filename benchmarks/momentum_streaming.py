"""Streaming momentum (issue 15, SPEC §9): the cost of the momentum ODE against SGD's ODE on the
same problem and tolerance, and the power-law exponents of SGD, heavy ball and DANA-decaying.

Speed: least squares on a power law with D = 1e4 modes (lambda_j ~ j^-1, tr K/d = 1, sigma =
0.1, target weights lambda_j x*_j^2 ~ j^-1.5 normalised to ||x*||_K = 1, X0 = 0, 41 log-spaced
output times on [0.01, 100]), rtol 1e-7 (the default). Baseline in the same run: SGD's ODE on
StructuredKvaerno5 in the same form (least squares: both d -> infinity, finite_d=False, and both
with the exact finite-d terms, finite_d=True; logistic has none), the same tolerances. Rows: the
DANA-like family of SPEC §12 (a) (delta = 1/(1+t), gamma1 = gamma2 = 1, gamma3 = 0.3), the
same with gamma1 = gamma3 = 0 (SGD through the family), and logistic regression (||x*||_K = 3)
with both. Times are the best of 3 after a warm-up call, compile (first call) separately; the
ratio is to the SGD ODE of the same loss timed in the same run.

Exponents: DANA-decaying with the issue's settings against SGD at DANA's gamma2 on a PLRF-
normalised power law (lambda_j = j^{-2 alpha}, alpha = 0.75, beta_t = 0.5, D = 1e6 modes, the
d -> infinity form), noiseless (sigma = 0): the local slopes of log risk against log k and the
exponent fitted on k in [1e5, 2e6] (before the spectrum's cutoff steepens the curve), printed
next to the hsgd.theory predictions (~3 min).

PLRF (SPEC §13, Problem.plrf, deterministic equivalent): the same two exponents of risk - P_inf
at d = 4000 and 16000 (v = 4d), fitted on k in [1e2, 3e3] iterations, and each curve's largest
local slope.

Tune: at a fixed sample budget, DANA-decaying with the issue's settings, SGD with a tuned schedule
and DANA-decaying with gamma2(t), gamma3(t), delta(t) tuned jointly, each prediction against 16
runs of its optimizer.

    python benchmarks/momentum_streaming.py --out benchmarks/results   # ~5 min on 2 cores
    python benchmarks/momentum_streaming.py --out benchmarks/results --parts plrf,tune
"""


import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from _common import parser, setup, timed, write

D = 10_000
TS = np.geomspace(0.01, 100.0, 41)


def power_law_problem(hsgd, loss, d, exponent, target_exponent, norm, normalize="mean"):
    spec = hsgd.Spectrum.power_law(d, exponent, normalize=normalize)
    lam = np.asarray(spec.eigenvalues)
    j = np.arange(1, d + 1)
    weights = j ** (-float(target_exponent))
    weights = norm**2 * weights / weights.sum()
    return hsgd.Problem.from_arrays(loss, spec, np.sqrt(weights / lam))


def speed(hsgd):
    from hsgd._optimizer.linear_momentum import PowerDecay

    rows = []
    ts = jnp.asarray(TS)
    for loss_name, loss, norm, forms in (
            ("least squares", hsgd.LeastSquares(0.1), 1.0, (False, True)),
            ("logistic", hsgd.Logistic(), 3.0, (None,))):
        prob = power_law_problem(hsgd, loss, D, 1.0, 1.5, norm)
        for finite_d in forms:
            form = {False: "d -> inf", True: "finite d", None: "-"}[finite_d]
            kw = {} if finite_d is None else dict(finite_d=finite_d)

            def sgd():
                sol = hsgd.ode(prob, hsgd.SGD(1.0), ts, solver=hsgd.StructuredKvaerno5(), **kw)
                return sol.risk, sol.num_steps

            def dana():
                opt = hsgd.LinearMomentum(1.0, 1.0, 0.3, PowerDecay(1.0, 1.0, 1.0))
                sol = hsgd.ode(prob, opt, ts, **kw)
                return sol.risk, sol.num_steps

            def plain():
                sol = hsgd.ode(prob, hsgd.LinearMomentum(0.0, 1.0, 0.0, 1.0), ts, **kw)
                return sol.risk, sol.num_steps

            base_first, base, (base_risk, base_steps) = timed(sgd)
            for name, fn in (("momentum (DANA-like)", dana),
                             ("momentum, gamma1 = gamma3 = 0", plain)):
                first, best, (risk, steps) = timed(fn)
                row = dict(loss=loss_name, form=form, method=name, modes=D,
                           compile_s=first - best, run_s=best, steps=int(steps),
                           sgd_run_s=base, sgd_compile_s=base_first - base,
                           sgd_steps=int(base_steps), ratio=best / base,
                           max_rel_to_sgd=float(np.max(np.abs(np.asarray(risk)
                                                              / np.asarray(base_risk) - 1))))
                rows.append(row)
                print(f"{loss_name:14s} {form:8s} {name:30s} run {best:6.3f} s ({int(steps)} "
                      f"steps)  SGD {base:6.3f} s ({int(base_steps)})  ratio {best / base:5.2f}"
                      f"  compile {first - best:5.1f} s  max|risk/SGD - 1| "
                      f"{row['max_rel_to_sgd']:.2e}", flush=True)
    return rows


def exponents(hsgd):
    """The drift-limited exponents on the PLRF-normalised power law (alpha = 0.75, beta_t = 0.5,
    noiseless) with D = 1e6 modes in the d -> infinity form (both optimizers), so that the
    window before the spectrum's cutoff is four decades wide: the local slope
    -d log R / d log k at log-spaced iterations k (the cutoff steepens it from k ~ D on), and
    the exponent fitted on k in [1e5, 2e6]."""
    alpha, beta_t, modes = 0.75, 0.5, 10**6
    prob = power_law_problem(hsgd, hsgd.LeastSquares(0.0), modes, 2 * alpha,
                             2 * alpha + 2 * beta_t, 1.0, normalize=None)
    ks = np.geomspace(10.0, 10.0 * modes, 37)
    ts = jnp.asarray(ks / modes)
    dana = hsgd.DANADecaying(alpha=alpha, target_exponent=beta_t)
    gamma2 = float(dana.linear(prob).gamma2(0.0))
    out = dict(modes=modes, iterations=ks.tolist(), window_iterations=[1e5, 2e6])
    for name, opt in (("sgd", hsgd.SGD(gamma2)), ("dana_decaying", dana)):
        kw = dict(solver=hsgd.StructuredKvaerno5()) if name == "sgd" else {}
        start = time.perf_counter()
        risk = np.asarray(hsgd.ode(prob, opt, ts, finite_d=False, **kw).risk)
        local = -np.gradient(np.log(risk), np.log(ks))
        out[name] = dict(fitted=hsgd.theory.fitted_exponent(ks, risk, 1e5, 2e6),
                         local_slope=local.tolist(), risk=risk.tolist(),
                         seconds=time.perf_counter() - start)
    out["sgd"]["predicted"] = float(hsgd.theory.sgd_power_law_exponent(alpha, beta_t))
    out["dana_decaying"]["predicted"] = float(hsgd.theory.dana_power_law_exponent(alpha, beta_t))
    for name in ("sgd", "dana_decaying"):
        slopes = "  ".join(f"{k:.0e}: {v:.3f}" for k, v in
                           zip(ks[4::4], out[name]["local_slope"][4::4]))
        print(f"{name:14s} fitted exponent on k in [1e5, 2e6] {out[name]['fitted']:.3f}  "
              f"heuristic {out[name]['predicted']:.3f}  local slopes {slopes}", flush=True)
    return out


def plrf(hsgd):
    """The same comparison on PLRF (SPEC §13), its deterministic equivalent
    (Problem.plrf(..., deterministic=True): exact P_inf, finite-d dynamics at d, 4096 modes),
    alpha = 0.75, beta = 0.5, v = 4d, d = 4000 and 16000, both optimizers' default (finite-d)
    ODE: the exponent of risk - P_inf fitted on k in [1e2, 3e3] iterations (the drift-limited
    window: SGD's local slope leaves 1 near k ~ 1e4 at d = 16000, where the finite-d terms
    take over, long before the plateau at k ~ d^(2 alpha)), and the largest local slope of
    each curve."""
    alpha, beta_t = 0.75, 0.5
    out = dict(window_iterations=[1e2, 3e3], alpha=alpha, beta=beta_t)
    for d in (4000, 16000):
        prob = hsgd.Problem.plrf(alpha, beta_t, v=4 * d, d=d, deterministic=True,
                                 num_modes=4096)
        floor = 0.5 * float(prob.loss.noise.std) ** 2
        ks = np.geomspace(10.0, 1e3 * d, 61)
        ts = jnp.asarray(np.concatenate([[0.0], ks / d]))
        dana = hsgd.DANADecaying(alpha=alpha, target_exponent=beta_t)
        gamma2 = float(dana.linear(prob).gamma2(0.0))
        row = dict(P_inf=floor, gamma2=gamma2, iterations=ks.tolist())
        for name, opt in (("sgd", hsgd.SGD(gamma2)), ("dana_decaying", dana)):
            excess = np.asarray(hsgd.ode(prob, opt, ts).risk)[1:] - floor
            local = -np.gradient(np.log(excess), np.log(ks))
            row[name] = dict(fitted=hsgd.theory.fitted_exponent(ks, excess, 1e2, 3e3),
                             max_local_slope=float(np.max(local)),
                             excess=excess.tolist())
            print(f"PLRF d = {d:6d} {name:14s} fitted exponent of risk - P_inf on k in "
                  f"[1e2, 3e3] {row[name]['fitted']:.3f}, largest local slope "
                  f"{row[name]['max_local_slope']:.3f}", flush=True)
        out[str(d)] = row
    out["predicted"] = dict(sgd=float(hsgd.theory.sgd_power_law_exponent(alpha, beta_t)),
                            dana_decaying=float(hsgd.theory.dana_power_law_exponent(alpha,
                                                                                   beta_t)))
    print(f"heuristic exponents: SGD {out['predicted']['sgd']:.3f}, DANA-decaying "
          f"{out['predicted']['dana_decaying']:.3f}", flush=True)
    return out


def tuned(hsgd):
    """Tuning at a fixed sample budget (T = 10, k = 10 d samples; least squares on the PLRF-
    normalised power law, d = 1000, alpha = 0.75, beta_t = 0.5, sigma = 0): DANA-decaying with
    the issue's settings; SGD with its schedule tuned (12 log-spaced knots from the best
    constant); DANA-decaying with gamma2(t), gamma3(t), delta(t) tuned jointly from its own
    curves (family="modulated", coefficients=("gamma3", "delta")). Each predicted final risk
    against the mean of 16 runs of that optimizer (the SGD check)."""
    d, alpha, beta_t, T = 1000, 0.75, 0.5, 10.0
    prob = power_law_problem(hsgd, hsgd.LeastSquares(0.0), d, 2 * alpha,
                             2 * alpha + 2 * beta_t, 1.0, normalize=None)
    dana = hsgd.DANADecaying(alpha=alpha, target_exponent=beta_t)
    runs = {}

    start = time.perf_counter()
    sgd = hsgd.tune(prob, "knots", T, num_steps=40, learning_rate=0.1)
    runs["sgd_tuned"] = (sgd.optimizer, time.perf_counter() - start, sgd.ts)
    start = time.perf_counter()
    joint = hsgd.tune(prob, "modulated", T, optimizer=dana, coefficients=("gamma3", "delta"),
                      num_steps=40, learning_rate=0.1)
    runs["dana_tuned"] = (joint.optimizer, time.perf_counter() - start, joint.ts)
    runs["dana_paper"] = (dana, 0.0, joint.ts)
    out = {}
    for i, (name, (opt, wall, ts)) in enumerate(runs.items()):
        pred = float(hsgd.ode(prob, opt, ts).risk[-1])
        sims = np.asarray(hsgd.simulate(prob, opt, ts, jax.random.PRNGKey(20 + i),
                                        num_runs=16).risk)[:, -1]
        mean, se = float(sims.mean()), float(sims.std(ddof=1) / np.sqrt(len(sims)))
        out[name] = dict(predicted=pred, runs_mean=mean, runs_se=se, tune_s=wall,
                         rel=pred / mean - 1)
        print(f"{name:11s} predicted R(T) {pred:.4e}  16 runs {mean:.4e} +- {se:.1e}  "
              f"(pred/runs - 1 = {pred / mean - 1:+.3f}, {abs(pred - mean) / se:.1f} SE)  "
              f"tune {wall:5.1f} s", flush=True)
    return out


PARTS = {"speed": speed, "exponents": exponents, "plrf": plrf, "tune": tuned}


def main():
    p = parser(__doc__)
    p.add_argument("--parts", default=",".join(PARTS), help="comma-separated: " + ",".join(PARTS))
    args = p.parse_args()
    setup(args)
    import hsgd

    folder = Path(args.out) if args.out else Path(__file__).resolve().parent
    old = folder / (Path(__file__).stem + ".json")
    payload = json.loads(old.read_text()) if old.exists() else {}
    payload.pop("machine", None)
    for name in args.parts.split(","):
        print(f"--- {name}", flush=True)
        payload[name] = PARTS[name](hsgd)
    write(args, __file__, payload)


if __name__ == "__main__":
    main()

