"""Finite data, multi-pass SGD on least squares (SPEC §2): the spectral summary, the per-mode
ODE against a matrix exponential and against the Volterra solver, the theory helpers, SGD
agreement, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hsgd


@pytest.fixture(scope="module")
def gaussian():
    return hsgd.FiniteProblem.gaussian(600, 300, 0, noise_std=0.3)


def test_summary_reproduces_loss_and_risk_at_start():
    # The eigenbasis summary must give L(x0) and R(x0) exactly (SPEC §2 decomposition, with the
    # ridge linear term): reference = direct evaluation on the arrays; only round-off allowed.
    rng = np.random.default_rng(1)
    n, d = 50, 30
    A = rng.standard_normal((n, d)) / np.sqrt(d)
    b = rng.standard_normal(n)
    x0 = rng.standard_normal(d)
    Sigma = np.diag(rng.uniform(0.5, 2.0, d)) / d
    Sigma[0, 1] = Sigma[1, 0] = 0.1 / d  # not diagonal in the eigenbasis: the J x J path
    x_star = rng.standard_normal(d)
    for ridge in (0.0, 0.3):
        prob = hsgd.FiniteProblem.from_arrays(A, b, x0=x0, ridge=ridge, Sigma=Sigma,
                                              x_star=x_star, noise_var=0.04)
        L0 = 0.5 * np.sum((A @ x0 - b) ** 2)
        R0 = 0.5 * (x0 - x_star) @ Sigma @ (x0 - x_star) + 0.02
        np.testing.assert_allclose(prob.gradient_flow_loss(0.0), L0, rtol=1e-10)
        np.testing.assert_allclose(prob.gradient_flow_risk(0.0), R0, rtol=1e-10)
        # Gradient flow converges to the ridge solution: L and R there.
        x_opt = np.linalg.solve(A.T @ A + ridge * np.eye(d), A.T @ b)
        np.testing.assert_allclose(prob.gradient_flow_loss(1e6),
                                   0.5 * np.sum((A @ x_opt - b) ** 2), rtol=1e-10)
        np.testing.assert_allclose(
            prob.gradient_flow_risk(1e6),
            0.5 * (x_opt - x_star) @ Sigma @ (x_opt - x_star) + 0.02, rtol=1e-10)


def test_ode_matches_matrix_exponential():
    # Constant gamma: (Var e, e^{-mu G}, e^{-2 mu G}, 1) solve a linear ODE, so the exact
    # solution is expm(M t) y0. rtol 1e-9 in the solver -> 1e-7 relative budget.
    lam = np.array([0.5, 1.0, 2.0, 4.0])
    e0 = np.array([1.0, -0.5, 0.3, 2.0])
    c = np.array([0.2, 0.1, -0.4, 0.3])
    n, delta, L_min, g = 8, 0.1, 0.7, 0.6
    prob = hsgd.FiniteProblem.from_spectrum(lam, e0, n, loss_min=L_min, ridge=delta,
                                            x_opt_coords=c)
    mu, J = lam + delta, lam.size
    # psi = L_min - delta sum c e0 E1 + 1/2 sum lam e0^2 E2 + 1/2 sum lam Var
    M = np.zeros((3 * J + 1, 3 * J + 1))
    u = 2 * g**2 * lam / n
    M[:J, :J] = -2 * g * np.diag(mu) + np.outer(u, 0.5 * lam)
    M[:J, J:2 * J] = np.outer(u, -delta * c * e0)
    M[:J, 2 * J:3 * J] = np.outer(u, 0.5 * lam * e0**2)
    M[:J, -1] = u * L_min
    M[J:2 * J, J:2 * J] = -g * np.diag(mu)
    M[2 * J:3 * J, 2 * J:3 * J] = -2 * g * np.diag(mu)
    y0 = np.concatenate([np.zeros(J), np.ones(2 * J), [1.0]])
    ts = np.linspace(0, 6, 13)
    ref = []
    for t in ts:
        y = np.asarray(jax.scipy.linalg.expm(M * t)) @ y0
        ref.append(L_min - delta * np.sum(c * e0 * y[J:2 * J])
                   + 0.5 * np.sum(lam * e0**2 * y[2 * J:3 * J]) + 0.5 * np.sum(lam * y[:J]))
    np.testing.assert_allclose(hsgd.ode(prob, g, ts).loss, ref, rtol=1e-7)
    # The Volterra solver is second order: 1e-3 grid -> ~1e-7; allow 1e-6.
    np.testing.assert_allclose(hsgd.volterra(prob, g, ts).loss, ref, rtol=1e-6)


@pytest.mark.parametrize("fraction", [0.3, 0.6, 0.9])
def test_ode_and_volterra_agree_with_population(gaussian, fraction):
    # Two independent discretisations (adaptive ESDIRK at rtol 1e-9; exponential product
    # trapezoid at resolution 1e-3, measured ~5e-7): agree to 2e-6.
    g = fraction * hsgd.theory.gamma_max(gaussian)
    ts = jnp.linspace(0, 20, 21)
    a, b = hsgd.ode(gaussian, g, ts), hsgd.volterra(gaussian, g, ts)
    np.testing.assert_allclose(a.loss, b.loss, rtol=2e-6)
    np.testing.assert_allclose(a.risk, b.risk, rtol=2e-6)
    np.testing.assert_allclose(a.Gamma, g * ts, rtol=1e-12)


def test_schedule_and_ridge_ode_vs_volterra_and_tsit5():
    # A decaying schedule and ridge on a power-law spectrum spanning 3 decades. References: the
    # Volterra solver (Simpson for Gamma, 1e-3 grid) and diffrax's generic Tsit5 on the same
    # vector field (non-stiff enough here); 1e-5 covers all three error budgets.
    d, n = 200, 400
    lam = np.arange(1, d + 1) ** -1.3
    lam *= n / lam.sum()
    e0 = np.random.default_rng(0).standard_normal(d)
    prob = hsgd.FiniteProblem.from_spectrum(lam, e0, n, loss_min=3.0, ridge=0.05,
                                            x_opt_coords=np.ones(d) * 0.1,
                                            sigma=np.ones(d) / d, target_shift=np.ones(d) * 0.2,
                                            noise_var=0.1)
    sched = hsgd.Cosine(0.8 * hsgd.theory.gamma_max(prob), 8.0, final=0.05)
    ts = jnp.linspace(0, 8, 9)
    a = hsgd.ode(prob, sched, ts)
    b = hsgd.volterra(prob, sched, ts)
    c = hsgd.ode(prob, sched, ts, solver=__import__("diffrax").Tsit5())
    for other in (b, c):
        np.testing.assert_allclose(a.loss, other.loss, rtol=1e-5)
        np.testing.assert_allclose(a.risk, other.risk, rtol=1e-5)


def test_theory_limit_and_divergence(gaussian):
    g = 0.7 * hsgd.theory.gamma_max(gaussian)
    # gamma_max = 2n / tr(A^T A) without ridge (SPEC §2), checked on the data.
    A = np.asarray(gaussian.data.A)
    np.testing.assert_allclose(hsgd.theory.gamma_max(gaussian), 2 * 600 / np.sum(A**2), rtol=1e-10)
    sol = hsgd.volterra(gaussian, g, jnp.array([0.0, 400.0]))
    # By t = 400 every mode is forgotten (slowest rate 2 g lam* ~ 0.2): closed-form limits.
    np.testing.assert_allclose(sol.loss[-1], hsgd.theory.limit_loss(gaussian, g), rtol=1e-6)
    np.testing.assert_allclose(sol.risk[-1], hsgd.theory.limit_risk(gaussian, g), rtol=1e-6)
    for solve in (hsgd.ode, hsgd.volterra):
        above = solve(gaussian, 1.05 * hsgd.theory.gamma_max(gaussian), jnp.linspace(0, 200, 21))
        assert above.diverged and np.isfinite(above.divergence_time)
        assert np.all(np.isnan(above.loss[-1]))
        below = solve(gaussian, 0.95 * hsgd.theory.gamma_max(gaussian), jnp.linspace(0, 200, 21))
        assert not below.diverged
    assert np.isinf(hsgd.theory.limit_loss(gaussian, 1.01 * hsgd.theory.gamma_max(gaussian)))


def test_decay_rate_matches_malthusian_root_on_both_sides_of_phase_transition():
    # Noiseless Gaussian data (psi(inf) = L_min ~ 0): the log-slope of psi - psi(inf) on the
    # Volterra curve vs 2 gamma lambda*(gamma) (SPEC §2). Below gamma* the curve carries a
    # t^{-3/2} prefactor (square-root edge), i.e. a slope excess 1.5/t: at t ~ 140 that is ~3%
    # of the rate, inside the 5%. Above gamma* the root is isolated: 1% suffices.
    n, d = 1200, 600
    prob = hsgd.FiniteProblem.gaussian(n, d, 3)
    gm, gs = float(hsgd.theory.gamma_max(prob)), hsgd.theory.phase_transition_stepsize(n, d)
    assert 0.85 * gm < gs < 0.92 * gm  # r = 1/2: gamma* = 2 / 1.121 in these units
    ts = jnp.linspace(0, 160, 161)
    for fraction, window, tol in ((0.5, (120, 160), 0.05), (0.97, (60, 100), 0.01)):
        g = fraction * gm
        sol = hsgd.volterra(prob, g, ts)
        excess = np.asarray(sol.loss) - float(hsgd.theory.limit_loss(prob, g))
        i, j = window
        measured = -(np.log(excess[j]) - np.log(excess[i])) / (ts[j] - ts[i])
        predicted = float(hsgd.theory.asymptotic_rate(prob, g))
        assert (g < gs) == (fraction == 0.5)
        assert abs(measured / predicted - 1) < tol, (fraction, measured, predicted)


def test_phase_transition_closed_form_vs_quadrature():
    # gamma* = 2n / (d int x^2/(x - a) dmu): the closed form vs a smooth quadrature of the
    # Marchenko-Pastur density after x = a + (b - a) sin^2(theta) (removes the square-root
    # edge); 4000 midpoints are accurate to ~1e-7.
    for n, d in ((2000, 1000), (1000, 250), (1000, 3000)):
        r, s = d / n, n / d
        rho, sc, mass = (r, s, 1.0) if r <= 1 else (1 / r, s * r, 1 / r)
        a, b = sc * (1 - np.sqrt(rho)) ** 2, sc * (1 + np.sqrt(rho)) ** 2
        th = (np.arange(4000) + 0.5) / 4000 * (np.pi / 2)
        x = a + (b - a) * np.sin(th) ** 2
        dens = np.sqrt((b - x) * (x - a)) / (2 * np.pi * sc * rho * x)
        dx = 2 * (b - a) * np.sin(th) * np.cos(th) * (np.pi / 2) / 4000
        integral = mass * np.sum(x**2 / (x - a) * dens * dx)
        np.testing.assert_allclose(hsgd.theory.phase_transition_stepsize(n, d),
                                   2 * n / (d * integral), rtol=1e-5)
        np.testing.assert_allclose(hsgd.theory.marchenko_pastur_edge(n, d), a, rtol=1e-12)


def test_marchenko_pastur_limit_matches_large_sample():
    # The n, d -> oo summary vs the same formulas on the exact eigenvalues of one Gaussian
    # sample at n = 2000, d = 1000 (averaged over x* and the noise, which fluctuate by
    # O(d^{-1/2}) ~ 5% per sample): what remains is the spectrum's own finite-size error,
    # O(1/d) in the bulk plus edge effects — 1% is ample.
    n, d = 2000, 1000
    A = np.random.default_rng(5).standard_normal((n, d)) / np.sqrt(d)
    lam = np.linalg.eigvalsh(A.T @ A)
    ts = jnp.array([0.0, 1.0, 2.0, 5.0, 10.0])
    lim = hsgd.volterra(hsgd.FiniteProblem.marchenko_pastur(n, d, noise_std=0.3), 1.0, ts)
    emp = hsgd.volterra(hsgd.FiniteProblem._gaussian_average(lam, np.ones(d), n, d, 0.09, 0.0),
                        1.0, ts)
    np.testing.assert_allclose(lim.loss, emp.loss, rtol=0.01)
    np.testing.assert_allclose(lim.risk, emp.risk, rtol=0.01)


def test_sgd_matches_deterministic_equivalent(gaussian):
    # Mean of 16 SGD runs vs the Volterra curve at n = 600: |mean - pred| <= 5 SE + 2% (the
    # 2% is the O(gamma/n)-level bias of the homogenized limit at this small n; the issue's
    # 2% check at n = 4000 lives in benchmarks/finite.py).
    g = 0.5 * hsgd.theory.gamma_max(gaussian)
    ts = jnp.linspace(0, 5, 6)
    pred = hsgd.volterra(gaussian, g, ts)
    res = hsgd.simulate(gaussian, g, ts, jax.random.key(0), num_runs=16)
    for p, x in ((pred.loss, res.loss), (pred.risk, res.risk)):
        mean, se = np.mean(x, 0), np.std(x, 0, ddof=1) / 4
        assert np.all(np.abs(mean - p) <= 5 * se + 0.02 * p), (mean, p)
    # A mini-batch of 8 with the summed gradient follows the same curve in epochs.
    res8 = hsgd.simulate(gaussian, g / 1.0, ts, jax.random.key(1), num_runs=16, batch=8)
    mean, se = np.mean(res8.loss, 0), np.std(res8.loss, 0, ddof=1) / 4
    assert np.all(np.abs(mean - pred.loss) <= 5 * se + 0.03 * pred.loss)
    # Random reshuffling (outside the theory) runs and settles near the same plateau: its
    # noise is smaller than with replacement, so it may not exceed the predicted limit by 10%.
    resh = hsgd.simulate(gaussian, g, ts, jax.random.key(2), num_runs=2, reshuffle=True)
    assert not np.any(resh.diverged)
    assert np.all(np.mean(resh.loss, 0)[-1] < 1.1 * pred.loss[-1])


def test_reshuffling_visits_every_row_once_per_epoch():
    from hsgd._simulate.finite_sgd import _batch_indices

    n, batch = 12, 4
    perm, pos, key = jnp.arange(n), jnp.asarray(n), jax.random.key(0)
    seen = []
    for _ in range(2 * n // batch):
        key, sub = jax.random.split(key)
        idx, perm, pos = _batch_indices(sub, perm, pos, n, batch, True)
        seen.append(np.asarray(idx))
    epochs = np.concatenate(seen).reshape(2, n)
    for e in epochs:
        assert sorted(e) == list(range(n))
    assert not np.array_equal(epochs[0], epochs[1])


def test_sgd_divergence_past_gamma_max(gaussian):
    res = hsgd.simulate(gaussian, 1.3 * hsgd.theory.gamma_max(gaussian), jnp.linspace(0, 30, 7),
                        jax.random.key(0), num_runs=2)
    assert np.all(res.diverged)


def test_grad_and_vmap_through_finite_ode(gaussian):
    ts = jnp.linspace(0, 3, 4)
    lam = np.linspace(0.2, 3.0, 20)
    small = hsgd.FiniteProblem.from_spectrum(lam, np.ones(20), 40, loss_min=1.0,
                                             sigma=np.ones(20) / 20, target_shift=np.ones(20))

    def final(g):
        return hsgd.ode(small, g, ts).risk[-1]

    g0, h = 1.0, 1e-4
    fd = (final(g0 + h) - final(g0 - h)) / (2 * h)
    # Central differences have O(h^2) ~ 1e-8 error plus solver noise ~1e-9/h: 1e-4 relative.
    np.testing.assert_allclose(jax.grad(final)(g0), fd, rtol=1e-4)
    gs = jnp.array([0.5, 1.0, 1.5])
    batched = jax.vmap(lambda g: hsgd.volterra(gaussian, g, ts).loss)(gs)
    for i, g in enumerate(gs):
        np.testing.assert_allclose(batched[i], hsgd.volterra(gaussian, g, ts).loss, rtol=1e-12)


def test_float32(gaussian):
    # float32 carries ~1e-7 relative round-off per step over ~6000 Volterra steps / a few
    # hundred ESDIRK steps at rtol 1e-5: 1e-3 relative to float64 is a safe bound.
    p32 = jax.tree_util.tree_map(
        lambda x: x.astype(jnp.float32) if isinstance(x, jax.Array) and x.dtype == jnp.float64
        else x, gaussian)
    ts = jnp.linspace(0, 10, 6)
    g = 0.6 * hsgd.theory.gamma_max(gaussian)
    ref = hsgd.volterra(gaussian, g, ts)
    for solve in (hsgd.ode, hsgd.volterra):
        sol = solve(p32, jnp.float32(g), ts)
        assert sol.loss.dtype == jnp.float32
        np.testing.assert_allclose(sol.loss, ref.loss, rtol=1e-3)


def test_constructors(tmp_path):
    rng = np.random.default_rng(0)
    Z, y = rng.standard_normal((80, 5)), rng.standard_normal(80)
    Zt, yt = rng.standard_normal((40, 5)), rng.standard_normal(40)
    prob = hsgd.FiniteProblem.random_features(Z, y, num_features=30, test=(Zt, yt), key=1)
    A = np.asarray(prob.data.A)
    assert A.shape == (80, 30) and prob.n == 80
    # Test loss at x0 = 0 is |y_test|^2 / (2 n_test).
    np.testing.assert_allclose(prob.gradient_flow_risk(0.0), 0.5 * np.mean(yt**2), rtol=1e-10)
    path = tmp_path / "data.npz"
    np.savez(path, A=A, b=y)
    again = hsgd.FiniteProblem.from_npz(path, ridge=0.1)
    np.testing.assert_allclose(again.gradient_flow_loss(0.0), 0.5 * np.sum(y**2), rtol=1e-12)


def test_bad_input_errors(tmp_path):
    A = np.ones((10, 3))
    A_nan = A.copy()
    A_nan[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"A has 1 non-finite entries \(first at \[2, 1\]"):
        hsgd.FiniteProblem.from_arrays(A_nan, np.ones(10))
    with pytest.raises(ValueError, match="b has length 9; expected 10"):
        hsgd.FiniteProblem.from_arrays(A, np.ones(9))
    with pytest.raises(ValueError, match="ridge must be finite and >= 0"):
        hsgd.FiniteProblem.from_arrays(A, np.ones(10), ridge=-1.0)
    prob = hsgd.FiniteProblem.from_arrays(A, np.ones(10))
    with pytest.raises(ValueError, match="batch must be between 1 and n = 10, got 11"):
        hsgd.simulate(prob, 0.1, [0.0, 1.0], jax.random.key(0), batch=11)
    with pytest.raises(ValueError, match="Sigma must be symmetric"):
        hsgd.FiniteProblem.from_arrays(A, np.ones(10), Sigma=np.triu(np.ones((3, 3))),
                                       x_star=np.ones(3))
    with pytest.raises(ValueError, match="unknown activation"):
        hsgd.FiniteProblem.random_features(A, np.ones(10), num_features=4, activation="gelu")
    np.savez(tmp_path / "x.npz", A=A)
    with pytest.raises(ValueError, match="missing \\['b'\\]"):
        hsgd.FiniteProblem.from_npz(tmp_path / "x.npz")
    spec_only = hsgd.FiniteProblem.marchenko_pastur(100, 50)
    with pytest.raises(ValueError, match="needs the data themselves"):
        hsgd.simulate(spec_only, 0.1, [0.0, 1.0], jax.random.key(0))


def test_finite_sde_mean_follows_volterra():
    # Homogenized SGD for finite data (SPEC §2): the mean of 32 paths vs the Volterra curve,
    # within 4 SE + 1% (1% covers the Euler-Maruyama bias at the default step, ~0.5%, and
    # round-off; SE from the paths themselves). The paths must actually fluctuate.
    prob = hsgd.FiniteProblem.gaussian(400, 200, 2, noise_std=0.3, ridge=0.05)
    g = 0.6 * hsgd.theory.gamma_max(prob)
    ts = jnp.linspace(0, 3, 4)
    pred = hsgd.volterra(prob, g, ts)
    res = hsgd.sde(prob, g, ts, jax.random.key(0), num_paths=32)
    for p, x in ((pred.loss, res.loss), (pred.risk, res.risk)):
        mean, se = np.mean(x, 0), np.std(x, 0, ddof=1) / np.sqrt(32)
        assert np.all(np.abs(mean - p) <= 4 * se + 0.01 * p), (mean, p)
        assert np.all(se[1:] > 0)
    assert np.all(hsgd.sde(prob, 1.3 * hsgd.theory.gamma_max(prob), jnp.linspace(0, 60, 4),
                           jax.random.key(1), num_paths=2).diverged)
    with pytest.raises(ValueError, match="one mode per eigen-direction"):
        hsgd.sde(hsgd.FiniteProblem.marchenko_pastur(100, 50), 0.5, ts, jax.random.key(0))
    with pytest.raises(ValueError, match="batch is not a parameter"):
        hsgd.sde(prob, 0.5, ts, jax.random.key(0), batch=4)
