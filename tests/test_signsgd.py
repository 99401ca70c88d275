"""signSGD (issue 17, SPEC §11): the per-mode ODE against the real iteration, its fixed point
against the closed form, homogenized signSGD against both, and the heavy-tailed comparison with
SGD at the best constant stepsize of each.

Problems: least squares, diagonal power-law covariance (alpha = 0.5, tr K/d = 1), a random
target of norm 1, X0 = 0, gamma = 0.5; label noise none, Gaussian sigma = 0.5, Student-t
nu = 1.5 (scale 0.5, infinite variance: the risk reported is the excess risk). Fixed seeds, so
every check is deterministic; the tolerances say what the measured spread allows.
"""

import math
import tomllib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hsgd
from hsgd._dynamics.streaming_signsgd import sign_kappa

GAMMA = 0.5
NOISES = {
    "none": lambda: hsgd.LeastSquares(0.0),
    "gaussian": lambda: hsgd.LeastSquares(0.5),
    "student": lambda: hsgd.LeastSquares(noise=hsgd.StudentTNoise(1.5, 0.5)),
}


def _problem(noise: str, d: int, key: int = 0):
    return hsgd.Problem.random(NOISES[noise](), hsgd.Spectrum.power_law(d, 0.5),
                               jax.random.PRNGKey(key))


def _agreement(noise, d, runs, ts):
    prob = _problem(noise, d)
    opt = hsgd.SignSGD(GAMMA)
    sol = hsgd.ode(prob, opt, ts)
    sim = hsgd.simulate(prob, opt, ts, jax.random.PRNGKey(1), num_runs=runs)
    mean = np.asarray(sim.mean())[1:]
    se = np.asarray(sim.std())[1:] / math.sqrt(runs)
    pred = np.asarray(sol.risk)[1:]
    rel, z = np.abs(pred - mean) / mean, np.abs(pred - mean) / se
    print(f"{noise} d={d} R={runs}: max rel {rel.max():.4f}, max |z| {z.max():.2f}, "
          f"max SE/mean {np.max(se / mean):.4f}")
    assert not bool(sol.diverged) and not np.any(np.asarray(sim.diverged))
    np.testing.assert_allclose(np.asarray(sol.risk)[0], np.asarray(sim.risk)[0, 0], rtol=1e-12)
    # Within 3% or 4 standard errors of the mean at every saved time (the criterion).
    assert np.all((rel <= 0.03) | (z <= 4.0)), (rel, z)
    return rel, z


@pytest.mark.parametrize("noise", list(NOISES))
def test_ode_matches_signsgd_runs_small(noise):
    # d = 500, 8 runs: the run-to-run spread gives SE/mean up to 3.3% (measured), so the 3%
    # branch alone would test the seed; 4 SE with 7 degrees of freedom is exceeded with
    # probability 0.5% per time if the ODE is right. Measured (these seeds): max rel 3.2%
    # (none, 1.2 SE), 2.3% (Gaussian, 1.6 SE), 4.7% (Student-t, 1.9 SE).
    _agreement(noise, 500, 8, jnp.array([0.0, 0.5, 1.0, 2.0, 4.0, 7.0, 10.0]))


@pytest.mark.slow
@pytest.mark.parametrize("noise", list(NOISES))
def test_ode_matches_signsgd_runs_full_size(noise):
    # The check: d = 2000, 16 runs, T = 20. Measured (this seed): max rel 1.05% (none),
    # 0.42% (Gaussian), 1.5% (Student-t nu = 1.5), all within 2.2 SE (SE/mean <= 1.1%).
    rel, _ = _agreement(noise, 2000, 16,
                        jnp.array([0, 0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 20.0]))
    assert rel.max() < 0.03


# ------------------------------------------------------------------- fixed point and kappa


