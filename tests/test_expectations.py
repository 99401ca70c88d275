"""Error-controlled Gaussian expectations (issue 14, part 1): the automatic rule of
`AbstractLoss.refined` on user losses of each hard kind — a tanh committee with p = 3 and p = 4,
a hinge with a sign teacher (jumps in x and x*), a ReLU student (a kink in x) and Huber
regression with Student-t label noise — against references computed independently of hsgd's
rules; the estimate must cover the true error of every moment.

References (float64, numpy/scipy, never hsgd's engine):
* p = 2 losses: conditional closed forms given one coordinate (the other is Gaussian given it),
  integrated by scipy's adaptive `quad` on the half-lines either side of the jump/kink: smooth
  integrands there, error ~1e-12 relative;
* Student-t noise: nested `quad` with the kinks of Huber as breakpoints; J in closed form by the
  t cdf (1-D);
* tanh committees: every moment straight from its definition (J as E[d g / d r] with the
  analytic Hessian, not Stein's lemma) on a fine tensor trapezoid grid in eigen-coordinates of B;
  its own convergence is checked in the test (two spacings agree to < 1e-9 relative).

Acceptance: |auto - reference| <= (estimate + 1e-7) x scale for each moment, where estimate is
`moment_errors(B)` of the refined loss and the scales are those the estimate is relative to
(E|f| = h for these non-negative losses, the Frobenius norms of J and I, sqrt(E|x - x*|^2 tr I)
for A). The 1e-7 = rtol / 100 absorbs the references' own error (<= 1e-9) and estimates that are
off by a small factor far below the tolerance, where they do not matter (measured: Huber with
t-noise, h: true 2.3e-8 vs estimate 9.6e-9); every error that matters (>= rtol / 100) must be
covered by the estimate itself.
"""

import math
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, stats

import hsgd
from hsgd._expectations import ExpectationAccuracyWarning, GaussianRule
from hsgd._loss.base import Moments
from hsgd._noise import AbstractNoise

QUAD = dict(epsabs=0.0, epsrel=1e-12, limit=200)


@eqx.filter_jit
def _moments_and_errors(loss, B):
    return loss.moments(B), loss.moment_errors(B)


@eqx.filter_jit
def _jitted_error(loss, B):
    return loss.moment_error(B)


def _scales(ref: Moments, B, m):
    B = np.asarray(B)
    if B.shape[0] == 2 * m:
        P = np.concatenate([np.eye(m), -np.eye(m)], axis=1)
        scale_a = math.sqrt(np.trace(P @ B @ P.T) * np.trace(ref.I))
    else:  # m != m*: no A
        scale_a = np.nan
    return Moments(abs(ref.h), np.linalg.norm(ref.J), np.linalg.norm(ref.I), scale_a)


def _check_covered(loss, B, ref: Moments, rtol_met: bool):
    """The refined loss's moments agree with `ref` within its own estimate, moment by moment."""
    mom, err = _moments_and_errors(loss, B)
    scales = _scales(ref, B, loss.m)
    report = {}
    for name in ("h", "J", "I", "A") if loss.m == loss.m_star else ("h", "J", "I"):
        got, want = np.asarray(getattr(mom, name)), np.asarray(getattr(ref, name))
        true_rel = np.max(np.abs(got - want)) / getattr(scales, name)
        est = float(getattr(err, name))
        report[name] = (true_rel, est)
        assert true_rel <= est + 1e-7, (name, got, want, true_rel, est)
    if rtol_met:
        assert max(e for _, e in report.values()) <= 1e-5, report
    return report


def _refine(loss, B, expect_warning):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        refined, est = loss.refined(B)
    warned = [w for w in caught if issubclass(w.category, ExpectationAccuracyWarning)]
    assert bool(warned) == expect_warning, ([str(w.message) for w in warned], est)
    if warned:  # the warning states the estimate
        assert f"{est:.3g}" in str(warned[0].message)
    return refined, est


# -- tanh committees (smooth, p = 3 and 4) ---------------------------------------------------

