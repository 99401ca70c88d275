"""Exact finite-d dynamics of streaming least squares (SPEC §8) and its checks (SPEC §12).

Setting of SPEC §12: lambda_j ~ j^-2 normalised to tr K/d = 1 (lambda_1 = 0.61 d), sigma = 0.5,
X0 = 0, X* ~ N(0, I/d) (Problem.random). The SGD reference below is written independently of
the library (lax.scan in the eigenbasis, fresh Gaussian samples every step, the exact population
risk 1/2 (sum_j lambda_j e_j^2 + sigma^2) of each iterate): it shares no approximation with the
recursion or the ODE.
"""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sgd_reference import sgd_risk_paths, windows

import hsgd

SIGMA = 0.5


def _spectrum(d):
    lam = np.arange(1, d + 1, dtype=float) ** -2.0
    return lam * d / lam.sum()


def _problem(d, key=0):
    return hsgd.Problem.random(hsgd.LeastSquares(SIGMA), _spectrum(d), jax.random.PRNGKey(key))


def _window_mean_ode(prob, opt, lo, hi, d, **options):
    """The ODE's window average: trapezoid on 11 points of [lo, hi]/d (the ODE is smooth on
    the window, so this is the mean over its iterations to O(w^-2))."""
    tw = np.linspace(lo / d, hi / d, 11)
    risk = np.asarray(hsgd.ode(prob, opt, tw, **options).risk)
    return np.trapezoid(risk, tw) / (tw[-1] - tw[0])


def _check_against_sgd(beta, c, runs, T, num_times, key):
    d = 1000
    prob = _problem(d)
    lam = _spectrum(d)
    gamma = c * d / lam[0]
    opt = hsgd.SGD(gamma, batch=beta)
    ts = np.geomspace(0.1, T, num_times)
    wins = windows(ts, d)
    K = wins[-1][1]
    paths = sgd_risk_paths(lam, np.asarray(prob.X_star[:, 0]), SIGMA, gamma, beta, K, runs,
                           jax.random.PRNGKey(key))
    exact = np.asarray(hsgd.ode(prob, opt, [K / d], recursion=True).loss_path)
    rows = []
    for lo, hi in wins:
        per_run = paths[:, lo:hi + 1].mean(axis=1)
        mean, se = per_run.mean(), per_run.std(ddof=1) / np.sqrt(runs)
        rows.append((mean, se, exact[lo:hi + 1].mean(),
                     _window_mean_ode(prob, opt, lo, hi, d),
                     _window_mean_ode(prob, opt, lo, hi, d, finite_d=False)))
    return np.array(rows).T  # mean, se, recursion, finite-d ODE, limit ODE


@pytest.mark.parametrize("beta, c, runs, T, num_times", [(4, 0.8, 16, 2.0, 6)])
def test_exact_dynamics_match_sgd_and_the_limit_is_low(beta, c, runs, T, num_times):
    # SPEC §12 (B) shrunk to T = 2 and 16 runs (the full T = 10 check, both cases, is
    # test_exact_vs_limit_full below): the exact recursion and the finite-d ODE within 2% or
    # 4 SE of the SGD window mean (SE/mean measured 0.4-1.4% at 16-32 runs: 4 SE is the
    # statistical bound, 2% the systematic one the issue sets), while the d -> infinity ODE
    # is 7-14% low: measured 11-13% vs SGD and 12.5% vs the recursion. The band is checked
    # against the recursion (deterministic: no seed moves it) and the gap to the SGD mean
    # must exceed 4 SE (the limit's error is no noise).
    mean, se, rec, fd, lim = _check_against_sgd(beta, c, runs, T, num_times, key=1)
    for pred in (rec, fd):
        err = np.abs(pred - mean)
        assert np.all((err <= 0.02 * mean) | (err <= 4 * se)), (err / mean, se / mean)
    low = (rec - lim) / rec
    assert np.all((low > 0.07) & (low < 0.14)), low
    assert np.all(mean - lim > 4 * se), (mean - lim) / se


@pytest.mark.slow
@pytest.mark.parametrize("beta, c, runs", [(4, 0.8, 32), (1, 0.3, 64)])
def test_exact_vs_limit_full(beta, c, runs):
    # SPEC §12 (B) and (A) at full size: T = 10, 10 log-spaced windows from t = 0.1. Measured
    # (32 / 64 runs): (B) exact within 1.5% (SE <= 1.4%), limit 11.1-13.1% low; (A) exact
    # within 1.7% (1.3 SE at t = 0.1), limit 7.5-9.4% low (vs the recursion: 12.5% / 9.0%).
    # Tolerances and the band as in the test above.
    mean, se, rec, fd, lim = _check_against_sgd(beta, c, runs, 10.0, 10, key=1)
    for pred in (rec, fd):
        err = np.abs(pred - mean)
        assert np.all((err <= 0.02 * mean) | (err <= 4 * se)), (err / mean, se / mean)
    low = (rec - lim) / rec
    assert np.all((low > 0.07) & (low < 0.14)), low
    assert np.all(mean - lim > 4 * se), (mean - lim) / se