def test_fixed_point_is_the_closed_form():
    # SPEC §12's check: log-uniform spectrum on [0.019, 5.71] (tr K/d = 1), sigma = 0.5,
    # gamma = 0.5: batch 8 reaches the fixed point 0.1497. The closed form tau^2 = c s and the
    # ODE at t = 4000 (after ~100 steps of the error-controlled solver) agree to 1e-7.
    lam = np.exp(np.linspace(np.log(0.019), np.log(5.71), 1000))
    prob = hsgd.Problem.isotropic(hsgd.LeastSquares(0.5),
                                  hsgd.Spectrum.from_eigenvalues(lam / lam.mean()))
    ts = jnp.array([0.0, 10.0, 100.0, 1000.0, 2000.0, 3000.0, 4000.0])
    for batch, spec_value in ((8, 0.1497), (1, None)):
        limit = float(hsgd.theory.signsgd_limit_risk(prob, GAMMA, batch))
        risk = np.asarray(hsgd.ode(prob, hsgd.SignSGD(GAMMA, batch), ts).risk)
        np.testing.assert_allclose(risk[-3:], limit, rtol=1e-7)
        if spec_value is not None:
            assert abs(limit - spec_value) < 5e-5
    # The closed form by hand: c = gamma sqrt(pi/2) mean(sqrt(lambda)) / (2 c_1), c_1 = sqrt(2/pi)
    m_half = np.mean(np.sqrt(lam / lam.mean()))
    c = GAMMA * math.sqrt(math.pi / 2) * m_half / (2 * math.sqrt(2 / math.pi))
    tau2 = c * (c + math.sqrt(c**2 + 4 * 0.25)) / 2
    np.testing.assert_allclose(float(hsgd.theory.signsgd_fixed_point(prob, GAMMA)), tau2,
                               rtol=1e-12)


@pytest.mark.parametrize("noise", ["none", "student"])
def test_fixed_point_other_noise_matches_the_ode(noise):
    # No noise: the closed form with sigma = 0 (tau^2 = c^2, O(gamma^2)); Student-t: the root of
    # tau^2 kappa(tau^2) = gamma sqrt(pi/2) mean(sqrt(lambda)) / 2 by bisection + Newton. The
    # ODE at long times is the reference (the same compiled solve as the agreement test).
    prob = _problem(noise, 500)
    ts = jnp.array([0.0, 10.0, 100.0, 1000.0, 2000.0, 3000.0, 4000.0])
    risk = np.asarray(hsgd.ode(prob, hsgd.SignSGD(GAMMA), ts).risk)
    limit = float(hsgd.theory.signsgd_limit_risk(prob, GAMMA))
    np.testing.assert_allclose(risk[-3:], limit, rtol=1e-7)
    # differentiable in gamma: d tau^2 / d gamma against a central difference
    g = jax.grad(lambda x: hsgd.theory.signsgd_fixed_point(prob, x))(GAMMA)
    h = 1e-5
    fd = (hsgd.theory.signsgd_fixed_point(prob, GAMMA + h)
          - hsgd.theory.signsgd_fixed_point(prob, GAMMA - h)) / (2 * h)
    np.testing.assert_allclose(float(g), float(fd), rtol=1e-6)


def test_kappa_quadrature():
    from scipy import integrate, stats

    # Gaussian noise through its density (the quadrature) equals the closed form c_1/sqrt(..)
    gauss = hsgd.GaussianNoise(0.5)
    as_density = hsgd.DensityNoise(lambda z: gauss.density(z), variance=0.25, scale=0.5)
    tau2 = jnp.array([1e-12, 1e-4, 0.01, 0.3, 1.0, 10.0, 1e4])
    np.testing.assert_allclose(sign_kappa(as_density, tau2), sign_kappa(gauss, tau2),
                               rtol=1e-13)
    # Student-t against scipy's adaptive quadrature of 2 E_{z ~ N(0, tau^2)} p(z)
    for nu in (0.7, 1.5, 4.0):
        noise = hsgd.StudentTNoise(nu, 0.5)
        for tau in (1e-4, 0.5, 15.0):
            def f(z):
                return 4 * stats.t(nu, scale=0.5).pdf(z) * stats.norm(scale=tau).pdf(z)
            ref = (integrate.quad(f, 0, 10 * tau, epsabs=0, epsrel=1e-13, limit=500)[0]
                   + integrate.quad(f, 10 * tau, np.inf, epsabs=0, epsrel=1e-13, limit=500)[0])
            np.testing.assert_allclose(float(sign_kappa(noise, tau**2)), ref, rtol=1e-11)
    # The small-residual limit is 2 p(0); the batch enters the Gaussian kappa as c_beta
    t = hsgd.StudentTNoise(1.5, 0.5)
    np.testing.assert_allclose(float(sign_kappa(t, 1e-20)), 2 * float(t.density(0.0)),
                               rtol=1e-9)
    c8 = math.sqrt(2) * math.gamma(4.5) / math.gamma(4.0)
    np.testing.assert_allclose(float(sign_kappa(gauss, 0.75, 8)), c8, rtol=1e-12)