def _committee(m, m_star):
    def committee(x, x_star, eps):
        return 0.5 * (jnp.mean(jnp.tanh(x)) - jnp.mean(jnp.tanh(x_star)) - eps) ** 2
    return hsgd.CustomLoss(committee, m=m, m_star=m_star)


def _ball_grid(p, spacing, radius):
    """The points spacing * k, k in Z^p, of norm <= radius (p = 3, 4), built from sorted 2-D
    and 1-D/2-D blocks so that the cube is never formed."""
    k = int(radius / spacing) + 1
    axis = spacing * np.arange(-k, k + 1)
    disc = np.stack(np.meshgrid(axis, axis, indexing="ij"), axis=-1).reshape(-1, 2)
    disc = disc[np.sum(disc**2, axis=1) <= radius**2]
    rest = axis[:, None] if p == 3 else disc
    norms = np.sum(rest**2, axis=1)
    order = np.argsort(norms)
    rest, norms = rest[order], norms[order]
    blocks = []
    for point in disc:
        n = np.searchsorted(norms, radius**2 - point @ point, side="right")
        blocks.append(np.concatenate([np.broadcast_to(point, (n, 2)), rest[:n]], axis=1))
    return np.concatenate(blocks, axis=0)


def _committee_reference(m, m_star, B, spacing):
    """Moments of f = (mean tanh x - mean tanh x*)^2 / 2 from their definitions on a tensor
    trapezoid grid (spacing `spacing`, ball of radius 7) in the eigen-coordinates of B."""
    p = m + m_star
    a = np.concatenate([np.full(m, 1.0 / m), np.full(m_star, -1.0 / m_star)])
    evals, evecs = np.linalg.eigh(np.asarray(B))
    # ball of radius 7: P(|z| > 7) < 1e-9 for p <= 4, and the integrands are bounded
    z = _ball_grid(p, spacing, 7.0)
    w = np.exp(-0.5 * np.sum(z**2, axis=1))
    w /= w.sum()
    r = z @ (evecs * np.sqrt(evals)).T
    t = np.tanh(r)
    sech2 = 1.0 - t**2
    S = t @ a                                   # mean tanh x - mean tanh x*
    f = 0.5 * S**2
    g = S[:, None] * a[None, :m] * sech2[:, :m]  # d f / d x_i
    # d g_i / d r_k = a_i sech2_i (a_k sech2_k) + delta_ik S a_i (-2 t_i sech2_i)
    H = (a[None, :m, None] * sech2[:, :m, None]) * (a[None, None, :] * sech2[:, None, :])
    H[:, np.arange(m), np.arange(m)] += (S[:, None] * a[None, :m]
                                         * (-2.0 * t[:, :m] * sech2[:, :m]))
    x_minus = r[:, :m] - (r[:, m:] if m == m_star else 0.0)
    A = np.sum(w * np.sum(x_minus * g, axis=1)) if m == m_star else np.nan
    return Moments(w @ f, np.tensordot(w, H, axes=1),
                   np.einsum("q,qa,qb->ab", w, g, g), A)


@pytest.mark.parametrize("m,m_star", [(2, 1), (2, 2)])
def test_tanh_committee_meets_rtol_and_matches_reference(m, m_star):
    # Smooth but with poles of tanh near the real axis: today's default (20^3, 10^4
    # Gauss-Hermite) is ~2e-3 and ~1e-2 off here; the automatic rule must meet 1e-5 (a
    # trapezoid grid, measured ~2e-6 and ~4e-6 estimated) and its estimate cover the truth.
    p = m + m_star
    B = jnp.asarray(0.8 * np.eye(p) + 0.3 * np.ones((p, p)))
    ref = _committee_reference(m, m_star, B, spacing=0.25 if p == 3 else 0.3)
    # the reference's own convergence: spacing 0.25/0.3 vs 0.3/0.36 (analytic integrand, the
    # trapezoid error falls like exp(-c/h); measured < 1e-9 relative on every moment)
    coarse = _committee_reference(m, m_star, B, spacing=0.3 if p == 3 else 0.36)
    for a, b in zip(ref, coarse):
        if np.all(np.isfinite(a)):
            assert np.max(np.abs(np.asarray(a) - b)) <= 1e-9 * np.max(np.abs(a))
    loss = _committee(m, m_star)
    default_err = float(_jitted_error(loss, B))
    assert default_err > 1e-4  # the default rule misses 1e-5 here (issue 14's report)
    refined, est = _refine(loss, B, expect_warning=False)
    assert est <= 1e-5
    _check_covered(refined, B, ref, rtol_met=True)


