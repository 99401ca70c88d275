"""The per-mode ODE (SPEC §1): closed-form least squares, grad vs finite differences, vmap,
divergence reporting, float32."""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hsgd


def _ls_problem(noise=0.5, n=12):
    spec = hsgd.Spectrum.uniform(n, 0.2, 1.8)
    return hsgd.Problem.isotropic(hsgd.LeastSquares(noise), spec, target_norm=1.0)


def _least_squares_closed_form(prob, gamma, beta, s, ts):
    # For least squares the per-mode errors e_j = V_11 - 2 V_12 + V_22 solve a *linear* system
    #   de/dt = M e + c,  M = -2 g diag(lam) + (g^2/beta) lam (w lam)^T,  c = g^2 s^2 lam / beta,
    # (SPEC §1 with J = [1, -1], I = 2h), whose exact solution is e(t) = expm(Mt)(e0 + M^-1 c)
    # - M^-1 c; the risk is h = (sum w lam e + s^2) / 2. Here e0 = 1 (X0 = 0, |X*|^2 = 1:
    # V_22 = 1, V_11 = V_12 = 0).
    lam = np.asarray(prob.spectrum.eigenvalues)
    w = np.asarray(prob.spectrum.weights)
    M = -2 * gamma * np.diag(lam) + (gamma**2 / beta) * np.outer(lam, w * lam)
    c = gamma**2 * s**2 * lam / beta
    xi = np.linalg.solve(M, c)
    return [0.5 * (np.sum(w * lam * (np.asarray(jax.scipy.linalg.expm(M * t)) @ (1.0 + xi)
                                     - xi)) + s**2) for t in ts]


def test_least_squares_matches_matrix_exponential():
    # Reference: the closed form above. The solver runs at rtol 1e-7, so 1e-6 relative is the
    # integration error budget.
    prob = _ls_problem()
    ts = np.linspace(0.0, 8.0, 17)
    sol = hsgd.ode(prob, 0.8, ts, batch=2.0)
    np.testing.assert_allclose(sol.risk, _least_squares_closed_form(prob, 0.8, 2.0, 0.5, ts),
                               rtol=1e-6)
    assert not sol.diverged


def test_least_squares_as_finite_is_the_same_ode():
    # The reduction used by StreamingPredictor: the finite-data variance ODE with n = 1,
    # counts w / beta, L_min = s^2 / (2 beta) has training loss h / beta. References: the
    # closed form at a constant stepsize (the finite ODE's default rtol 1e-9: 1e-8 relative
    # budget), and hsgd.ode itself for a decaying schedule and a power-law problem with a
    # random instance (both solvers at rtol 1e-11: agreement to 1e-8).
    prob = _ls_problem()
    ts = np.linspace(0.0, 8.0, 17)
    got = 2.0 * hsgd.ode(hsgd.least_squares_as_finite(prob, 2.0), 0.8, ts).loss
    np.testing.assert_allclose(got, _least_squares_closed_form(prob, 0.8, 2.0, 0.5, ts),
                               rtol=1e-8)

    prob = hsgd.Problem.random(hsgd.LeastSquares(0.3), hsgd.Spectrum.power_law(30, 0.7),
                               jax.random.PRNGKey(3), target_norm=1.5)
    ts = np.linspace(0.0, 6.0, 13)

    def sched(t):
        return 1.2 / (1.0 + 0.5 * t)

    # The reduction is the d -> infinity ODE of SPEC §1 (no finite-d self-interaction), so the
    # instance's own d (30) is switched off in the comparison (finite_d=False).
    full = hsgd.ode(prob, sched, ts, batch=3.0, finite_d=False,
                    stepsize_controller=diffrax.PIDController(rtol=1e-11, atol=1e-13)).risk
    fin = hsgd.ode(hsgd.least_squares_as_finite(prob, 3.0), sched, ts, rtol=1e-11)
    np.testing.assert_allclose(3.0 * fin.loss, full, rtol=1e-8)
    with pytest.raises(TypeError, match="LeastSquares"):
        hsgd.least_squares_as_finite(
            hsgd.Problem.isotropic(hsgd.Logistic(), prob.spectrum, target_norm=1.0), 1.0)


