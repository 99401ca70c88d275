"""Gaussian expectations of the shipped losses: closed forms vs the generic engine, Wick moments,
Monte-Carlo references for J and I, singular B."""

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hsgd

B2 = jnp.array([[0.7, 0.3], [0.3, 1.2]])


def test_gauss_hermite_is_exact_on_wick_moments():
    # Isserlis/Wick: E[x^4] = 3a^2, E[x^2 y^2] = ac + 2b^2, E[x^6] = 15a^3. A 40-node rule is
    # exact for degree < 80; the only error is the Cholesky jitter (~1.5e-10 relative).
    rule = hsgd.default_rule(2)
    a, b, c = 0.7, 0.3, 1.2
    got = rule.expect(lambda r: jnp.stack([r[0] ** 4, r[0] ** 2 * r[1] ** 2, r[0] ** 6]), B2)
    np.testing.assert_allclose(got, [3 * a**2, a * c + 2 * b**2, 15 * a**3], rtol=1e-8)


def test_phase_retrieval_risk_wick_closed_form_matches_quadrature():
    # h = E[(x^2 - x*^2)^2] is a degree-4 polynomial: generic Gauss-Hermite must equal Wick.
    loss = hsgd.PhaseRetrieval(noise_std=0.2)
    closed, generic = loss.moments(B2), loss.generic_moments(B2)
    np.testing.assert_allclose(closed.h, generic.h, rtol=1e-8)
    a, b, c = 0.7, 0.3, 1.2
    np.testing.assert_allclose(closed.h, 3 * a**2 + 3 * c**2 - 2 * (a * c + 2 * b**2) + 0.04,
                               rtol=1e-12)
    # J = E[d/dr 4x(x^2 - x*^2)] = [12 E x^2 - 4 E x*^2, -8 E x x*] = [12a - 4c, -8b]: exact.
    np.testing.assert_allclose(generic.J, [[12 * a - 4 * c, -8 * b]], rtol=1e-8)


def test_least_squares_closed_form_matches_generic_path():
    loss = hsgd.LeastSquares(noise_std=0.5)
    closed, generic = loss.moments(B2), loss.generic_moments(B2)
    for name in ("h", "J", "I", "A"):
        # quadratic integrands: exact up to the 1.5e-10 relative Cholesky jitter
        np.testing.assert_allclose(getattr(closed, name), getattr(generic, name), rtol=1e-8,
                                   err_msg=name)


def _monte_carlo(loss, B, n, seed=0):
    """Plain Monte-Carlo estimates of J (by Stein's lemma, J = E[g r^T] B^{-1}) and I, with
    standard errors."""
    key = jax.random.PRNGKey(seed)
    k1, k2 = jax.random.split(key)
    r = jax.random.multivariate_normal(k1, jnp.zeros(B.shape[0]), B, (n,))
    m = loss.m
    eps = jax.vmap(loss.noise.sample)(jax.random.split(k2, n), r[:, m:])
    g = jax.vmap(loss.gradient)(r[:, :m], r[:, m:], eps)  # (n, m)
    gr = (g[:, :, None] * r[:, None, :]) @ jnp.linalg.inv(B)  # (n, m, p)
    gg = g[:, :, None] * g[:, None, :]
    mean = lambda v: jnp.mean(v, axis=0)
    se = lambda v: jnp.std(v, axis=0) / np.sqrt(n)
    return mean(gr), se(gr), mean(gg), se(gg)


@pytest.mark.parametrize("loss,B", [
    (hsgd.Logistic(), B2),
    (hsgd.Softmax(3), 0.6 * jnp.eye(6) + 0.15 * jnp.ones((6, 6))),
])
def test_J_and_I_match_monte_carlo(loss, B):
    # 4e5 samples: each entry must be within 5 standard errors of the quadrature value (a
    # false alarm at 5 sigma has probability ~6e-7 per entry); the quadrature error itself
    # (Gauss-Hermite ~1e-9, QMC ~1e-5) is far below the Monte-Carlo error.
    J_mc, J_se, I_mc, I_se = _monte_carlo(loss, B, 400_000)
    mom = loss.moments(B)
    assert np.all(np.abs(mom.J - J_mc) <= 5 * J_se + 1e-12), (mom.J, J_mc, J_se)
    assert np.all(np.abs(mom.I - I_mc) <= 5 * I_se + 1e-12), (mom.I, I_mc, I_se)