# -- hinge with a sign teacher (jumps in x and in x*) ----------------------------------------

def _hinge(x, x_star, eps):
    return jnp.maximum(0.0, 1.0 - jnp.sign(x_star[0]) * x[0])


def _hinge_reference(B):
    a, b, c = (float(v) for v in (B[0, 0], B[0, 1], B[1, 1]))
    s = math.sqrt(a - b * b / c)
    N = stats.norm

    def parts(t):  # given x* = t: x ~ N(b t / c, s^2); u = y x with y = sign(t)
        y = 1.0 if t > 0 else -1.0
        mu = y * b * t / c
        k = (1.0 - mu) / s
        h = (1.0 - mu) * N.cdf(k) + s * N.pdf(k)
        eg = -y * N.cdf(k)                          # E[g | t], g = -y 1{u < 1}
        egx = -(mu * N.cdf(k) - s * N.pdf(k))       # E[g x | t] = -E[u 1{u < 1}]
        return np.array([h, eg * t, egx, N.cdf(k)])  # h, E[g x*], E[g x], I

    dens = lambda t: N.pdf(t / math.sqrt(c)) / math.sqrt(c)  # noqa: E731
    vals = np.array([
        sum(integrate.quad(lambda t, i=i: parts(t)[i] * dens(t), lo, hi, **QUAD)[0]
            for lo, hi in ((-np.inf, 0.0), (0.0, np.inf)))
        for i in range(4)])
    h, egxs, egx, I = vals  # noqa: E741
    J = np.array([[egx, egxs]]) @ np.linalg.inv(np.asarray(B))  # Stein: E[g r^T] B^{-1}
    return Moments(h, J, np.array([[I]]), egx - egxs)


def test_hinge_with_sign_teacher_estimate_covers_the_error():
    # g = -sign(x*) 1{sign(x*) x < 1} jumps on x* = 0 and on x = +-1: no fixed rule of 1e6
    # points meets 1e-5 here (Gauss-Hermite 40 x 40 is ~3% off on I), so the budget is
    # exhausted, the warning gives the estimate, and that estimate must still cover the truth.
    B = jnp.array([[1.0, 0.6], [0.6, 1.0]])
    ref = _hinge_reference(B)
    loss = hsgd.CustomLoss(_hinge)
    refined, est = _refine(loss, B, expect_warning=True)
    assert est < 5e-3  # measured ~2e-3 (4 SE): today's 40 x 40 rule is ~3e-2 off on I
    report = _check_covered(refined, B, ref, rtol_met=False)
    # and the estimate is not vacuous: within ~30x of the true error of the worst moment
    worst = max(report.values(), key=lambda te: te[1])
    assert worst[0] * 30 >= worst[1] or worst[1] <= 1e-4, report


# -- a kink in x: a ReLU student with a bias ---------------------------------------------------

BIAS = 0.4


def _relu_student(x, x_star, eps):
    return 0.5 * (jnp.maximum(x[0] - BIAS, 0.0) - x_star[0]) ** 2


def _relu_reference(B):
    a, b, c = (float(v) for v in (B[0, 0], B[0, 1], B[1, 1]))
    beta, tau2 = b / a, c - b * b / a  # x* | x ~ N(beta x, tau2)

    def parts(x):
        relu = max(x - BIAS, 0.0)
        on = 1.0 if x > BIAS else 0.0
        h = 0.5 * ((relu - beta * x) ** 2 + tau2)
        eg = on * (x - BIAS - beta * x)  # E[(relu - x*) 1{x > bias} | x]
        egxs = on * ((x - BIAS) * beta * x - (tau2 + beta**2 * x * x))  # E[g x* | x]
        I = on * ((x - BIAS - beta * x) ** 2 + tau2)  # noqa: E741
        return np.array([h, eg * x, egxs, I])

    dens = lambda x: stats.norm.pdf(x / math.sqrt(a)) / math.sqrt(a)  # noqa: E731
    h, egx, egxs, I = (  # noqa: E741
        sum(integrate.quad(lambda x, i=i: parts(x)[i] * dens(x), lo, hi, **QUAD)[0]
            for lo, hi in ((-np.inf, BIAS), (BIAS, np.inf)))
        for i in range(4))
    J = np.array([[egx, egxs]]) @ np.linalg.inv(np.asarray(B))
    return Moments(h, J, np.array([[I]]), egx - egxs)


