"""The SGD simulator's risk is an independent ground truth (issue 14, part 2): exact forms where
a loss has one, else Monte Carlo with its own standard error — never the ODE's rule."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hsgd
from hsgd._expectations import GaussianRule
from hsgd._risk import monte_carlo_risk, risk_estimate


def _huber(x, x_star, eps):
    u = x[0] - x_star[0] - eps
    return jnp.where(jnp.abs(u) < 1.0, 0.5 * u**2, jnp.abs(u) - 0.5)


def _huber_np(x, x_star, eps):
    u = np.abs(x - x_star - eps)
    return np.where(u < 1.0, 0.5 * u**2, u - 0.5)


class NoRuleHuber(hsgd.CustomLoss):
    """A user loss whose quadrature rule must never be asked for by the simulator."""

    def rule(self):
        raise AssertionError("the SGD simulator called the loss's rule()")


def _brute_force(B, num=2_000_000, seed=0):
    """Plain Monte Carlo of E huber(x - x* - eps), (x, x*) ~ N(0, B), eps ~ N(0, 0.5^2), with
    its standard error — NumPy, a generator and a sampler of its own."""
    rng = np.random.default_rng(seed)
    r = rng.multivariate_normal(np.zeros(2), B, size=num, method="eigh")
    f = _huber_np(r[:, 0], r[:, 1], 0.5 * rng.standard_normal(num))
    return f.mean(), f.std(ddof=1) / np.sqrt(num)


def test_custom_loss_risk_matches_brute_force_within_its_se():
    loss = NoRuleHuber(_huber, noise=hsgd.GaussianNoise(0.5))
    prob = hsgd.Problem.random(loss, hsgd.Spectrum.uniform(50, 0.5, 1.5), jax.random.PRNGKey(0),
                               target_norm=1.5, init_norm=0.5)
    res = hsgd.simulate(prob, 1.0, [0.0, 0.5, 1.0], jax.random.PRNGKey(1), num_runs=2)
    risk, se, B = map(np.asarray, (res.risk, res.risk_se, res.B))
    # 2^15 antithetic pairs and sd(f)/mean(f) ~ 1 for this loss: SE ~ 0.5% of the risk
    assert np.all(se > 0) and np.all(se < 1e-2 * risk)
    np.testing.assert_allclose(res.estimate_se(), np.sqrt(np.sum(se**2, axis=0)) / 2)
    for r in range(2):
        for i in range(3):
            ref, ref_se = _brute_force(B[r, i], seed=10 * r + i)
            # Two independent unbiased estimates: their difference has SE sqrt(se^2 + ref_se^2);
            # 4 of those bound 6 comparisons with false-alarm probability ~4e-4 (fixed seeds).
            assert abs(risk[r, i] - ref) <= 4 * np.hypot(se[r, i], ref_se), (r, i, risk, ref)


def test_reported_se_is_the_spread_of_the_estimate():
    # 40 independent estimates at one B: their standard deviation against the reported SE.
    # The sample sd of 40 draws is within +-35% of the truth with probability > 99.9%.
    loss = hsgd.CustomLoss(_huber, noise=hsgd.GaussianNoise(0.5))
    B = jnp.array([[1.0, 0.4], [0.4, 1.5]])
    est, se = jax.vmap(lambda k: monte_carlo_risk(loss, B, k, 4096))(
        jax.random.split(jax.random.PRNGKey(3), 40))
    ratio = float(jnp.std(est, ddof=1) / jnp.mean(se))
    assert 0.65 < ratio < 1.35, ratio


def test_singular_B_is_sampled_exactly():
    # X0 = 0 makes B singular: the eigen-factor puts all samples on x = 0 exactly, so the
    # estimate is E huber(-x* - eps) with x* ~ N(0, 1), which the brute force also gives.
    loss = hsgd.CustomLoss(_huber, noise=hsgd.GaussianNoise(0.5))
    B = np.array([[0.0, 0.0], [0.0, 1.0]])
    est, se = risk_estimate(loss, jnp.asarray(B), jax.random.PRNGKey(4))
    ref, ref_se = _brute_force(B)
    assert abs(float(est) - ref) <= 4 * np.hypot(float(se), ref_se)


B_CASES = [np.array([[0.7, 0.3], [0.3, 1.2]]), np.array([[4.0, -1.5], [-1.5, 2.5]]),
           np.array([[0.0, 0.0], [0.0, 2.0]])]


@pytest.mark.parametrize("B", B_CASES)
def test_exact_risks_of_the_shipped_losses(B):
    # Reference: the definition E f on a 200 x 200 Gauss-Hermite product rule (never the rules
    # the ODE uses). Phase retrieval and least squares are polynomials: exact on that rule,
    # but `expect` factors B + 1.5e-10 (tr B / p) I (psd_factor's jitter), which moves h by
    # ~1e-10 relative: tolerance 2e-9. Logistic: analytic integrand, 200 nodes per axis
    # accurate to ~1e-10 for these B (exact_risk's trapezoid rule to ~1e-40), same jitter.
    rule = GaussianRule.gauss_hermite(2, 200)
    Bj = jnp.asarray(B)
    for loss, fn, tol in [
        (hsgd.PhaseRetrieval(0.3), lambda r: (r[0]**2 - r[1]**2) ** 2 + 0.09, 2e-9),
        (hsgd.LeastSquares(0.4), lambda r: 0.5 * (r[0] - r[1]) ** 2 + 0.08, 2e-9),
        (hsgd.Logistic(), lambda r: jax.nn.softplus(r[0]) - jax.nn.sigmoid(r[1]) * r[0], 2e-9),
    ]:
        ref = float(rule.expect(fn, Bj))
        exact = loss.exact_risk(Bj)
        assert exact is not None
        np.testing.assert_allclose(float(exact), ref, rtol=tol, atol=tol, err_msg=repr(loss))
    assert hsgd.Softmax(3).exact_risk(jnp.eye(6)) is None  # no exact form: Monte Carlo


def test_exact_losses_have_zero_se_and_softmax_a_positive_one():
    key = jax.random.PRNGKey(1)
    B2 = jnp.asarray(B_CASES[0])
    for loss in (hsgd.LeastSquares(0.3), hsgd.Logistic(), hsgd.PhaseRetrieval()):
        assert float(risk_estimate(loss, B2, key)[1]) == 0.0
    B6 = jnp.eye(6) + 0.3 * jnp.ones((6, 6))  # softmax with C = 3: p = 6
    assert float(risk_estimate(hsgd.Softmax(3), B6, key)[1]) > 0.0