def test_grad_wrt_schedule_parameters_matches_finite_differences():
    prob = hsgd.Problem.isotropic(hsgd.Logistic(), hsgd.Spectrum.uniform(8, 0.1, 1.9),
                                  target_norm=2.0)
    ts = jnp.array([0.0, 4.0])

    def final_risk(params, **tolerances):
        peak, final = params
        return hsgd.ode(prob, hsgd.Cosine(peak, 4.0, final), ts, **tolerances).risk[-1]

    x = jnp.array([2.0, 0.3])
    g = jax.grad(final_risk)(x)  # the default solve's gradient
    h = 1e-5
    # The reference differentiates a converged solve (rtol 1e-12): differences of the default
    # solve itself divide its ~1e-12 step-to-step noise by 2h (the default solver takes few,
    # large steps), which is the reference's error, not the gradient's. Central differences
    # have O(h^2) ~ 1e-10 truncation error, so allow 1e-5 relative.
    fd = jnp.array([(final_risk(x + h * e, rtol=1e-12) - final_risk(x - h * e, rtol=1e-12))
                    / (2 * h) for e in jnp.eye(2)])
    np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-9)


def test_vmap_over_stepsizes_equals_separate_solves():
    prob = hsgd.Problem.isotropic(hsgd.Logistic(), hsgd.Spectrum.uniform(6, 0.1, 1.9),
                                  target_norm=1.5)
    ts = jnp.linspace(0.0, 3.0, 4)
    gammas = jnp.linspace(0.2, 3.0, 64)
    batched = jax.vmap(lambda g: hsgd.ode(prob, hsgd.Constant(g), ts).risk)(gammas)
    for i in (0, 17, 40, 63):
        single = hsgd.ode(prob, float(gammas[i]), ts).risk
        # Same arithmetic but a batched while-loop keeps stepping every member until the slowest
        # finishes; the accepted steps of each member are the same, so agreement is ~1e-12.
        np.testing.assert_allclose(batched[i], single, rtol=1e-9)


def test_divergence_is_reported_with_time_not_nans():
    # Streaming least squares diverges when the noise feedback (g^2/beta) sum w lam^2 / ... is
    # too strong: gamma = 5 on tr K/d = 1 is far past gamma_crit ~ 2 (SPEC §1).
    prob = _ls_problem(noise=0.1)
    sol = hsgd.ode(prob, 5.0, jnp.linspace(0, 50, 11))
    assert bool(sol.diverged)
    assert 0 < float(sol.divergence_time) <= 50
    assert np.isfinite(sol.risk[0])


def test_float32_agrees_with_float64():
    # float32 carries ~1e-7 relative rounding; the default controller switches to rtol 1e-5 in
    # float32 (1e-7 is below its resolution), so accept 1e-3 relative.
    prob = hsgd.Problem.isotropic(hsgd.Logistic(), hsgd.Spectrum.uniform(16, 0.1, 1.9),
                                  target_norm=2.0)
    ts = np.linspace(0.0, 5.0, 6)
    ref = hsgd.ode(prob, 1.5, ts).risk
    prob32 = jax.tree_util.tree_map(
        lambda x: x.astype(jnp.float32) if isinstance(x, jax.Array) else x, prob)
    sol32 = hsgd.ode(prob32, hsgd.Constant(jnp.float32(1.5)), ts.astype(np.float32))
    assert sol32.risk.dtype == jnp.float32
    np.testing.assert_allclose(sol32.risk, ref, rtol=1e-3)


def test_gamma_crit_least_squares_closed_form():
    # Least squares: A = 2h - s^2 and I = 2h, so gamma_crit = 2 beta (2h - s^2) / (mean(lam) 2h).
    prob = _ls_problem(noise=0.3)
    sol = hsgd.ode(prob, 0.5, jnp.array([0.0, 1.0, 3.0]), batch=4)
    mean_lam = float(prob.spectrum.mean())
    ref = 2 * 4 * (2 * sol.risk - 0.09) / (mean_lam * 2 * sol.risk)
    np.testing.assert_allclose(sol.gamma_crit, ref, rtol=1e-10)


def test_statistic_of_user_choice():
    # q(lam) = lam, g = B_22: X*^T K X* = sum_j w_j lam_j V_22 = mean(lam) |X*|^2 (constant).
    prob = _ls_problem()
    stat = hsgd.Statistic(lambda S: S[1, 1], q=lambda lam: lam)
    sol = hsgd.ode(prob, 0.5, jnp.array([0.0, 2.0]), statistics={"target_energy": stat})
    np.testing.assert_allclose(sol.statistics["target_energy"], float(prob.spectrum.mean()),
                               rtol=1e-10)


def test_bad_stepsize_and_times_raise():
    prob = _ls_problem()
    with pytest.raises(ValueError, match="value"):
        hsgd.ode(prob, -1.0, jnp.array([0.0, 1.0]))
    with pytest.raises(Exception, match="non-decreasing"):
        hsgd.ode(prob, 1.0, jnp.array([0.0, 2.0, 1.0]))