def test_relu_student_kink_in_x_estimate_covers_the_error():
    # f has a kink on x = 0.4, so the integrands of J and I (through the gradient
    # (relu(x - 0.4) - x*) 1{x > 0.4}) jump there by -x*: a line in z-coordinates off the
    # origin (at the origin a symmetric rule would be exact by symmetry). Jumps converge
    # algebraically (~N^-3/4 on the replicated grids): the budget is exhausted with a warning
    # (measured estimate ~6e-4 vs ~2e-3 for today's 40 x 40), and the estimate must cover.
    B = jnp.array([[0.9, 0.5], [0.5, 1.3]])
    ref = _relu_reference(B)
    loss = hsgd.CustomLoss(_relu_student)
    assert float(_jitted_error(loss, B)) > 1e-5
    refined, est = _refine(loss, B, expect_warning=True)
    assert est < 5e-3
    _check_covered(refined, B, ref, rtol_met=False)


def _huber_plain(x, x_star, eps):
    u = x[0] - x_star[0]
    return jnp.where(jnp.abs(u) < DELTA, 0.5 * u**2, DELTA * (jnp.abs(u) - 0.5 * DELTA))


def test_huber_kink_with_continuous_gradient_estimate_covers_the_error():
    # Huber without noise: f is C^1, its gradient clip(u) has kinks (not jumps) on |u| = 1.
    # Today's 40 x 40 rule: ~8e-3 on I. The replicated rules get within ~3e-5 at the 1e6-point
    # budget (they are made symmetric in each coordinate, which Stein's J needs at singular B,
    # X0 = 0, at a ~3x cost in accuracy here), so a warning with the estimate, which must
    # cover the truth. Reference: u = x - x* ~ N(0, v) in closed form,
    # h = E Huber(u), J = P(|u| < 1) [1, -1], I = E clip(u)^2, A = E[u clip(u)] = v P(|u| < 1).
    B = jnp.array([[0.7, 0.3], [0.3, 1.2]])
    v = float(B[0, 0] - 2 * B[0, 1] + B[1, 1])
    s = math.sqrt(v)
    Phi, phi = stats.norm.cdf(DELTA / s), stats.norm.pdf(DELTA / s)
    inside = 2 * Phi - 1                                  # P(|u| < 1)
    eu2_in = v * inside - 2 * s * DELTA * phi             # E[u^2 1{|u| < 1}]
    e_abs_out = 2 * s * phi                               # E[|u| 1{|u| > 1}]
    h = 0.5 * eu2_in + DELTA * e_abs_out - 0.5 * DELTA**2 * (1 - inside)
    ref = Moments(h, np.array([[inside, -inside]]), np.array([[eu2_in + DELTA**2 * (1 - inside)]]),
                  v * inside)
    loss = hsgd.CustomLoss(_huber_plain)
    assert float(_jitted_error(loss, B)) > 1e-4
    refined, est = _refine(loss, B, expect_warning=True)
    assert est < 1e-4
    _check_covered(refined, B, ref, rtol_met=False)


