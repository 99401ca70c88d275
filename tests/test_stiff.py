"""The default integrator on stiff spectra (issue 20, SPEC §6): gamma * lambda_max * T >= 1e6.

References: least squares — the exact solution of its linear per-mode system by eigen-
decomposition; logistic and a user loss — a convergence study (the same solver at rtol 1e-11;
`benchmarks/stiff.py` also checks it against diffrax's dense-Newton Kvaerno5); the gradient —
central differences of a converged (rtol 1e-12) solve.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hsgd

# 24 modes, lambda_j ~ j^-2 with tr K/d = 1 (lambda_max ~ 15), t up to 1e5: gamma lambda_max T
# ~ 1.5e6; output times log-spaced, where the slow modes are still moving at the end.
TS = np.concatenate([[0.0], np.logspace(-2, 5, 15)])


def _problem(loss, n=24, dtype=None):
    j = np.arange(1, n + 1, dtype=float)
    lam = j**-2.0
    lam = lam / lam.mean()
    tau = j**-1.4
    V0 = np.zeros((n, 2, 2))
    V0[:, 1, 1] = tau / np.mean(lam * tau)  # ||X*||_K^2 = 1, X0 = 0
    return hsgd.Problem(loss, hsgd.Spectrum.from_eigenvalues(lam, dtype=dtype),
                        jnp.asarray(V0, dtype=dtype))


def _least_squares_exact(prob, gamma, sigma, ts):
    # v' = M v + c with M = -2 g diag(lam) + g^2 lam (w lam)^T, c = g^2 sigma^2 lam (SPEC §1,
    # beta = 1). With S = diag(sqrt(w)), S M S^-1 = -2 g diag(lam) + g^2 (sqrt(w) lam)(..)^T is
    # symmetric: v(t) = S^-1 Q e^{Dt} Q^T S (v0 - v*) + v*, v* = -M^-1 c.
    lam = np.asarray(prob.spectrum.eigenvalues)
    w = np.asarray(prob.spectrum.weights)
    V0 = np.asarray(prob.V0)
    v0 = V0[:, 0, 0] - 2 * V0[:, 0, 1] + V0[:, 1, 1]
    M = -2 * gamma * np.diag(lam) + gamma**2 * np.outer(lam, w * lam)
    v_star = -np.linalg.solve(M, gamma**2 * sigma**2 * lam)
    s = np.sqrt(w)
    D, Q = np.linalg.eigh(-2 * gamma * np.diag(lam) + gamma**2 * np.outer(s * lam, s * lam))
    out = []
    for t in ts:
        v = (Q @ (np.exp(D * t) * (Q.T @ (s * (v0 - v_star))))) / s + v_star
        out.append(0.5 * (np.sum(w * lam * v) + sigma**2))
    return np.array(out)


def test_least_squares_default_within_1e6_of_exact():
    # Default tolerances (rtol 1e-7 on every aggregate of B): the bar is 1e-6 relative
    # at every time, including the 1e5-fold relaxation of the slow modes.
    prob = _problem(hsgd.LeastSquares(0.5))
    sol = hsgd.ode(prob, 1.0, TS)
    np.testing.assert_allclose(sol.risk, _least_squares_exact(prob, 1.0, 0.5, TS), rtol=1e-6)
    # Noiseless: the risk falls ~6 decades by t = 100 (then on towards 1e-230, below float64's
    # resolution of the initial moments); the risk is a state variable (error coordinates), not
    # a difference of O(1) moments, so the relative error stays within 1e-6 while the exact
    # risk is above 1e-6 of its start.
    prob = _problem(hsgd.LeastSquares(0.0))
    sol = hsgd.ode(prob, 1.0, TS)
    exact = _least_squares_exact(prob, 1.0, 0.0, TS)
    resolved = exact > 1e-6 * exact[0]
    assert exact[resolved][-1] < 1e-4 * exact[0]
    np.testing.assert_allclose(np.asarray(sol.risk)[resolved], exact[resolved], rtol=1e-6)
    # Past that the solve reports it below the resolved range too (it ends at ~2e-17).
    assert np.all(np.abs(np.asarray(sol.risk)[~resolved]) < 1e-6 * exact[0])
    assert not bool(sol.diverged)
    assert np.all(np.asarray(sol.error_estimate) >= 0)


def test_logistic_and_user_loss_default_within_1e6_of_converged_solve():
    def pseudo_huber(x, x_star, eps):
        u = x[0] - x_star[0] - eps
        return jnp.sqrt(1.0 + u**2) - 1.0

    for loss in (hsgd.Logistic(), hsgd.CustomLoss(pseudo_huber, noise=hsgd.GaussianNoise(0.3))):
        prob = _problem(loss)
        ts = TS[:12]  # to t = 1e3: gamma lambda_max T ~ 1.5e4
        sol = hsgd.ode(prob, 1.0, ts)
        ref = hsgd.ode(prob, 1.0, ts, rtol=1e-11)
        # The rtol 1e-11 solve is converged to ~1e-10 (its step count is ~4x the default's),
        # so 1e-6 is the default solve's budget.
        assert int(ref.num_steps) > 2 * int(sol.num_steps)
        np.testing.assert_allclose(sol.risk, ref.risk, rtol=1e-6)


def test_float32_default_within_its_tolerance_of_float64_reference():
    # A float32 problem (in this x64 session) takes the structured path in float32: default
    # rtol 1e-5, atol 1e-8 relative to the error aggregates' initial size (float32's eps is
    # 1.2e-7, so 1e-7 would be below its resolution). References: the float64 exact solution
    # (least squares) and a float64 rtol 1e-11 solve (logistic). Budget: 10 x rtol = 1e-4
    # relative — the global error of these solves is measured at <= 6x their local tolerance
    # in float64 (the benchmark problem: 5.9e-7 at rtol 1e-7), and float32 rounding of the
    # ~100 steps (~100 eps ~ 1e-5 if it all added up) fits inside; measured 3.5e-6 / 1.2e-6.
    # Where the noiseless risk has decayed away the error is absolute, at float32's resolution
    # of the decayed modes' moments relative to their initial size (stiffly decayed entries
    # keep eps-sized rounding): within 10 eps_f32 x risk(0) (measured 1.3e-7 risk(0) ~ 1 eps,
    # the tail reading -6e-8 where the exact risk is ~0).
    for loss, ts in ((hsgd.LeastSquares(0.5), TS), (hsgd.LeastSquares(0.0), TS),
                     (hsgd.Logistic(), TS[:12])):
        prob = _problem(loss, dtype=jnp.float32)
        sol = hsgd.ode(prob, 1.0, jnp.asarray(ts, jnp.float32))
        assert sol.risk.dtype == jnp.float32 and sol.B.dtype == jnp.float32
        assert np.all(np.isfinite(np.asarray(sol.error_estimate)))  # the structured solver's
        if isinstance(loss, hsgd.LeastSquares):
            ref = _least_squares_exact(_problem(loss), 1.0, float(loss.noise.std), ts)
        else:
            ref = np.asarray(hsgd.ode(_problem(loss), 1.0, ts, rtol=1e-11).risk)
        np.testing.assert_allclose(np.asarray(sol.risk, np.float64), ref, rtol=1e-4,
                                   atol=10 * np.finfo(np.float32).eps * ref[0])


@pytest.mark.slow  # ~22 s; the logistic gradient below covers the stiff reverse-mode path
def test_stiff_gradient_matches_finite_differences_of_converged_solve():
    prob = _problem(hsgd.LeastSquares(0.5))
    ts = jnp.asarray(TS)

    def final_risk(params, **tolerances):
        # The mean risk over the saved times (the final risk alone depends only on the final
        # stepsize here: every mode has relaxed by t = 1e5).
        peak, final = params
        return jnp.mean(hsgd.ode(prob, hsgd.Cosine(peak, float(TS[-1]), final), ts,
                                 **tolerances).risk)

    x = jnp.array([1.2, 0.2])
    g = jax.jit(jax.grad(final_risk))(x)  # jitted: one compile
    h = 1e-5
    fd = jnp.array([(final_risk(x + h * e, rtol=1e-12) - final_risk(x - h * e, rtol=1e-12))
                    / (2 * h) for e in jnp.eye(2)])
    # O(h^2) truncation ~1e-10 plus the default solve's own error (rtol 1e-7) in the gradient.
    np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-9)


@pytest.mark.slow  # 24 s in the suite (reverse mode on 1e4 stiff modes); test_tune's
# gradient checks through the structured solver stay in the default run
def test_logistic_gradient_on_a_very_stiff_spectrum_is_finite_and_right():
    # lambda_max ~ 6e3 (a power law of 1e4 modes, 16 bins; X0 = 0, ||X*||_K^2 = 4): diffrax's
    # automatic first step, differentiated, made every solver's reverse-mode gradient NaN here
    # (forward mode was fine); the first step is now chosen outside differentiation.
    # Reference: central differences (h = 1e-4, truncation ~1e-8 relative) of rtol 1e-11
    # solves; 1e-5 covers the default solve's own error in the gradient (measured 4e-8 on
    # 256 bins of the same problem).
    j = np.arange(1, 10**4 + 1, dtype=float)
    lam = j**-2.0
    lam /= lam.mean()
    V0 = np.zeros((j.size, 2, 2))
    V0[:, 1, 1] = 4.0 * j**-1.4 / np.mean(lam * j**-1.4)
    prob = hsgd.Problem(hsgd.Logistic(), hsgd.Spectrum.from_eigenvalues(lam),
                        jnp.asarray(V0)).coarsen(16)
    ts = jnp.asarray(np.concatenate([[0.0], np.logspace(-3, 1, 5)]))

    def mean_risk(gamma, **tolerances):
        return jnp.mean(hsgd.ode(prob, hsgd.Constant(gamma), ts, **tolerances).risk)

    g = jax.jit(jax.grad(mean_risk))(1.0)  # jitted: one compile
    h = 1e-4
    fd = (mean_risk(1.0 + h, rtol=1e-11) - mean_risk(1.0 - h, rtol=1e-11)) / (2 * h)
    assert np.isfinite(g)
    np.testing.assert_allclose(g, fd, rtol=1e-5)


@pytest.mark.slow  # ~17 s; tests/test_coarsen.py checks the refinement estimate in the default run
def test_coarsening_is_independent_of_the_step_count_and_estimated():
    # The error control weighs modes by what they carry of B, so merging modes leaves the step
    # count (nearly) unchanged; the refinement estimate brackets the true coarsening error
    # (second order in the bin width: measured/estimated within a factor 3).
    j = np.arange(1, 2001, dtype=float)
    lam = j**-2.0
    lam /= lam.mean()
    V0 = np.zeros((j.size, 2, 2))
    V0[:, 1, 1] = j**-1.4 / np.mean(lam * j**-1.4)
    prob = hsgd.Problem(hsgd.LeastSquares(0.5), hsgd.Spectrum.from_eigenvalues(lam),
                        jnp.asarray(V0))
    ts = jnp.asarray(np.concatenate([[0.0], np.logspace(-2, 1, 10)]))
    exact = _least_squares_exact(prob, 1.0, 0.5, np.asarray(ts))
    full = hsgd.ode(prob, 1.0, ts)
    est = hsgd.coarsening_error(prob, 1.0, ts, 32)
    assert abs(int(est.solution.num_steps) - int(full.num_steps)) <= 0.2 * int(full.num_steps)
    true = np.max(np.abs(np.asarray(est.solution.risk) / exact - 1))
    estimate = float(np.max(np.asarray(est.estimate)))
    assert true > 1e-6  # 32 bins do cost something here
    assert estimate / 3 < true < 3 * estimate