def test_continuous_form_matches_the_recursion_after_the_transient():
    # Reference: the exact recursion. The continuous form differs from it only while the top
    # modes (gamma lambda/d = O(1): they relax in a few iterations) are in their transient;
    # afterwards only through their quasi-static lag, relative O(1/k) of their share of the
    # risk. Measured on (B) / (A) at d = 1000: 4e-4 / 1.4e-3 at k = 100, 1.3e-5 / 3e-6 at
    # k = 1000, 1e-6 at k = 1e4. Bounds: 3e-3 at k >= 100, 1e-4 at k >= 1000.
    d = 1000
    prob = _problem(d)
    lam = _spectrum(d)
    ts = np.array([0.1, 0.3, 1.0, 3.0, 10.0])
    for beta, c in [(4, 0.8), (1, 0.3)]:
        opt = hsgd.SGD(c * d / lam[0], batch=beta)
        rec = np.asarray(hsgd.ode(prob, opt, ts, recursion=True).risk)
        fd = np.asarray(hsgd.ode(prob, opt, ts).risk)
        rel = np.abs(fd - rec) / rec
        assert np.all(rel <= 3e-3), rel
        assert np.all(rel[ts >= 1.0] <= 1e-4), rel


def test_explicit_and_structured_solvers_agree_and_the_limit_is_the_large_d_form():
    # The self-interaction is in both the structured solver's per-mode system and the explicit
    # drift: Tsit5 at rtol 1e-10 and the default at rtol 1e-10 agree to 1e-7 (both converged).
    # On a bounded spectrum the finite-d term is relative O(gamma lambda / d): the forms
    # differ by ~ (1 + 1/beta) gamma lambda_max / (2 d) of the risk's decay, here d = 200,
    # lambda <= 1.8, gamma = 1: measured 0.3%, bound 1%, and finite_d=False is the
    # d -> infinity ODE (the same instance without its d: identical).
    prob = hsgd.Problem.random(hsgd.LeastSquares(SIGMA), hsgd.Spectrum.uniform(200, 0.2, 1.8),
                               jax.random.PRNGKey(2))
    ts = np.linspace(0.0, 4.0, 5)
    opt = hsgd.SGD(1.0, batch=1)
    structured = hsgd.ode(prob, opt, ts, solver=hsgd.StructuredKvaerno5(), rtol=1e-10).risk
    explicit = hsgd.ode(prob, opt, ts, solver=diffrax.Tsit5(), rtol=1e-10, atol=1e-12).risk
    np.testing.assert_allclose(structured, explicit, rtol=1e-7)
    limit = hsgd.ode(prob, opt, ts, finite_d=False, solver=hsgd.StructuredKvaerno5(),
                     rtol=1e-10).risk
    no_instance = hsgd.Problem(prob.loss, prob.spectrum, prob.V0)  # d unknown: limit form
    np.testing.assert_allclose(
        hsgd.ode(no_instance, opt, ts, solver=hsgd.StructuredKvaerno5(), rtol=1e-10).risk,
        limit, rtol=1e-12)
    rel = np.abs(np.asarray(structured) - np.asarray(limit)) / np.asarray(limit)
    assert 1e-4 < rel.max() < 1e-2, rel