def test_nearly_singular_B_keeps_estimates_finite_and_small():
    # X0 = 0 gives B = [[0, 0], [0, c]] (x = 0 up to the jitter), and late in training x ~ x*
    # makes B nearly singular the other way; Stein's J divides by the Cholesky diagonal there.
    # The automatic rules are symmetric in each coordinate, so their estimates (and J) stay
    # bounded: reference J for the biased ReLU at X0 = 0 in closed form: x = 0 < bias, so
    # g = 0 everywhere: J = 0, I = 0, h = E[x*^2] / 2 = c / 2.
    B0 = jnp.array([[0.0, 0.0], [0.0, 1.3]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExpectationAccuracyWarning)
        refined, est = hsgd.CustomLoss(_relu_student).refined(B0)
    assert np.isfinite(est) and est < 1e-3
    mom = eqx.filter_jit(lambda lo, b: lo.moments(b))(refined, B0)
    np.testing.assert_allclose(mom.h, 0.65, rtol=1e-9)
    np.testing.assert_allclose(mom.J, 0.0, atol=1e-9)
    # the hinge rule chosen at a generic B, evaluated at nearly singular B's: finite estimates
    refined, _ = hsgd.CustomLoss(_hinge).refined(jnp.array([[1.0, 0.6], [0.6, 1.0]]))
    Bs = jnp.stack([B0, jnp.array([[1.0, 0.999], [0.999, 1.0]])])
    errs = eqx.filter_jit(jax.vmap(refined.moment_error))(Bs)
    assert np.all(np.isfinite(errs)) and np.all(errs < 0.1), errs


# -- Student-t label noise (heavy tails) with a Huber loss (kinks) ----------------------------

NU, SIGMA, DELTA = 4, 0.5, 1.0


def _t4_quantile_of_normal(z):
    """sigma * F^{-1}(Phi(z)) for Student-t with 4 degrees of freedom (Shaw's closed form),
    from the lower tail probability Phi(-|z|) so that the far tails stay accurate."""
    tail = jax.scipy.special.ndtr(-jnp.abs(z))
    alpha = 4.0 * tail * (1.0 - tail)
    q = jnp.cos(jnp.arccos(jnp.sqrt(alpha)) / 3.0) / jnp.sqrt(alpha)
    return jnp.sign(z) * 2.0 * jnp.sqrt(jnp.maximum(q - 1.0, 0.0))


class StudentT4Noise(AbstractNoise):
    """eps = sigma t_4: heavy-tailed (infinite kurtosis), as a function of one normal."""

    num_normals = 1

    def from_normal(self, z, x_star):
        return SIGMA * _t4_quantile_of_normal(z[0])

    def expect(self, fn, x_star):  # fallback path (rules of dimension p): 2001-node trapezoid
        z = jnp.linspace(-10.0, 10.0, 2001, dtype=x_star.dtype)
        w = jnp.exp(-0.5 * z**2)
        values = jax.vmap(fn)(SIGMA * _t4_quantile_of_normal(z))
        return jax.tree_util.tree_map(lambda v: jnp.tensordot(w / w.sum(), v, axes=1), values)

    def sample(self, key, x_star):
        return SIGMA * jax.random.t(key, NU, (), x_star.dtype)


def _huber(x, x_star, eps):
    u = x[0] - x_star[0] - eps
    return jnp.where(jnp.abs(u) < DELTA, 0.5 * u**2, DELTA * (jnp.abs(u) - 0.5 * DELTA))


def _t4_pdf(e):  # density of sigma t_4 in closed form (scipy's per-call overhead is 100x)
    t = e / SIGMA
    return 0.375 * (1.0 + t * t / 4.0) ** -2.5 / SIGMA


def _t4_cdf(e):
    t = e / SIGMA
    s = t / math.sqrt(t * t + 4.0)
    return 0.5 + 0.75 * (s - s**3 / 3.0)


def _huber_t_reference(B):
    v = float(B[0, 0] - 2 * B[0, 1] + B[1, 1])  # u = x - x* ~ N(0, v)
    hub = lambda w: 0.5 * w * w if abs(w) < DELTA else DELTA * (abs(w) - 0.5 * DELTA)  # noqa
    psi = lambda w: min(max(w, -DELTA), DELTA)  # noqa: E731

    def over_noise(fn, u):  # E_eps fn(u - eps), kinks at eps = u +- delta
        pieces = ((-np.inf, u - DELTA), (u - DELTA, u + DELTA), (u + DELTA, np.inf))
        return sum(integrate.quad(lambda e: fn(u - e) * _t4_pdf(e), lo, hi, **QUAD)[0]
                   for lo, hi in pieces)

    du = stats.norm(scale=math.sqrt(v)).pdf
    outer = lambda fn: integrate.quad(lambda u: fn(u) * du(u), -np.inf, np.inf,  # noqa: E731
                                      epsabs=0.0, epsrel=1e-11, limit=200)[0]
    h = outer(lambda u: over_noise(hub, u))
    I = outer(lambda u: over_noise(lambda w: psi(w) ** 2, u))  # noqa: E741
    A = outer(lambda u: u * over_noise(psi, u))  # E[u g(u)], g = E_eps psi
    c = outer(lambda u: _t4_cdf(u + DELTA) - _t4_cdf(u - DELTA))  # E g'(u)
    return Moments(h, np.array([[c, -c]]), np.array([[I]]), A)


def test_student_t_quantile_transform():
    # Shaw's closed form against scipy's t quantile, tails included (z up to 9: u ~ 1e-19);
    # the reference's closed-form density and cdf against scipy's.
    e = np.linspace(-20.0, 20.0, 17)
    np.testing.assert_allclose([_t4_pdf(v) for v in e], stats.t.pdf(e, NU, scale=SIGMA),
                               rtol=1e-12)
    np.testing.assert_allclose([_t4_cdf(v) for v in e], stats.t.cdf(e, NU, scale=SIGMA),
                               rtol=1e-12, atol=1e-15)
    z = np.array([-9.0, -5.0, -1.0, -0.1, 0.0, 0.3, 2.0, 6.0, 9.0])
    got = np.asarray(_t4_quantile_of_normal(jnp.asarray(z)))
    want = np.sign(z) * stats.t.isf(stats.norm.sf(np.abs(z)), NU)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-14)