def test_logistic_closed_expressions_one_dimensional():
    # SPEC §1.1: J = E[s'(x), -s'(x*)], I = E[(s(x) - s(x*))^2 + s(x*)(1 - s(x*))]; with
    # B diagonal these are products of 1-D integrals, computed here with an independent
    # 200-node rule (exact to ~1e-12 for these smooth bounded integrands).
    z, w = np.polynomial.hermite_e.hermegauss(200)
    w = w / w.sum()
    a, c = 0.8, 1.5
    s = lambda u: 1 / (1 + np.exp(-u))
    ds = lambda u: s(u) * (1 - s(u))
    x, xs = np.sqrt(a) * z, np.sqrt(c) * z
    J = [np.sum(w * ds(x)), -np.sum(w * ds(xs))]
    I = (np.sum(w[:, None] * w[None, :] * (s(x)[:, None] - s(xs)[None, :]) ** 2)  # noqa: E741
         + np.sum(w * s(xs) * (1 - s(xs))))
    mom = hsgd.Logistic().moments(jnp.diag(jnp.array([a, c])))
    np.testing.assert_allclose(mom.J, [J], rtol=1e-7)
    np.testing.assert_allclose(mom.I, [[I]], rtol=1e-7)


@pytest.mark.parametrize("B", [B2, jnp.array([[9.0, 5.9], [5.9, 4.0]])])
def test_logistic_reduced_moments_match_fine_quadrature(B):
    # Reference: every moment straight from its definition on an independent 150 x 150
    # Gauss-Hermite rule (no Stein's lemma, no 1-D reduction); at these smooth integrands and
    # |B| <= 9 it is exact to ~1e-9. Tolerances: the reduced h, J, A use 120-node 1-D rules
    # (~1e-9); I uses the 56 x 56 rule, measured 8e-6 relative at the wide B = diag 9, 4.
    from hsgd._expectations import GaussianRule

    rule = GaussianRule.gauss_hermite(2, 150)
    r = np.asarray(rule.nodes) @ np.linalg.cholesky(np.asarray(B)).T
    w = np.asarray(rule.weights)
    x, xs = r[:, 0], r[:, 1]
    s = 1 / (1 + np.exp(-x))
    ss = 1 / (1 + np.exp(-xs))
    h = np.sum(w * (np.logaddexp(0, x) - ss * x))
    J = [np.sum(w * s * (1 - s)), -np.sum(w * ss * (1 - ss))]
    I = np.sum(w * ((s - ss) ** 2 + ss * (1 - ss)))  # noqa: E741
    A = np.sum(w * (x - xs) * (s - ss))
    mom = hsgd.Logistic().moments(B)
    np.testing.assert_allclose(mom.h, h, rtol=1e-7)
    np.testing.assert_allclose(mom.J, [J], rtol=1e-7)
    np.testing.assert_allclose(mom.A, A, rtol=1e-7)
    np.testing.assert_allclose(mom.I, [[I]], rtol=3e-5)


def test_singular_B_is_finite_and_correct():
    # X0 = 0: B = [[0, 0], [0, c]]. Then x = 0 exactly, so J_11 = s'(0) = 1/4 and
    # I = E[(1/2 - s(x*))^2 + s(x*)(1 - s(x*))] = 1/4 exactly (the two terms sum to 1/4).
    # Jitter perturbs x by variance ~1.5e-10 c: errors ~1e-10.
    B0 = jnp.array([[0.0, 0.0], [0.0, 2.0]])
    mom = hsgd.Logistic().moments(B0)
    np.testing.assert_allclose(mom.J[0, 0], 0.25, rtol=1e-8)
    np.testing.assert_allclose(mom.I[0, 0], 0.25, rtol=1e-8)
    grads = jax.grad(lambda B: hsgd.Logistic().moments(B).h)(B0)
    assert np.all(np.isfinite(grads))


