"""Mini-batch SGD with heavy-ball momentum on finite data (SPEC §3): the recursion against the
continuous ODE, against full-batch heavy ball and against SGD+M; the theory (generating
function, limits, rates, optimiser); jit/vmap/grad; bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hsgd
from hsgd._simulate.finite_heavy_ball import _draw_batch
from hsgd.theory.momentum import _malthusian


@pytest.fixture(scope="module")
def gaussian():
    return hsgd.FiniteProblem.gaussian(600, 300, 0, noise_std=0.3)


def test_batch_one_no_momentum_is_euler_for_the_ode():
    # beta = 1, Delta = 0: per step the recursion is exactly Euler's method (step 1/n) for the
    # per-mode ODE of SPEC §2 with the noise factor (1 - 1/n), so the difference is O(gamma
    # lambda / n). Reference: the exact ODE solution — with constant gamma, (Var e, e^{-2
    # lambda Gamma}, 1) solve a linear ODE, so it is expm(M t) y0 (as in test_finite). Check
    # the order: the error must halve when n doubles (same spectrum and start), and stay below
    # gamma lambda_max / n.
    lam = np.linspace(0.2, 1.8, 40)
    e0 = np.cos(np.arange(40.0))
    gamma, T, L_min, J = 0.8, 3.0, 2.0, 40
    errors = []
    for n in (200, 400):
        prob = hsgd.FiniteProblem.from_spectrum(lam, e0, n, loss_min=L_min)
        ks = np.arange(0, int(T * n) + 1, n // 4)
        rec = hsgd.momentum_recursion(prob, gamma, ks, batch=1)
        M = np.zeros((2 * J + 1, 2 * J + 1))
        u = 2 * gamma**2 * lam / n
        M[:J, :J] = -2 * gamma * np.diag(lam) + np.outer(u, 0.5 * lam)
        M[:J, J:2 * J] = np.outer(u, 0.5 * lam * e0**2)
        M[:J, -1] = u * L_min
        M[J:2 * J, J:2 * J] = -2 * gamma * np.diag(lam)
        y0 = np.concatenate([np.zeros(J), np.ones(J), [1.0]])
        ref = []
        for t in ks / n:
            y = np.asarray(jax.scipy.linalg.expm(M * t)) @ y0
            ref.append(L_min + 0.5 * np.sum(lam * e0**2 * y[J:2 * J]) + 0.5 * np.sum(lam * y[:J]))
        errors.append(float(np.max(np.abs(np.asarray(rec.loss) / np.array(ref) - 1))))
        assert errors[-1] < gamma * lam.max() / n
    ratio = errors[0] / errors[1]
    assert 1.7 < ratio < 2.3, errors


def test_batch_one_matches_ode_with_population(gaussian):
    # Gaussian data with label noise, risk too: same O(gamma lambda_max / n) budget
    # (gamma lambda_max / n = 4.7e-3 here; measured 6e-4).
    n = gaussian.n
    ks = np.arange(0, 10 * n + 1, n // 2)
    rec = hsgd.momentum_recursion(gaussian, 0.5, ks, batch=1)
    ode = hsgd.ode(gaussian, 0.5, ks / n)
    bound = 0.5 * float(jnp.max(gaussian.eigenvalues)) / n
    np.testing.assert_allclose(rec.loss, ode.loss, rtol=bound)
    np.testing.assert_allclose(rec.risk, ode.risk, rtol=bound)
    np.testing.assert_allclose(rec.epochs, ks / n)


def test_full_batch_is_heavy_ball_on_the_data():
    # zeta = 1: no noise; the recursion must be the heavy-ball iteration on the data itself,
    # with ridge and a non-diagonal population (the J x J risk path). Reference: direct
    # iteration in NumPy; only round-off (1e-9 after 150 steps).
    rng = np.random.default_rng(0)
    n, d = 80, 40
    A = rng.standard_normal((n, d)) / np.sqrt(d)
    b = rng.standard_normal(n)
    Sigma = np.diag(rng.uniform(0.5, 1.5, d)) / d
    Sigma[0, 1] = Sigma[1, 0] = 0.2 / d
    x_star = rng.standard_normal(d)
    ridge, gamma, delta = 0.05, 0.25, 0.6
    prob = hsgd.FiniteProblem.from_arrays(A, b, ridge=ridge, Sigma=Sigma, x_star=x_star,
                                          noise_var=0.1)
    x = np.zeros(d)
    x_prev = x.copy()
    loss, risk = [], []
    for _ in range(151):
        loss.append(0.5 * np.sum((A @ x - b) ** 2))
        risk.append(0.5 * (x - x_star) @ Sigma @ (x - x_star) + 0.05)
        step = gamma * (A.T @ (A @ x - b) + ridge * x)
        x, x_prev = x - step + delta * (x - x_prev), x
    rec = hsgd.momentum_recursion(prob, gamma, np.arange(151), batch=n, momentum=delta)
    np.testing.assert_allclose(rec.loss, loss, rtol=1e-9)
    np.testing.assert_allclose(rec.risk, risk, rtol=1e-9)
    assert not rec.diverged


@pytest.mark.parametrize("batch, gamma, delta, K", [(1, 0.5, 0.0, 3000), (60, 0.02, 0.9, 300),
                                                    (300, 0.05, 0.5, 120)])
def test_recursion_matches_mean_of_sgd_momentum(gaussian, batch, gamma, delta, K):
    # The mean of 16 SGD+M runs (n = 600, d = 300) against the recursion. Tolerance: 4
    # standard errors of the mean (measured SE/mean <= 2.1%) plus 1% for the O(1/d)
    # finite-size corrections the deterministic equivalent neglects.
    ks = np.linspace(0, K, 7).astype(int)
    sim = hsgd.simulate_momentum(gaussian, gamma, ks, jax.random.key(3), batch=batch,
                                 momentum=delta, num_runs=16)
    rec = hsgd.momentum_recursion(gaussian, gamma, ks, batch=batch, momentum=delta)
    for runs, pred in ((sim.loss, rec.loss), (sim.risk, rec.risk)):
        runs = np.asarray(runs)
        mean = runs.mean(0)
        se = runs.std(0, ddof=1) / np.sqrt(runs.shape[0])
        assert np.all(np.abs(np.asarray(pred) - mean) <= 4 * se + 0.01 * mean)


def test_batches_are_drawn_without_replacement():
    idx = np.asarray(_draw_batch(jax.random.key(0), 50, 30))
    assert idx.shape == (30,) and np.unique(idx).size == 30 and idx.max() < 50


def test_generating_function_matches_direct_kernel_sum():
    # The Malthusian left side uses the closed-form generating function of u_m^2; reference:
    # the kernel K(m) built by iterating u_{m+1} = c u_m - Delta u_{m-1} and summing
    # sum_m K(m) r^-(m+1) (3000 terms: truncation < 1e-12 at these rates). Real and complex
    # roots both occur here (c^2 - 4 Delta changes sign across the spectrum).
    lam = np.array([0.3, 0.9, 1.7, 2.5])
    prob = hsgd.FiniteProblem.from_spectrum(lam, np.ones(4), 50, loss_min=1.0)
    gamma, delta, zeta = 0.6, 0.4, 0.3
    c = 1 + delta - gamma * zeta * lam
    assert np.any(c**2 < 4 * delta) and np.any(c**2 > 4 * delta)
    u_prev, u = np.zeros(4), np.ones(4)
    kernel = []
    for _ in range(3000):
        kernel.append(gamma**2 * zeta * (1 - zeta) / 50 * np.sum(lam**2 * u**2))
        u, u_prev = c * u - delta * u_prev, u
    kernel = np.array(kernel)
    edge = float(hsgd.theory.gdm_rate(prob, gamma, delta, zeta))
    for r in (edge + 0.05, 0.95, 1.0):
        direct = np.sum(kernel * r ** -(np.arange(3000) + 1.0))
        np.testing.assert_allclose(_malthusian(prob, gamma, delta, zeta, r), direct, rtol=1e-10)
    np.testing.assert_allclose(hsgd.theory.momentum_kernel_norm(prob, gamma, delta, zeta),
                               kernel.sum(), rtol=1e-10)


def test_limits_match_long_recursion(gaussian):
    # psi_inf = L_min / (1 - |K|) and the stationary risk: the recursion run until
    # psi_k - psi_inf is below round-off (rate^K < 1e-14) must sit on them (rtol 1e-9).
    zeta, gamma, delta = 0.1, 0.1, 0.5
    rate = float(hsgd.theory.momentum_rate(gaussian, gamma, delta, zeta))
    K = int(np.log(1e-14) / np.log(rate))
    rec = hsgd.momentum_recursion(gaussian, gamma, [K], batch_fraction=zeta, momentum=delta)
    np.testing.assert_allclose(rec.loss[-1], hsgd.theory.momentum_limit_loss(gaussian, gamma, delta,
                                                                      zeta), rtol=1e-9)
    np.testing.assert_allclose(rec.risk[-1], hsgd.theory.momentum_limit_risk(gaussian, gamma, delta,
                                                                      zeta), rtol=1e-9)


@pytest.mark.parametrize("zeta, delta, fraction", [(0.05, 0.8, 0.9), (0.2, 0.5, 0.9),
                                                   (0.9, 0.7, None)])
def test_rate_matches_recursion(gaussian, zeta, delta, fraction):
    # max{Lambda, Xi^-1} against the slope of log(psi_k - psi_inf) on the recursion, fitted
    # where the relative excess is in [1e-9, 1e-3] (asymptotic regime, above round-off).
    # Cases: two noise-dominated (zeta below the ICR crossover, gamma at 0.9 of the limit, a
    # Malthusian root well above Lambda; measured 1e-6) and one large batch with every
    # heavy-ball root
    # complex (gamma = 1.2 (1 - sqrt Delta)^2 / (zeta lambda_min)). Tolerance 1% on
    # -log(rate) (the bound; measured <= 0.2% at n = 3000).
    if fraction is None:
        cond = hsgd.theory.conditioning(gaussian)
        gamma = 1.2 * (1 - np.sqrt(delta)) ** 2 / (zeta * float(cond.mu_min))
    else:
        gamma = fraction * float(hsgd.theory.momentum_stepsize_limit(gaussian, delta, zeta))
    rate = float(hsgd.theory.momentum_rate(gaussian, gamma, delta, zeta))
    limit = float(hsgd.theory.momentum_limit_loss(gaussian, gamma, delta, zeta))
    K = int(25 / -np.log(rate))
    rec = hsgd.momentum_recursion(gaussian, gamma, [K], batch_fraction=zeta, momentum=delta)
    excess = (np.asarray(rec.loss_path) - limit) / limit
    ks = np.arange(K + 1)
    window = (ks >= np.argmax(excess < 1e-3)) & (excess > 1e-9)
    slope = np.polyfit(ks[window], np.log(excess[window]), 1)[0]
    assert abs(slope / np.log(rate) - 1) < 0.01


def test_no_noise_rate_is_gdm_rate_and_noise_rate_exceeds_it(gaussian):
    # zeta = 1: Xi^-1 = 0 and the rate is Lambda; zeta < 1 on a discrete spectrum: Xi^-1 >
    # Lambda (the generating function blows up at r = Lambda).
    assert float(hsgd.theory.momentum_noise_rate(gaussian, 0.3, 0.5, 1.0)) == 0.0
    assert float(hsgd.theory.momentum_rate(gaussian, 0.3, 0.5, 1.0)) == float(
        hsgd.theory.gdm_rate(gaussian, 0.3, 0.5, 1.0))
    assert float(hsgd.theory.momentum_noise_rate(gaussian, 0.3, 0.5, 0.2)) > float(
        hsgd.theory.gdm_rate(gaussian, 0.3, 0.5, 0.2))
    z_plus, z_minus = hsgd.theory.heavy_ball_roots(gaussian, 0.3, 0.5, 0.2)
    np.testing.assert_allclose(np.max(np.maximum(np.abs(z_plus), np.abs(z_minus)) ** 2),
                               hsgd.theory.gdm_rate(gaussian, 0.3, 0.5, 0.2), rtol=1e-12)


def test_stepsize_limit_and_divergence(gaussian):
    zeta, delta = 0.1, 0.5
    limit = float(hsgd.theory.momentum_stepsize_limit(gaussian, delta, zeta))
    assert hsgd.theory.momentum_converges(gaussian, 0.99 * limit, delta, zeta)
    assert not hsgd.theory.momentum_converges(gaussian, 1.01 * limit, delta, zeta)
    assert float(hsgd.theory.momentum_rate(gaussian, 0.99 * limit, delta, zeta)) < 1
    assert float(hsgd.theory.momentum_rate(gaussian, 1.01 * limit, delta, zeta)) > 1
    assert np.isinf(float(hsgd.theory.momentum_limit_loss(gaussian, 1.01 * limit, delta, zeta)))
    # The paper's conditions are sufficient: they must imply the exact one here.
    assert not hsgd.theory.momentum_converges(gaussian, limit, delta, zeta, condition="paper")
    # Past the limit the recursion reports divergence (values NaN from then on).
    rec = hsgd.momentum_recursion(gaussian, 1.5 * limit, np.arange(0, 4001, 100),
                                  batch_fraction=zeta, momentum=delta)
    assert bool(rec.diverged) and np.isfinite(float(rec.divergence_iteration))
    assert np.isnan(rec.loss[-1]) and np.isfinite(rec.loss[0])


def test_optimizer_beats_guides_and_finds_heavy_ball_optimum(gaussian):
    # At zeta = 1 the optimum is classical heavy ball: rate ((sqrt k - 1)/(sqrt k + 1))^2
    # (golden-section precision ~1e-6; allow 1e-4). At zeta < 1 the optimiser must be at least
    # as good as the talk's and paper's guides (the best Delta = 0: test_batch_saturation_small).
    cond = hsgd.theory.conditioning(gaussian)
    best = hsgd.theory.optimize_momentum(gaussian, 1.0)
    hb = ((np.sqrt(cond.classic) - 1) / (np.sqrt(cond.classic) + 1)) ** 2
    np.testing.assert_allclose(best.rate, hb, rtol=1e-4)
    zeta = 0.2
    best = hsgd.theory.optimize_momentum(gaussian, zeta)
    for guide in (hsgd.theory.near_optimal_parameters(gaussian, zeta),
                  hsgd.theory.near_optimal_parameters(gaussian, zeta, "paper")):
        assert float(best.rate) <= float(guide.rate) + 1e-9
    np.testing.assert_allclose(hsgd.theory.momentum_rate(gaussian, best.gamma, best.momentum, zeta),
                               best.rate, rtol=1e-12)


def test_grad_through_recursion_matches_finite_differences(gaussian):
    # d psi_K / d gamma and d / d Delta by jax.grad through the lax.scan vs central differences
    # (h = 1e-6: truncation O(h^2) ~ 1e-12, round-off ~ eps psi / h ~ 1e-8 relative).
    ks = np.array([0, 50, 200])

    def final(gamma, delta):
        return hsgd.momentum_recursion(gaussian, gamma, ks, batch=60, momentum=delta).loss[-1]

    g, d, h = 0.05, 0.6, 1e-6
    grads = jax.grad(final, argnums=(0, 1))(g, d)
    fd = ((final(g + h, d) - final(g - h, d)) / (2 * h),
          (final(g, d + h) - final(g, d - h)) / (2 * h))
    np.testing.assert_allclose(grads, fd, rtol=1e-6)
    # The noise rate is differentiable too (implicit function theorem through the root).
    rg = jax.grad(lambda g: hsgd.theory.momentum_noise_rate(gaussian, g, 0.5, 0.2))(0.3)
    rfd = (hsgd.theory.momentum_noise_rate(gaussian, 0.3 + h, 0.5, 0.2)
           - hsgd.theory.momentum_noise_rate(gaussian, 0.3 - h, 0.5, 0.2)) / (2 * h)
    np.testing.assert_allclose(rg, rfd, rtol=1e-5)


@pytest.mark.parametrize("segment, with_buffer", [(1, False), (7, True), (16, False),
                                                   (500, True)])
def test_hand_written_adjoint_matches_autodiff_of_the_plain_scan(segment, with_buffer):
    # momentum_scan's custom VJP against jax.grad of the same recursion written as a plain
    # lax.scan (the reference), for every input at once: per-step gs and ss, momentum, the
    # coefficient vectors, e0 and the buffer (rows written repeatedly: only the last write
    # counts). Segment sizes: 1, not dividing K = 200 (padding), dividing it, and above K.
    # Same arithmetic in another order: agreement to round-off (1e-11 relative).
    from hsgd._dynamics.momentum_scan import _initial, _run, momentum_scan

    rng = np.random.default_rng(1)
    J, K = 30, 200
    coef = (jnp.asarray(rng.uniform(0.1, 3.0, J)), jnp.asarray(rng.uniform(0, 1e-2, J)),
            jnp.asarray(rng.uniform(0, 1, (2, J))), jnp.asarray(0.01 * rng.normal(size=(2, J))),
            jnp.asarray([0.3, 0.2]))
    e0 = jnp.asarray(rng.normal(size=J))
    gs = jnp.asarray(0.2 + 0.1 * np.cos(np.arange(K) / 30))
    ss = gs**2
    slots = jnp.asarray(np.minimum(np.arange(K) // 20, 7), dtype=jnp.int32)
    saved = jnp.asarray(rng.normal(size=(9, 2, J))) if with_buffer else None
    weights = jnp.asarray(rng.normal(size=(K, 2)))

    def objective(scan, coef, momentum, e0, gs, ss, saved):
        values, buf = scan(coef, momentum, e0, gs, ss, slots, saved)
        out = jnp.sum(weights * values)
        return out if buf is None else out + jnp.sum(jnp.sin(buf))

    def plain(coef, momentum, e0, gs, ss, slots, saved):
        values, _, saved = _run(coef, momentum, _initial(e0), gs, ss, slots, saved)
        return values, saved

    def custom(*args):
        return momentum_scan(*args, segment=segment)

    args = (coef, jnp.asarray(0.6), e0, gs, ss, saved)
    which = tuple(range(6 if with_buffer else 5))
    ref = jax.grad(lambda *a: objective(plain, *a), argnums=which)(*args)
    got = jax.jit(jax.grad(lambda *a: objective(custom, *a), argnums=which))(*args)
    np.testing.assert_allclose(objective(custom, *args), objective(plain, *args), rtol=1e-13)
    for r, g in zip(jax.tree.leaves(ref), jax.tree.leaves(got)):
        np.testing.assert_allclose(g, r, rtol=1e-11, atol=1e-11 * float(jnp.max(jnp.abs(r))))
    # Only the momentum and the steps perturbed (what tuning asks for): same values.
    part = jax.grad(lambda m, g: objective(custom, coef, m, e0, g, ss, saved),
                    argnums=(0, 1))(args[1], gs)
    np.testing.assert_allclose(part[0], ref[1], rtol=1e-11)
    np.testing.assert_allclose(part[1], ref[3], rtol=1e-11)


def test_grad_with_full_population_hessian_matches_finite_differences():
    # The J x J risk path (buffer of recorded (m, V)) under jax.grad: d R_K / d gamma, d Delta
    # against central differences (h = 1e-6, relative round-off ~1e-8).
    rng = np.random.default_rng(2)
    n, d = 80, 40
    A = rng.standard_normal((n, d)) / np.sqrt(d)
    Sigma = np.diag(rng.uniform(0.5, 1.5, d)) / d
    Sigma[0, 1] = Sigma[1, 0] = 0.2 / d
    prob = hsgd.FiniteProblem.from_arrays(A, rng.standard_normal(n), ridge=0.05, Sigma=Sigma,
                                          x_star=rng.standard_normal(d), noise_var=0.1)
    ks = np.array([0, 30, 100])

    def final(gamma, delta):
        rec = hsgd.momentum_recursion(prob, gamma, ks, batch=8, momentum=delta)
        return rec.risk[-1] + rec.risk[1]

    g, dl, h = 0.1, 0.5, 1e-6
    grads = jax.grad(final, argnums=(0, 1))(g, dl)
    fd = ((final(g + h, dl) - final(g - h, dl)) / (2 * h),
          (final(g, dl + h) - final(g, dl - h)) / (2 * h))
    np.testing.assert_allclose(grads, fd, rtol=1e-6)


def test_vmap_over_gamma(gaussian):
    gammas = jnp.array([0.01, 0.03, 0.05])
    ks = np.array([0, 20, 100])
    batched = jax.vmap(lambda g: hsgd.momentum_recursion(gaussian, g, ks, batch=60,
                                                         momentum=0.5).loss)(gammas)
    for i, g in enumerate(gammas):
        looped = hsgd.momentum_recursion(gaussian, float(g), ks, batch=60, momentum=0.5).loss
        np.testing.assert_allclose(batched[i], looped, rtol=1e-13)


def test_float32_smoke(gaussian):
    # float32 recursion vs float64: 300 steps accumulate ~ K eps32 = 4e-5 relative error;
    # allow 1e-4.
    f32 = jax.tree_util.tree_map(
        lambda x: x.astype(jnp.float32) if isinstance(x, jax.Array) and x.dtype == jnp.float64
        else x, gaussian)
    ks = np.array([0, 100, 300])
    a = hsgd.momentum_recursion(f32, 0.05, ks, batch=60, momentum=0.6)
    b = hsgd.momentum_recursion(gaussian, 0.05, ks, batch=60, momentum=0.6)
    assert a.loss.dtype == jnp.float32
    np.testing.assert_allclose(a.loss, b.loss, rtol=1e-4)
    np.testing.assert_allclose(a.risk, b.risk, rtol=1e-4)
    # The hand-written adjoint in float32 (GPU users): same accumulation, same 1e-4.
    def final(prob, gamma, delta):
        return hsgd.momentum_recursion(prob, gamma, ks, batch=60, momentum=delta).risk[-1]

    g32 = jax.grad(final, argnums=(1, 2))(f32, jnp.float32(0.05), jnp.float32(0.6))
    g64 = jax.grad(final, argnums=(1, 2))(gaussian, 0.05, 0.6)
    assert g32[0].dtype == jnp.float32
    np.testing.assert_allclose(g32, g64, rtol=1e-4)


def test_bad_input(gaussian):
    ks = np.array([0, 10])
    for bad in (1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match=f"momentum={bad}"):
            hsgd.momentum_recursion(gaussian, 0.1, ks, batch=10, momentum=bad)
        with pytest.raises(ValueError, match="momentum"):
            hsgd.simulate_momentum(gaussian, 0.1, ks, jax.random.key(0), batch=10,
                                   momentum=bad)
    with pytest.raises(ValueError, match="batch=601"):
        hsgd.momentum_recursion(gaussian, 0.1, ks, batch=601)
    with pytest.raises(ValueError, match="batch=601"):
        hsgd.simulate_momentum(gaussian, 0.1, ks, jax.random.key(0), batch=601)
    with pytest.raises(ValueError, match="batch_fraction=0"):
        hsgd.momentum_recursion(gaussian, 0.1, ks, batch_fraction=0.0)
    with pytest.raises(ValueError, match="exactly one"):
        hsgd.momentum_recursion(gaussian, 0.1, ks)
    with pytest.raises(ValueError, match="iterations"):
        hsgd.momentum_recursion(gaussian, 0.1, [10, 5], batch=1)
    with pytest.raises(ValueError, match="condition"):
        hsgd.theory.momentum_converges(gaussian, 0.1, 0.5, 0.1, condition="loose")
    # Traced momentum out of range: the check inside the jitted solver fires.
    with pytest.raises(Exception, match="momentum must be in"):
        jax.vmap(lambda d: hsgd.momentum_recursion(gaussian, 0.1, ks, batch=10,
                                                   momentum=d).loss)(jnp.array([0.5, 1.2]))
    spectrum_only = hsgd.FiniteProblem.marchenko_pastur(600, 300)
    with pytest.raises(ValueError, match="needs the data"):
        hsgd.simulate_momentum(spectrum_only, 0.1, ks, jax.random.key(0), batch=10)


def test_batch_saturation_small():
    # Small problem (n = 400, d = 40, ICR = 0.11): the optimised rate must improve with zeta,
    # be no worse than plain SGD, and the measured knee must be within a factor 4 of ICR (the
    # theory: about 2 ICR, see hsgd.theory.saturation).
    prob = hsgd.FiniteProblem.gaussian(400, 40, 1)
    zs = np.array([0.005, 0.02, 0.1, 0.4, 0.9])
    sat = hsgd.theory.batch_saturation(prob, zs, iterations=30, coarse=8, golden_steps=16)
    assert np.all(np.diff(np.asarray(sat.rate)) < 0)
    assert np.all(np.asarray(sat.rate) <= np.asarray(sat.sgd_rate) + 1e-9)
    icr = float(sat.conditioning.icr)
    assert icr / 4 < float(sat.knee) < 4 * icr