def test_student_t_noise_law():
    from scipy import integrate, stats

    noise = hsgd.StudentTNoise(1.5, 0.5)
    ref = stats.t(1.5, scale=0.5)
    z = jnp.array([0.0, 0.3, 2.0, 50.0])
    np.testing.assert_allclose(noise.density(z), ref.pdf(np.asarray(z)), rtol=1e-12)
    x = jnp.zeros(1)
    want = 2 * integrate.quad(lambda e: np.exp(-e**2) * ref.pdf(e), 0, np.inf, epsrel=1e-13)[0]
    np.testing.assert_allclose(float(noise.expect(lambda e: jnp.exp(-e**2), x)), want,
                               rtol=1e-10)
    draws = jax.vmap(noise.sample, in_axes=(0, None))(
        jax.random.split(jax.random.PRNGKey(0), 200_000), x)
    # P(|eps| < 0.5): binomial SE 0.0011 at 2e5 draws; 5 SE
    assert abs(float(jnp.mean(jnp.abs(draws) < 0.5)) - (ref.cdf(0.5) - ref.cdf(-0.5))) < 5.5e-3
    assert float(noise.variance) == math.inf
    np.testing.assert_allclose(float(hsgd.StudentTNoise(4.0, 0.5).variance), 0.5, rtol=1e-15)
    with pytest.raises(ValueError, match="nu > 0"):
        hsgd.StudentTNoise(0.0)
    with pytest.raises(ValueError, match="infinite variance"):
        _ = noise.std


def test_sampled_noise_gives_the_student_t_kappa_and_curve():
    # A noise known only by draws: kappa = 2 E_eps phi_tau(eps), a sample mean. Reference: the
    # Student-t density's kappa (quadrature, 1e-13); tolerance 5 SE of the sample mean.
    t_noise = hsgd.StudentTNoise(1.5, 0.5)
    draws = jax.vmap(t_noise.sample, in_axes=(0, None))(
        jax.random.split(jax.random.PRNGKey(3), 400_000), jnp.zeros(1))
    sampled = hsgd.SampledNoise(draws)
    for tau2 in (0.05, 0.5, 5.0):
        tau = math.sqrt(tau2)
        phi = np.exp(-0.5 * (np.asarray(draws) / tau) ** 2) / (math.sqrt(2 * math.pi) * tau)
        se = 2 * phi.std() / math.sqrt(phi.size)
        got = float(sign_kappa(sampled, tau2))
        assert abs(got - float(sign_kappa(t_noise, tau2))) < 5 * se
    # The ODE with the sampled law follows the density's ODE to the kappa error (~0.3% at
    # these SEs; the risk inherits it at most proportionally): 1%.
    ts = jnp.linspace(0.0, 10.0, 6)
    spec = hsgd.Spectrum.power_law(300, 0.5)
    curves = [hsgd.ode(hsgd.Problem.random(hsgd.LeastSquares(noise=n), spec,
                                           jax.random.PRNGKey(0)), hsgd.SignSGD(GAMMA), ts).risk
              for n in (t_noise, sampled)]
    np.testing.assert_allclose(curves[1], curves[0], rtol=1e-2)
    with pytest.raises(ValueError, match="no finite known variance"):
        _ = sampled.std


# ------------------------------------------------------------------- homogenized signSGD


def test_sde_mean_follows_the_ode_and_spread_matches_signsgd():
    # d = 300, Gaussian sigma = 0.5, 64 paths and 64 runs: the SDE's mean against the ODE
    # (3% or 4 SE of the path mean), its spread against signSGD's (std ratio within 1.5: with
    # 64 samples each the log-ratio has sd ~0.13, so 1.5 is ~3 sd; measured 0.85-1.15).
    prob = _problem("gaussian", 300)
    opt = hsgd.SignSGD(GAMMA)
    ts = jnp.array([0.0, 0.25, 0.5, 1.0, 2.0, 5.0])
    sol = hsgd.ode(prob, opt, jnp.array([0.0, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0]))
    ode = np.asarray(sol.risk)[[0, 1, 2, 3, 4, 6]]
    paths = hsgd.sde(prob, opt, ts, jax.random.PRNGKey(2), num_paths=64)
    runs = hsgd.simulate(prob, opt, ts, jax.random.PRNGKey(1), num_runs=64)
    mean, se = np.asarray(paths.mean())[1:], np.asarray(paths.std())[1:] / 8.0
    rel = np.abs(mean - ode[1:]) / ode[1:]
    ratio = np.asarray(paths.std())[1:] / np.asarray(runs.std())[1:]
    print(f"SDE: max rel {rel.max():.4f}, max |z| {np.max(np.abs(mean - ode[1:]) / se):.2f}, "
          f"spread ratio {ratio.min():.2f}-{ratio.max():.2f}")
    assert np.all((rel <= 0.03) | (np.abs(mean - ode[1:]) <= 4 * se))
    assert np.all((ratio < 1.5) & (ratio > 1 / 1.5)), ratio


