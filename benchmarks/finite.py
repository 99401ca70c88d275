"""Finite data, multi-pass SGD on least squares (SPEC §2): the issue's checks at full size.

1. agreement: Gaussian data n = 4000, d = 2000, label noise 0.3, gamma at 0.3, 0.6, 0.9 of
   gamma_max, 20 epochs: per-mode ODE, Volterra and the mean of 16 SGD runs; max relative
   error over the epochs for the training loss and the population risk (bound 2%, 4% at 0.9).
2. power_law: 10^4 modes lambda_j ~ j^-1.5 spanning 6 decades (sum = n = 2 10^4), t up to
   10^4: ODE (LinearKvaerno5, rtol 1e-9) vs Volterra (resolution 1e-3): max relative
   difference (bound 1e-6) and the cost of each (compile separately, best of 3 after warm-up).
3. criticality: n = 8000, d = 4000 Gaussian data with noise 0.3; at 0.95 gamma_max both the
   prediction and 8 SGD runs stay bounded and reach psi(inf) within 5% by epoch 150; at 1.05
   gamma_max the prediction reports divergence and SGD's loss grows. Decay rate of
   psi - psi(inf) (noiseless data, n = 2000, d = 1000) vs 2 gamma lambda*(gamma) on both sides
   of gamma*. (Near gamma_max, O(1/n) corrections to the kernel norm — e.g. the discrete-time
   term gamma^2 lambda^2 / n^2 per step — are amplified by 1 / (1 - |K|) = 20 in psi(inf): SGD
   at n = 2000 sits 8.6% above the prediction, hence n = 8000 here.)
4. digits: random features (d = 500, ReLU) of scikit-learn's digits (1000 train / 797 test),
   stepsizes 0.25 and 0.5 of the single-row stability limit 2 / max_i |a_i|^2 (and 0.9 for
   information): Volterra vs the mean of 8 SGD runs at every epoch up to 20 (bound 10%).

    python benchmarks/finite.py [--out DIR] [--float32] [--skip digits ...]
"""

import time

import jax
import jax.numpy as jnp
import numpy as np

from _common import parser, run_parts, setup, timed


def rel(a, b):
    return float(np.max(np.abs(np.asarray(a) / np.asarray(b) - 1)))


def agreement(hsgd):
    prob = hsgd.FiniteProblem.gaussian(4000, 2000, 0, noise_std=0.3)
    ts = jnp.linspace(0, 20, 21)
    out = []
    print(f"{'gamma/gmax':>10} {'ode-volt':>9} {'loss err':>9} {'risk err':>9} {'SE/mean':>8} "
          f"{'ode s':>7} {'volt s':>7} {'sgd s':>7}")
    for frac in (0.3, 0.6, 0.9):
        g = frac * float(hsgd.theory.gamma_max(prob))
        _, t_ode, a = timed(lambda: hsgd.ode(prob, g, ts), repeats=1)
        _, t_vol, b = timed(lambda: hsgd.volterra(prob, g, ts), repeats=1)
        start = time.perf_counter()
        res = jax.block_until_ready(hsgd.simulate(prob, g, ts, jax.random.key(1), num_runs=16))
        t_sgd = time.perf_counter() - start
        m, mr = np.mean(res.loss, 0), np.mean(res.risk, 0)
        se = float(np.max(np.std(res.loss, 0, ddof=1) / 4 / m))
        row = dict(fraction=frac, gamma=g, ode_vs_volterra=max(rel(a.loss, b.loss),
                                                             rel(a.risk, b.risk)),
                   loss_error=rel(b.loss, m), risk_error=rel(b.risk, mr), max_se_over_mean=se,
                   bound=0.04 if frac == 0.9 else 0.02, ode_s=t_ode, volterra_s=t_vol,
                   sgd_s=t_sgd)
        out.append(row)
        print(f"{frac:10.2f} {row['ode_vs_volterra']:9.1e} {row['loss_error']:9.4f} "
              f"{row['risk_error']:9.4f} {se:8.4f} {t_ode:7.3f} {t_vol:7.3f} {t_sgd:7.1f}")
    return out


def power_law(hsgd):
    d, n = 10_000, 20_000
    lam = np.arange(1, d + 1) ** -1.5
    lam *= n / lam.sum()
    prob = hsgd.FiniteProblem.from_spectrum(lam, np.ones(d), n, loss_min=100.0)
    ts = jnp.asarray(np.concatenate([[0.0], np.logspace(-3, 4, 50)]))
    g = 0.5 * float(hsgd.theory.gamma_max(prob))
    c_ode, t_ode, a = timed(lambda: hsgd.ode(prob, g, ts))
    c_vol, t_vol, b = timed(lambda: hsgd.volterra(prob, g, ts))
    row = dict(modes=d, decades=float(np.log10(lam.max() / lam.min())), horizon=1e4,
               max_rel_diff=rel(a.loss, b.loss), bound=1e-6, ode_first_s=c_ode, ode_s=t_ode,
               ode_steps=int(a.num_steps), volterra_first_s=c_vol, volterra_s=t_vol,
               volterra_steps=int(b.num_steps))
    print(f"power law: {d} modes, {row['decades']:.1f} decades, t <= 1e4: max rel diff "
          f"{row['max_rel_diff']:.2e}; ODE {t_ode:.3f} s ({row['ode_steps']} steps, first "
          f"{c_ode:.1f} s); Volterra {t_vol:.3f} s ({row['volterra_steps']} steps, first "
          f"{c_vol:.1f} s)")
    return row