def test_squared_loss_with_student_t_noise_meets_rtol():
    # Heavy tails through the quantile transform (eps(z) grows like exp(z^2 / 8), E eps^4 = inf)
    # on a smooth loss: closed forms with E eps^2 = sigma^2 nu / (nu - 2) = 2 sigma^2:
    # h = (v + 2 sigma^2) / 2, J = [1, -1], I = v + 2 sigma^2, A = v.
    def squared(x, x_star, eps):
        return 0.5 * (x[0] - x_star[0] - eps) ** 2

    B = jnp.array([[1.0, 0.4], [0.4, 0.8]])
    v = float(B[0, 0] - 2 * B[0, 1] + B[1, 1])
    e2 = SIGMA**2 * NU / (NU - 2)
    ref = Moments(0.5 * (v + e2), np.array([[1.0, -1.0]]), np.array([[v + e2]]), v)
    refined, est = _refine(hsgd.CustomLoss(squared, noise=StudentT4Noise()), B,
                           expect_warning=False)
    assert refined.rule().dim == 3  # the noise integrated jointly
    _check_covered(refined, B, ref, rtol_met=True)


def test_huber_with_student_t_noise_estimate_covers_the_error():
    # The noise is integrated jointly with (x, x*) (p + q = 3); the integrand has a kink
    # along |x - x* - eps| = delta and heavy tails in eps (eps(z) grows like exp(z^2 / 8)).
    # Measured: a trapezoid grid with a half-shifted companion, estimate 8.5e-6, true
    # error 7.8e-6 (I).
    B = jnp.array([[1.0, 0.4], [0.4, 0.8]])
    ref = _huber_t_reference(B)
    loss = hsgd.CustomLoss(_huber, noise=StudentT4Noise())
    assert loss.integration_dim == 3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExpectationAccuracyWarning)
        refined, est = loss.refined(B)
    assert refined.rule().dim == 3
    assert est < 1e-3
    _check_covered(refined, B, ref, rtol_met=est <= 1e-5)


# -- the interface -----------------------------------------------------------------------------

def test_closed_forms_report_zero_and_refined_keeps_them():
    B = jnp.array([[0.7, 0.3], [0.3, 1.2]])
    for loss in (hsgd.LeastSquares(0.5), hsgd.PhaseRetrieval(0.2)):
        assert float(loss.moment_error(B)) == 0.0
        same, est = loss.refined(B)
        assert same is loss and est == 0.0
    # Logistic: its reduced forms at two resolutions agree to rounding (~1e-15) at this B
    same, est = hsgd.Logistic().refined(B)
    assert isinstance(same, hsgd.Logistic) and est < 1e-12