# ------------------------------------------------------------------- logistic regression


def _logistic(d):
    return hsgd.Problem.random(hsgd.Logistic(), hsgd.Spectrum.power_law(d, 0.5),
                               jax.random.PRNGKey(0), target_norm=3.0)


def test_logistic_ode_is_the_closed_form():
    # SPEC §11's remark: at batch 1 sign(a_j(sigma(a.x) - y)) = sign(a_j)(1 - 2y), so the mean
    # moves along K^{1/2} x* at the constant rate 2 gamma s* sqrt(2 lambda/pi) and each mode
    # diffuses at gamma^2. Reference: those moments in closed form on the instance (no solver),
    # B(t) = sum_j lambda_j [m_j(t) m_j(t)^T + (gamma^2 t / d) e1 e1^T], m_j = (x_j(t), x*_j).
    # The solver holds rtol 1e-7 on the aggregates of B: 1e-6 allows the accumulated error.
    d = 400
    prob = _logistic(d)
    ts = jnp.array([0.0, 0.5, 2.0, 5.0, 10.0])
    sol = hsgd.ode(prob, hsgd.SignSGD(GAMMA), ts)
    lam = np.asarray(prob.spectrum.eigenvalues)
    xs = np.asarray(prob.X_star)[:, 0]
    x0 = np.asarray(prob.X0)[:, 0]
    z, w = np.polynomial.hermite_e.hermegauss(200)
    sig = 1 / (1 + np.exp(-math.sqrt(float(lam @ xs**2)) * z))
    s_star = float((sig * (1 - sig)) @ w / math.sqrt(2 * math.pi))
    rate = np.sqrt(2 * lam / math.pi)
    for t, B in zip(np.asarray(ts), np.asarray(sol.B)):
        x = x0 + 2 * GAMMA * s_star * rate * t * xs
        ref = np.array([[lam @ x**2 + GAMMA**2 * t * lam.sum() / d, lam @ (x * xs)],
                        [lam @ (x * xs), lam @ xs**2]])
        np.testing.assert_allclose(B, ref, rtol=1e-6)


def test_logistic_ode_matches_signsgd_runs_and_sde():
    # d = 1000, 8 runs (and 8 SDE paths), ||x*||_K = 3, gamma = 0.5 to T = 10: the risk falls
    # from log 2 to ~0.56 and rises again (no feedback: the iterate overshoots and its noise
    # accumulates). Within 3% or 4 SE at every time (the criterion for signSGD); the
    # SE/mean is <= 0.8% here, and the measured errors are <= 1.6% (2.1 SE) for the runs and
    # <= 0.6% for the SDE's path mean.
    prob = _logistic(1000)
    opt = hsgd.SignSGD(GAMMA)
    ts = jnp.array([0.0, 0.5, 1.0, 2.0, 4.0, 7.0, 10.0])
    pred = np.asarray(hsgd.ode(prob, opt, ts).risk)[1:]
    for runs in (hsgd.simulate(prob, opt, ts, jax.random.PRNGKey(1), num_runs=8),
                 hsgd.sde(prob, opt, ts, jax.random.PRNGKey(2), num_paths=8)):
        mean = np.asarray(runs.mean())[1:]
        se = np.asarray(runs.std())[1:] / math.sqrt(8)
        rel, z = np.abs(pred - mean) / mean, np.abs(pred - mean) / se
        print(f"logistic: max rel {rel.max():.4f}, max |z| {z.max():.2f}")
        assert np.all((rel <= 0.03) | (z <= 4.0)), (rel, z)
    # the risk is not monotone: it has a minimum inside (0, T) (the closed form's U shape)
    assert pred.argmin() not in (0, pred.size - 1)


# ------------------------------------------------------------------- refusals and errors


