"""Homogenized SGD (`hsgd.sde`, SPEC §1) against the ODE and against SGD.

All seeds are fixed, so every test is deterministic; the tolerances below are sized so that
they would also hold for other seeds with high probability (stated per test).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hsgd

D = 500
TS = jnp.linspace(0.0, 4.0, 9)


def _least_squares(d=D):
    spec = hsgd.Spectrum.uniform(d, 0.2, 1.8)
    return hsgd.Problem.random(hsgd.LeastSquares(noise_std=0.5), spec, jax.random.PRNGKey(0))


def _logistic(d=D):
    spec = hsgd.Spectrum.uniform(d, 0.1, 1.9)
    return hsgd.Problem.random(hsgd.Logistic(), spec, jax.random.PRNGKey(0), target_norm=2.0)


@pytest.mark.parametrize("case", ["least_squares", "logistic"])
def test_path_mean_follows_ode(case):
    # The SDE's mean is the ODE up to O(1/d) and the O(dt) Euler-Maruyama bias (<~0.5% with
    # the default step, see default_dt). The path mean over 16 paths has a t-law with 15
    # degrees of freedom around it: 5 standard errors is a >99.9% band at each of the 8 times;
    # 0.5% of the ODE absorbs the deterministic biases.
    if case == "least_squares":
        prob, gamma, dt = _least_squares(), 1.0, None
    else:
        # The logistic drift has slope gamma*lambda*E[sigma'] <= gamma*lambda/4, so the step
        # 0.05/(gamma*lambda_max) has the Euler bias the default step has for least squares
        # (measured: < 0.1% with 256 paths) at a fifth of the cost of the default.
        prob, gamma = _logistic(), 2.0
        dt = 0.05 / (gamma * 1.9)
    sol = hsgd.ode(prob, gamma, TS)
    res = hsgd.sde(prob, gamma, TS, jax.random.PRNGKey(1), num_paths=16, dt=dt)
    assert res.risk.shape == (16, TS.shape[0])
    assert not bool(jnp.any(res.diverged))
    assert bool(jnp.all(jnp.isinf(res.divergence_time)))
    mean, se = np.asarray(res.mean()), np.asarray(res.std()) / np.sqrt(16)
    ode = np.asarray(sol.risk)
    np.testing.assert_allclose(mean[0], ode[0], rtol=1e-10)  # same X0: exact at t = 0
    assert np.all(np.abs(mean - ode) <= 5 * se + 5e-3 * ode), (mean, ode, se)
    # the risk really moved (the comparison is not trivial), and the paths spread
    assert ode[-1] < 0.85 * ode[0]
    assert np.all(se[1:] > 0)


def test_spread_matches_sgd():
    # Homogenized SGD has SGD's O(d^-1/2) fluctuations, with a constant that is close to but not
    # exactly SGD's: SGD's per-step second-order term (gamma/d)^2 (a'Ka) g^2 / 2 is random (g^2
    # fluctuates at O(1)) and anti-correlated with its first-order term, where the SDE's Ito
    # term is deterministic. Measured here with 128 samples each: std(SDE)/std(SGD) ~ 1.3 at
    # t = 4 (1.3-1.5 over the run), the same at d = 250-1000. Both std's are estimated from 32
    # samples; a factor 2 leaves room for the 1.3 and for the sampling error of the ratio
    # (P(F(31, 31) > (2/1.3)^2) ~ 1%).
    prob = _least_squares()
    # 2 x 16 SDE paths: two keys reuse the solve compiled for test_path_mean_follows_ode
    sde_final = np.concatenate([
        np.asarray(hsgd.sde(prob, 1.0, TS, jax.random.PRNGKey(k), num_paths=16).risk[:, -1])
        for k in (5, 6)])
    sgd_final = np.asarray(hsgd.simulate(prob, 1.0, TS, jax.random.PRNGKey(2),
                                         num_runs=32).risk[:, -1])
    s_sde, s_sgd = np.std(sde_final, ddof=1), np.std(sgd_final, ddof=1)
    assert s_sde > 0 and s_sgd > 0
    assert 0.5 < s_sde / s_sgd < 2.0, (s_sde, s_sgd)
    # and the means agree within the Monte-Carlo band (plus the O(1/d) mean discrepancy)
    se = np.hypot(s_sde, s_sgd) / np.sqrt(32)
    assert abs(np.mean(sde_final) - np.mean(sgd_final)) < 5 * se


def test_halving_dt_changes_little():
    # Coupled paths (one Brownian path per key for every dt): halving dt moves the path mean
    # by the O(dt) Euler bias, which must be small against the Monte-Carlo error of the mean.
    # dt = 0.05/(gamma*lambda_max), five times the default, keeps the test fast (the Brownian
    # tree costs ~25 normal draws per step); its bias is ~2%, the move on halving ~1%.
    prob = _least_squares()
    dt = 0.05 / 1.8
    kw = dict(num_paths=16, coupled=True)
    coarse = hsgd.sde(prob, 1.0, TS, jax.random.PRNGKey(3), dt=dt, **kw)
    fine = hsgd.sde(prob, 1.0, TS, jax.random.PRNGKey(3), dt=dt / 2, **kw)
    se = np.asarray(fine.std()) / np.sqrt(16)
    diff = np.abs(np.asarray(coarse.mean() - fine.mean()))
    assert np.all(diff[1:] < 3 * se[1:]), (diff, se)
    # coupling works: the paths themselves are close (same Brownian path, strong order 1/2)
    assert float(jnp.max(jnp.abs(coarse.risk - fine.risk) / fine.risk)) < 0.05


def test_vmapped_paths_and_no_retrace():
    traces = []

    def f(x, x_star, eps):
        traces.append(1)  # runs only while JAX traces the loss
        return 0.5 * (x[0] - x_star[0]) ** 2

    spec = hsgd.Spectrum.uniform(16, 0.5, 1.5)
    prob = hsgd.Problem.random(hsgd.CustomLoss(f), spec, jax.random.PRNGKey(0))
    ts = jnp.array([0.0, 0.5, 1.0])
    res = hsgd.sde(prob, 0.5, ts, jax.random.PRNGKey(1), num_paths=5)
    assert res.risk.shape == (5, 3)
    assert res.B.shape == (5, 3, 2, 2)
    assert res.distance.shape == (5, 3)
    assert res.diverged.shape == res.divergence_time.shape == (5,)
    n = len(traces)
    assert n > 0
    res2 = hsgd.sde(prob, 0.5, ts, jax.random.PRNGKey(2), num_paths=5)
    assert len(traces) == n
    assert not np.allclose(res.risk[:, 1:], res2.risk[:, 1:])  # a new key, new paths
    # distinct paths inside one call
    assert float(jnp.std(res.risk[:, -1])) > 0


def test_divergence_is_reported():
    # gamma = 20, far above the critical 2 / (tr K / d) = 2: every path blows up and is flagged,
    # with NaN after. (dt as for gamma = 1, so the solve reuses the compiled grid.)
    prob = _least_squares()
    dt = hsgd._sde.default_dt(prob, 1.0)
    res = hsgd.sde(prob, 20.0, TS, jax.random.PRNGKey(0), num_paths=16, dt=dt)
    assert bool(jnp.all(res.diverged))
    assert bool(jnp.all(jnp.isfinite(res.divergence_time)))
    assert bool(jnp.all(jnp.isnan(res.risk[:, -1])))
    assert bool(jnp.all(jnp.isfinite(res.risk[:, 0])))


def test_only_time_zero():
    prob = _least_squares(d=20)
    res = hsgd.sde(prob, 1.0, jnp.array([0.0, 0.0]), jax.random.PRNGKey(0), num_paths=2)
    np.testing.assert_allclose(res.risk, float(prob.loss.risk(prob.B0())), rtol=1e-12)


def test_bad_input():
    prob = _least_squares(d=20)
    key = jax.random.PRNGKey(0)
    iso = hsgd.Problem.isotropic(hsgd.LeastSquares(), hsgd.Spectrum.uniform(20, 0.5, 1.5))
    with pytest.raises(ValueError, match="instance"):
        hsgd.sde(iso, 1.0, TS, key)
    with pytest.raises(ValueError, match="num_paths"):
        hsgd.sde(prob, 1.0, TS, key, num_paths=0)
    with pytest.raises(ValueError, match="batch"):
        hsgd.sde(prob, 1.0, TS, key, batch=0)
    with pytest.raises(ValueError, match="ts"):
        hsgd.sde(prob, 1.0, jnp.array([1.0, 0.5]), key)
    with pytest.raises(ValueError, match="ts"):
        hsgd.sde(prob, 1.0, jnp.array([-1.0, 0.5]), key)
    with pytest.raises(ValueError, match="dt"):
        hsgd.sde(prob, 1.0, TS, key, dt=0.0)
    with pytest.raises(ValueError, match="coupled=True"):  # increments keyed in float32
        hsgd.sde(prob, 1.0, jnp.array([0.0, 1.0, 1.0 + 1e-9]), key)