def criticality(hsgd, n=8000, d=4000):
    prob = hsgd.FiniteProblem.gaussian(n, d, 1, noise_std=0.3)
    gm = float(hsgd.theory.gamma_max(prob))
    ts = jnp.linspace(0, 150, 16)
    out = {}
    g = 0.95 * gm
    pred = hsgd.volterra(prob, g, ts)
    res = hsgd.simulate(prob, g, ts, jax.random.key(0), num_runs=8)
    limit = float(hsgd.theory.limit_loss(prob, g))
    out["below"] = dict(gamma=g, limit=limit, predicted_final=float(pred.loss[-1]),
                        sgd_final=float(np.mean(res.loss[:, -1])),
                        predicted_error=abs(float(pred.loss[-1]) / limit - 1),
                        sgd_error=abs(float(np.mean(res.loss[:, -1])) / limit - 1),
                        sgd_max_over_limit=float(np.max(res.loss) / limit),
                        bounded=bool(not pred.diverged and not np.any(res.diverged)))
    g = 1.05 * gm
    pred = hsgd.volterra(prob, g, ts)
    res = hsgd.simulate(prob, g, jnp.linspace(0, 30, 7), jax.random.key(0), num_runs=4)
    out["above"] = dict(gamma=g, predicted_diverged=bool(pred.diverged),
                        predicted_divergence_time=float(pred.divergence_time),
                        sgd_diverged=bool(np.all(res.diverged)),
                        sgd_divergence_times=np.asarray(res.divergence_time).tolist())
    print(f"0.95 gmax: psi(inf) {limit:.2f}, predicted {out['below']['predicted_final']:.2f} "
          f"({out['below']['predicted_error']:.2%}), SGD {out['below']['sgd_final']:.2f} "
          f"({out['below']['sgd_error']:.2%}); 1.05 gmax: predicted diverged "
          f"{out['above']['predicted_diverged']} at t = "
          f"{out['above']['predicted_divergence_time']:.0f}, SGD diverged "
          f"{out['above']['sgd_diverged']}")
    n, d = 2000, 1000
    clean = hsgd.FiniteProblem.gaussian(n, d, 3)
    gs = hsgd.theory.phase_transition_stepsize(n, d)
    ts = jnp.linspace(0, 160, 161)
    rates = []
    for frac, (i, j) in ((0.5, (120, 160)), (0.8, (70, 100)), (0.95, (60, 100)),
                         (0.99, (60, 100))):
        g = frac * float(hsgd.theory.gamma_max(clean))
        sol = hsgd.volterra(clean, g, ts)
        ex = np.asarray(sol.loss) - float(hsgd.theory.limit_loss(clean, g))
        measured = -(np.log(ex[j]) - np.log(ex[i])) / (ts[j] - ts[i])
        predicted = float(hsgd.theory.asymptotic_rate(clean, g))
        rates.append(dict(fraction=frac, side="below gamma*" if g < gs else "above gamma*",
                          measured=float(measured), predicted=predicted,
                          error=abs(float(measured) / predicted - 1), window=[i, j]))
        print(f"  rate at {frac:.2f} gmax ({rates[-1]['side']}): measured {measured:.4f}, "
              f"2 gamma lambda* = {predicted:.4f} ({rates[-1]['error']:.1%})")
    out["rates"] = rates
    out["gamma_star_over_gamma_max"] = gs / float(hsgd.theory.gamma_max(clean))
    return out


def digits(hsgd, runs=8):
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    perm = np.random.default_rng(0).permutation(len(y))
    X, y = X[perm] / 16.0, y[perm].astype(float)
    X = (X - X.mean(0)) / (X - X.mean(0)).std()
    y = (y - y.mean()) / y.std()
    prob = hsgd.FiniteProblem.random_features(X[:1000], y[:1000], num_features=500, key=0,
                                              test=(X[1000:], y[1000:]))
    rows = np.sum(np.asarray(prob.data.A) ** 2, axis=1)
    limit = 2 / rows.max()
    ts = jnp.arange(0.0, 21.0)
    out = []
    for frac in (0.25, 0.5, 0.9):
        g = frac * limit
        pred = hsgd.volterra(prob, g, ts)
        res = hsgd.simulate(prob, g, ts, jax.random.key(0), num_runs=runs)
        row = dict(fraction_of_row_limit=frac, gamma=g, gamma_over_gamma_max=g / float(
            hsgd.theory.gamma_max(prob)), loss_error=rel(pred.loss, np.mean(res.loss, 0)),
            test_error=rel(pred.risk, np.mean(res.risk, 0)), bound=0.10 if frac < 0.9 else None)
        out.append(row)
        print(f"digits RF, gamma = {frac} x 2/max|a|^2 = {g:.3f}: train {row['loss_error']:.2%},"
              f" test {row['test_error']:.2%}")
    return dict(row_norm_sq=dict(mean=float(rows.mean()), max=float(rows.max())), runs=runs,
                cases=out)


def main():
    p = parser(__doc__)
    p.add_argument("--skip", nargs="*", default=[])
    args = p.parse_args()
    setup(args)
    import hsgd

    run_parts(args, __file__, hsgd, (("agreement", agreement), ("power_law", power_law),
                                     ("criticality", criticality), ("digits", digits)))


if __name__ == "__main__":
    main()