def test_refusals_are_clear_errors():
    t_noise = hsgd.LeastSquares(noise=hsgd.StudentTNoise(1.5, 0.5))
    spec = hsgd.Spectrum.power_law(50, 0.5)
    prob_t = hsgd.Problem.random(t_noise, spec, jax.random.PRNGKey(0))
    ts = jnp.array([0.0, 1.0])
    # SGD's closed forms need E eps^2 (SPEC §11): its ODE and its SDE name the noise and why
    with pytest.raises(ValueError, match=r"StudentTNoise\(nu=1.5.*variance is infinite"):
        hsgd.ode(prob_t, hsgd.SGD(0.5), ts)
    with pytest.raises(ValueError, match="variance is infinite"):
        hsgd.sde(prob_t, hsgd.SGD(0.5), ts, jax.random.PRNGKey(0), num_paths=1)
    # ... but SGD's simulator runs (it needs samples only) and reports the excess risk
    runs = hsgd.simulate(prob_t, hsgd.SGD(0.1), ts, jax.random.PRNGKey(0), num_runs=1)
    np.testing.assert_allclose(np.asarray(runs.risk)[0, 0],
                               0.5 * float(jnp.sum(spec.eigenvalues * prob_t.X_star[:, 0]**2)),
                               rtol=1e-12)
    # signSGD: non-Gaussian noise needs batch 1; other losses and finite data have no ODE
    with pytest.raises(ValueError, match="batch = 1 only"):
        hsgd.ode(prob_t, hsgd.SignSGD(0.5, batch=2), ts)
    logistic = hsgd.Problem.isotropic(hsgd.Logistic(), spec)
    with pytest.raises(ValueError, match="Logistic exists for batch = 1 only"):
        hsgd.ode(logistic, hsgd.SignSGD(0.5, batch=2), ts)
    phase = hsgd.Problem.isotropic(hsgd.PhaseRetrieval(), spec)
    with pytest.raises(TypeError, match="LeastSquares and Logistic"):
        hsgd.ode(phase, hsgd.SignSGD(0.5), ts)
    finite = hsgd.FiniteProblem.gaussian(40, 20)
    with pytest.raises(hsgd.UnsupportedError, match=r"\(FiniteProblem, SignSGD\)"):
        hsgd.ode(finite, hsgd.SignSGD(0.5), ts)
    with pytest.raises(ValueError, match="batch must be a number >= 1"):
        hsgd.SignSGD(0.5, batch=0)
    with pytest.raises(ValueError, match="not both"):
        hsgd.LeastSquares(0.3, noise=hsgd.StudentTNoise(3.0))
    with pytest.raises(ValueError, match="teacher"):
        hsgd.LeastSquares(noise=hsgd.BernoulliTeacher())
    # a finite-variance Student-t is fine for SGD's ODE: sigma^2 = s^2 nu / (nu - 2)
    ls = hsgd.LeastSquares(noise=hsgd.StudentTNoise(4.0, 0.5))
    B = jnp.array([[1.0, 0.2], [0.2, 1.0]])
    np.testing.assert_allclose(float(ls.moments(B).h), 0.5 * (1.6 + 0.5), rtol=1e-14)


def test_config_names_signsgd():
    raw = tomllib.loads("""
[problem]
loss = "least_squares"
noise_std = 0.5
d = 100
[problem.spectrum]
kind = "power_law"
alpha = 0.5
[optimizer]
name = "signsgd"
batch = 2
[optimizer.schedule]
kind = "constant"
value = 0.5
[run]
horizon = 2.0
num_times = 3
""")
    from hsgd._config import build

    job = build(raw)
    assert isinstance(job.optimizer, hsgd.SignSGD) and job.optimizer.batch == 2
    assert set(job.methods) == {"ode", "sgd"}


def test_config_student_t_noise_and_its_errors():
    from hsgd._config import ConfigError, build

    def job(**problem):
        lines = "\n".join(f"{k} = {v!r}".replace("'", '"') for k, v in problem.items())
        return build(tomllib.loads(f"""
[problem]
loss = "least_squares"
d = 50
{lines}
[optimizer]
name = "signsgd"
"""))

    noise = job(noise="student_t", noise_nu=1.5, noise_scale=0.5).problem.loss.noise
    assert isinstance(noise, hsgd.StudentTNoise)
    assert float(noise.nu) == 1.5 and float(noise.scale) == 0.5
    assert float(job(noise="student_t", noise_nu=3.0).problem.loss.noise.scale) == 1.0
    # the default is Gaussian noise_std, exactly as before the key existed
    assert float(job(noise_std=0.5).problem.loss.noise.std) == 0.5
    with pytest.raises(ConfigError, match="needs problem.noise_nu"):
        job(noise="student_t")
    with pytest.raises(ConfigError, match="noise_std does not apply to noise 'student_t'"):
        job(noise="student_t", noise_nu=1.5, noise_std=0.5)
    with pytest.raises(ConfigError, match="must be one of"):
        job(noise="cauchy")
    with pytest.raises(ConfigError, match="noise_nu"):
        job(noise="student_t", noise_nu=-1.0)