def test_quasi_monte_carlo_rule_low_moments_exact():
    # Antithetic + whitened: the first three moments are exact by construction.
    rule = hsgd.GaussianRule.quasi_monte_carlo(5, 1000)
    z, w = np.asarray(rule.nodes), np.asarray(rule.weights)
    np.testing.assert_allclose(w @ z, 0, atol=1e-12)
    np.testing.assert_allclose((z * w[:, None]).T @ z, np.eye(5), atol=1e-12)
    np.testing.assert_allclose(w @ (z[:, 0] * z[:, 1] * z[:, 2]), 0, atol=1e-12)


def test_custom_huber_loss_matches_closed_form_risk():
    # Huber(u) with u ~ N(0, v), v = B11 - 2B12 + B22 (+ 0 noise): E = closed form with the
    # normal cdf/pdf. The kink limits Gauss-Hermite to ~1e-4 relative at 40 nodes.
    from math import erf, exp, pi, sqrt

    def huber(x, x_star, eps):
        u = x[0] - x_star[0] - eps
        return jnp.where(jnp.abs(u) < 1.0, 0.5 * u**2, jnp.abs(u) - 0.5)

    loss = hsgd.CustomLoss(huber)
    v = 0.7 - 0.6 + 1.2
    s = sqrt(v)
    Phi = 0.5 * (1 + erf(1 / (s * sqrt(2))))
    phi = exp(-1 / (2 * v)) / sqrt(2 * pi)
    inner = 0.5 * (v * (2 * Phi - 1) - 2 * s * phi)  # E[u^2/2 1{|u| < 1}]
    outer = 2 * s * phi + 2 * (1 - Phi) * (-0.5)  # E[(|u| - 1/2) 1{|u| > 1}]
    np.testing.assert_allclose(loss.moments(B2).h, inner + outer, rtol=2e-3)


def test_bad_inputs_name_the_problem():
    with pytest.raises(ValueError, match="num_classes"):
        hsgd.Softmax(1)
    with pytest.raises(ValueError, match="std"):
        hsgd.LeastSquares(noise_std=-1.0)
    with pytest.raises(ValueError, match="dimension 3"):
        hsgd.CustomLoss(lambda x, xs, e: x[0], rule=hsgd.default_rule(3))
    with pytest.raises(TypeError, match="callable"):
        hsgd.CustomLoss(3.0)


def test_kinked_gradient_loss_J_matches_monte_carlo():
    # Huber's gradient is a clip, whose derivative is a step: J must come from Stein's lemma
    # (first derivatives only), not from differentiating the gradient. Reference: plain
    # Monte-Carlo with 4e5 samples, accepted within 5 standard errors (as above).
    def huber(x, x_star, eps):
        u = x[0] - x_star[0] - eps
        return jnp.where(jnp.abs(u) < 1.0, 0.5 * u**2, jnp.abs(u) - 0.5)

    loss = hsgd.CustomLoss(huber, noise=hsgd.GaussianNoise(0.5))
    B = jnp.array([[1.2, 0.9], [0.9, 2.25]])
    J_mc, J_se, I_mc, I_se = _monte_carlo(loss, B, 400_000, seed=1)
    mom = loss.moments(B)
    assert np.all(np.abs(mom.J - J_mc) <= 5 * J_se), (mom.J, J_mc, J_se)
    assert np.all(np.abs(mom.I - I_mc) <= 5 * I_se), (mom.I, I_mc, I_se)


def test_logistic_moments_are_float64_when_x64_is_enabled_after_import():
    # The CLI imports hsgd first and enables x64 afterwards: quadrature nodes built at import
    # as JAX arrays would be float32 (h then off by ~6e-9). Reference: the generic engine,
    # which agrees with the reduced formulas to ~2e-12 at this B in float64.
    script = (
        "import jax, jax.numpy as jnp, hsgd\n"
        "jax.config.update('jax_enable_x64', True)\n"
        "B = jnp.array([[1.0, 0.3], [0.3, 2.0]])\n"
        "a, b = hsgd.Logistic().moments(B), hsgd.Logistic().generic_moments(B)\n"
        "print(max(float(jnp.max(jnp.abs(x - y))) for x, y in zip(a, b)))\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True)
    assert float(out.stdout) < 1e-9