def test_stability_bound_and_fixed_point():
    # (C) of SPEC §12: beta = 4 at gamma lambda_max/d = 1.45 has kappa = 2.07 > 1 (limit 0.30):
    # both finite-d forms diverge and say so, the d -> infinity ODE does not. kappa for (B) and
    # (A): 0.269 / 0.315 (limits 0.164 / 0.247), SPEC §12's numbers to their 3 digits.
    d = 1000
    prob = _problem(d)
    lam = _spectrum(d)
    ts = np.array([0.5, 1.0, 5.0, 10.0])
    for beta, c, kappa, kappa_lim in [(4, 0.8, 0.269, 0.164), (1, 0.3, 0.315, 0.247),
                                      (4, 1.45, 2.07, 0.298)]:
        s = hsgd.theory.finite_d_stability(prob, c * d / lam[0], beta)
        assert [float(f"{float(x):.3g}") for x in (s.kappa, s.kappa_limit)] == [kappa, kappa_lim]
        assert bool(s.stable) == (kappa < 1)
    opt = hsgd.SGD(1.45 * d / lam[0], batch=4)
    for sol in (hsgd.ode(prob, opt, ts), hsgd.ode(prob, opt, ts, recursion=True)):
        assert bool(sol.diverged) and np.isfinite(float(sol.divergence_time))
        assert np.all(np.isnan(np.asarray(sol.risk)[np.asarray(ts) >= sol.divergence_time]))
    assert not bool(hsgd.ode(prob, opt, ts, finite_d=False).diverged)

    # The bound is sharp: 0.97 and 1.03 of finite_d_gamma_max (condition (ii) binds here).
    # Below it the ODE settles on the theory's floor sigma^2 / (2 (1 - kappa)) (reference: the
    # closed form; the ODE's default rtol 1e-7, relaxation by t = 1e6 to far below that).
    # d = 200 on the same family of spectra (the bound holds at every d).
    d = 200
    prob, lam = _problem(d), _spectrum(d)
    for beta in (1, 4):
        g_max = float(hsgd.theory.finite_d_gamma_max(prob, beta))
        assert g_max < 2 * beta * d / ((beta + 1) * lam[0])  # (ii), not (i), binds
        assert g_max > 2 * beta * d / (lam.sum() + (beta + 1) * lam[0])  # the sufficient bound
        np.testing.assert_allclose(hsgd.theory.finite_d_stability(prob, g_max, beta).kappa, 1.0,
                                   atol=1e-9)
        ok = hsgd.ode(prob, hsgd.SGD(0.97 * g_max, batch=beta), [1e2, 1e6])
        floor = hsgd.theory.finite_d_stability(prob, 0.97 * g_max, beta).limit_risk
        assert not bool(ok.diverged)
        np.testing.assert_allclose(ok.risk[-1], floor, rtol=1e-5)
        bad = hsgd.ode(prob, hsgd.SGD(1.03 * g_max, batch=beta), [1e2, 1e6])
        assert bool(bad.diverged)


def test_vmap_and_jit_over_stepsizes():
    # The finite-d path under vmap equals separate solves (to rounding: the batched solve takes
    # the union of steps, both at the default rtol, so agreement to 1e-6 relative).
    prob = _problem(200)
    ts = np.array([0.5, 2.0, 5.0])
    gammas = jnp.array([0.2, 0.3]) * 200 / _spectrum(200)[0]
    batched = jax.vmap(lambda g: hsgd.ode(prob, hsgd.SGD(g, batch=2), ts).risk)(gammas)
    single = jnp.stack([hsgd.ode(prob, hsgd.SGD(g, batch=2), ts).risk for g in gammas])
    np.testing.assert_allclose(batched, single, rtol=1e-6)
    rec = jax.vmap(lambda g: hsgd.ode(prob, hsgd.SGD(g, batch=2), ts, recursion=True).risk)(
        gammas)
    np.testing.assert_allclose(rec, single, rtol=3e-3)  # the transient bound above


def test_float32_smoke():
    # float32 problem on both finite-d paths: finite, and within float32's resolution of the
    # float64 solve (ODE: its float32 rtol 1e-5 -> 1e-4 budget; recursion: 2000 iterations of
    # eps-sized rounding, measured 2e-6 -> 1e-4 budget).
    d = 200
    p64 = _problem(d)
    p32 = hsgd.Problem.from_arrays(p64.loss, _spectrum(d), p64.X_star, dtype=jnp.float32)
    opt = hsgd.SGD(0.5 * d / _spectrum(d)[0], batch=2)
    ts = np.array([1.0, 10.0])
    for kw in ({}, {"recursion": True}):
        r32 = hsgd.ode(p32, opt, ts, **kw).risk
        assert r32.dtype == jnp.float32
        np.testing.assert_allclose(r32, hsgd.ode(p64, opt, ts, **kw).risk, rtol=1e-4)


def test_bad_input_is_a_clear_error():
    iso = hsgd.Problem.isotropic(hsgd.LeastSquares(0.5), hsgd.Spectrum.uniform(10, 0.5, 1.5))
    with pytest.raises(ValueError, match="finite_d=False"):
        hsgd.ode(iso, 1.0, [1.0], finite_d=True)
    logistic = hsgd.Problem.random(hsgd.Logistic(), hsgd.Spectrum.uniform(10, 0.5, 1.5),
                                   jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="least squares"):
        hsgd.ode(logistic, 1.0, [1.0], finite_d=True)
    with pytest.raises(ValueError, match="least squares"):
        hsgd.ode(logistic, 1.0, [1.0], recursion=True)
    assert not bool(hsgd.ode(logistic, 1.0, [1.0]).diverged)  # default: the limit ODE
    with pytest.raises(ValueError, match="recursion"):
        hsgd.ode(_problem(20), 1.0, [1.0], recursion=True, finite_d=False)
    with pytest.raises(ValueError, match="needs d"):
        hsgd.theory.finite_d_stability(iso, 1.0)