# ------------------------------------------------------------------- heavy tails vs SGD


def _best_on_runs(prob, make, gammas, horizon, runs, drop):
    best = (math.inf, None)
    for g in gammas:
        sim = hsgd.simulate(prob, make(float(g)), jnp.array([0.0, horizon]),
                            jax.random.PRNGKey(1), num_runs=runs)
        value = float(np.mean(np.asarray(sim.risk)[:, -1])) - drop
        best = min(best, (value, float(g)))
    return best


@pytest.mark.slow
@pytest.mark.parametrize("nu, sign_wins", [(1.5, True), (6.0, False)])
def test_best_constant_signsgd_vs_sgd_on_runs(nu, sign_wins):
    # d = 1000, T = 20, Student-t scale 0.5. The theory (signsgd_vs_sgd: both ODEs, best
    # constant stepsize of each) says: nu = 1.5, SGD has no ODE (infinite variance; its excess
    # is dominated by rare huge jumps) and signSGD wins; nu = 6, SGD wins by 1.76x. On runs (8
    # each, the best of 3 stepsizes around the predicted optimum; for SGD at nu = 1.5, of
    # 0.01, 0.03, 0.1): measured excess 0.050 (signSGD) vs 0.34 (SGD), and 0.0374 vs 0.0213.
    prob = hsgd.Problem.random(hsgd.LeastSquares(noise=hsgd.StudentTNoise(nu, 0.5)),
                               hsgd.Spectrum.power_law(1000, 0.5), jax.random.PRNGKey(0))
    horizon = 20.0
    theory = hsgd.theory.signsgd_vs_sgd(prob, horizon)
    assert (theory.ratio < 1) == sign_wins
    drop = 0.5 * float(prob.loss.noise_variance()) if prob.loss.has_finite_variance() else 0.0
    sign, sign_gamma = _best_on_runs(prob, hsgd.SignSGD, theory.signsgd_gamma * np.array(
        [0.5, 1.0, 2.0]), horizon, 8, drop)
    sgd_grid = (theory.sgd_gamma * np.array([0.5, 1.0, 2.0]) if math.isfinite(theory.sgd_gamma)
                else np.array([0.01, 0.03, 0.1]))
    sgd, _ = _best_on_runs(prob, hsgd.SGD, sgd_grid, horizon, 8, drop)
    print(f"nu={nu}: theory {theory.signsgd_risk:.4f} vs {theory.sgd_risk:.4f}; runs "
          f"{sign:.4f} vs {sgd:.4f}")
    assert (sign < sgd) == sign_wins
    # and the predicted best risks are those of the runs (SE/mean <= 3% at 8 runs)
    assert abs(sign / theory.signsgd_risk - 1) < 0.05 and sign_gamma == theory.signsgd_gamma
    if math.isfinite(theory.sgd_risk):
        assert abs(sgd / theory.sgd_risk - 1) < 0.05


@pytest.mark.slow
def test_tune_and_gradient_go_through_signsgd():
    # tune optimises a schedule through signSGD's ODE (reverse mode through StructuredKvaerno5)
    prob = hsgd.Problem.isotropic(hsgd.LeastSquares(0.5), hsgd.Spectrum.power_law(300, 0.5))
    res = hsgd.tune(prob, "knots", 10.0, optimizer=hsgd.SignSGD(0.3), num_steps=10,
                    num_knots=5)
    assert isinstance(res.optimizer, hsgd.SignSGD)
    assert float(res.risk[-1]) < float(res.initial_risk[-1])
    # the ODE's gradient in gamma against a central difference of converged solves
    ts = jnp.array([0.0, 2.0, 5.0])

    def final(g):
        return hsgd.ode(prob, hsgd.SignSGD(hsgd.Constant(g)), ts, rtol=1e-10).risk[-1]

    g = float(jax.grad(final)(0.4))
    fd = (float(final(0.4 + 1e-4)) - float(final(0.4 - 1e-4))) / 2e-4
    np.testing.assert_allclose(g, fd, rtol=1e-4)