def test_smooth_user_loss_keeps_todays_default_rule():
    # A logistic-type user loss is analytic with far poles at this B: the default 40 x 40
    # Gauss-Hermite rule is chosen again (same cost as today), its companion the next finer.
    def softplus_loss(x, x_star, eps):
        return jax.nn.softplus(x[0]) - jax.nn.sigmoid(x_star[0]) * x[0]

    B = jnp.array([[0.7, 0.3], [0.3, 1.2]])
    refined, est = hsgd.CustomLoss(softplus_loss).refined(B)
    rule = refined.rule()
    assert rule.label == "gauss_hermite(p=2, n=40)" and rule.num_points == 1600
    assert est <= 1e-5


def test_moment_error_is_traceable_and_vmaps_over_B():
    # The refined rule's estimate along a solution: vmap over a stack of B, inside jit.
    def cubic(x, x_star, eps):
        return jnp.abs(x[0] - x_star[0]) ** 3 / 6

    loss = hsgd.CustomLoss(cubic)
    B0 = jnp.array([[1.0, 0.5], [0.5, 1.0]])
    refined, est = loss.refined(B0)
    Bs = jnp.stack([B0, 0.5 * B0, 2.0 * B0])
    errs = eqx.filter_jit(jax.vmap(refined.moment_error))(Bs)
    assert errs.shape == (3,) and np.all(np.isfinite(errs)) and np.all(errs >= 0)
    # refined's estimate also includes its acceptance checks: at least moment_error(B0)
    assert errs[0] <= est * (1 + 1e-9)
    np.testing.assert_allclose(jax.vmap(hsgd.LeastSquares().moment_error)(Bs), 0.0)


def test_user_rule_is_respected_and_its_error_estimated():
    # A coarse 12 x 12 Gauss-Hermite rule on the ReLU student: kept as given, and its
    # estimate (distance to the automatic rule + that rule's estimate) covers its true error.
    B = jnp.array([[0.9, 0.5], [0.5, 1.3]])
    rule = GaussianRule.gauss_hermite(2, 12)
    loss = hsgd.CustomLoss(_relu_student, rule=rule)
    with pytest.warns(ExpectationAccuracyWarning, match="given rule"):
        same, est = loss.refined(B)
    assert same is loss and same.rule() is rule
    ref = _relu_reference(B)
    mom = loss.moments(B)
    scales = _scales(ref, B, 1)
    true = max(np.max(np.abs(np.asarray(getattr(mom, n)) - np.asarray(getattr(ref, n))))
               / getattr(scales, n) for n in ("h", "J", "I", "A"))
    assert true <= est, (true, est)


def test_replicated_rules_are_well_formed():
    # Every copy is a probability rule (weights sum to 1/R), copies are equal-size blocks.
    for rule in (GaussianRule.trapezoid(2, 0.5, replicates=4),
                 GaussianRule.randomized_qmc(5, 100, replicates=4)):
        w = np.asarray(rule.replicate_weights(jnp.float64))
        assert w.shape[0] == 4
        np.testing.assert_allclose(w.sum(axis=1), 1.0, rtol=1e-12)
        # each copy integrates E z_1^2 = 1 (grid: spectrally; shifted Halton: ~1/N)
        z2 = np.asarray(rule.nodes)[:, 0].reshape(4, -1) ** 2
        np.testing.assert_allclose(np.sum(w * z2, axis=1), 1.0, rtol=0.1)
    with pytest.raises(ValueError, match="replicates"):
        GaussianRule(jnp.zeros((5, 2)), jnp.full(5, 0.2), replicates=2)
    with pytest.raises(ValueError, match="dimension 3"):
        hsgd.CustomLoss(_huber, rule=hsgd.default_rule(3))  # no noise: p = 2 only
    assert hsgd.CustomLoss(_huber, noise=hsgd.GaussianNoise(0.3),
                           rule=hsgd.default_rule(3)).rule().dim == 3
