r"""Closed-form facts about multi-pass SGD on least squares (SPEC §2), with constant $\gamma$.

With $\mu_j = \lambda_j + \delta$ the Volterra kernel is
$\mathcal K(t) = \frac{\gamma^2}{n}\sum_j\nu_j\lambda_j^2e^{-2\gamma\mu_jt}$ and

$$\|\mathcal K\|_{L^1} = \frac{\gamma}{2n}\sum_j\nu_j\frac{\lambda_j^2}{\lambda_j+\delta}.$$

Every function here is a branch-free JAX function of the problem's arrays and $\gamma$.
"""

import math

import jax
import jax.numpy as jnp

from .._problem import FiniteProblem


def kernel_norm(problem: FiniteProblem, gamma):
    r"""$\|\mathcal K\|_{L^1} = \frac{\gamma}{2n}\sum_j\nu_j\lambda_j^2/(\lambda_j+\delta)$;
    without ridge $\gamma\operatorname{tr}(A^\top A)/(2n)$ (SPEC §2)."""
    return gamma * problem.sum_kernel() / (2.0 * problem.n)


def gamma_max(problem: FiniteProblem):
    r"""The divergence threshold $\gamma_{\max} = 2n\big/\sum_j\nu_j\lambda_j^2/(\lambda_j+
    \delta)$, i.e. $2n/\operatorname{tr}(A^\top A)$ without ridge: $\psi$ stays bounded iff
    $\gamma < \gamma_{\max}$ (SPEC §2)."""
    return 2.0 * problem.n / problem.sum_kernel()


def limit_loss(problem: FiniteProblem, gamma):
    r"""$\psi(\infty) = L(x_{\rm opt})/(1 - \|\mathcal K\|_{L^1})$ for $\gamma < \gamma_{\max}$,
    $+\infty$ beyond (SPEC §2)."""
    k = kernel_norm(problem, gamma)
    return jnp.where(k < 1, problem.loss_min / jnp.where(k < 1, 1 - k, 1.0), jnp.inf)


def limit_risk(problem: FiniteProblem, gamma):
    r"""$R(\infty) = R(x^{\rm gf}_\infty) + \tfrac12\sum_j\nu_j(S_v)_{jj}
    \frac{\gamma\lambda_j}{n\mu_j}\psi(\infty)$: the stationary variance of each mode
    ($\operatorname{Var}e_j \to \gamma\lambda_j\psi(\infty)/(n\mu_j)$); modes with $\mu_j = 0$
    keep their initial error."""
    psi = limit_loss(problem, gamma)
    lam, mu = problem.eigenvalues, problem.eigenvalues + problem.ridge
    var = jnp.where(mu > 0, gamma * lam * psi / (problem.n * jnp.where(mu > 0, mu, 1.0)), 0.0)
    if not problem.has_population:
        return jnp.full((), jnp.nan, lam.dtype)
    # The gradient-flow path forgets every mode with mu > 0; null modes keep their error.
    mean = problem.risk_at(jnp.where(mu > 0, 0.0, problem.init_error))
    return mean + 0.5 * jnp.sum(problem.counts * problem.risk_diagonal * var)


def _malthusian(problem, gamma, x):
    lam, mu = problem.eigenvalues, problem.eigenvalues + problem.ridge
    pos = lam > 0
    terms = jnp.where(pos, problem.counts * lam**2 / jnp.where(pos, mu - x, 1.0), 0.0)
    return gamma / (2.0 * problem.n) * jnp.sum(terms)


def malthusian_root(problem: FiniteProblem, gamma, lower_edge=None, iterations: int = 200):
    r"""The rate exponent $\lambda^*(\gamma)$: the root in $(0, \mu_{\min})$ of the Malthusian
    equation

    $$\frac{\gamma}{2n}\sum_j\nu_j\frac{\lambda_j^2}{\lambda_j + \delta - \lambda^*} = 1,$$

    so that $\psi(t) - \psi(\infty) \sim e^{-2\gamma\lambda^* t}$ (SPEC §2). $\mu_{\min}$ is
    the smallest $\lambda_j + \delta$ over modes with $\lambda_j > 0$ — or, for a quadrature
    of a continuous law, `lower_edge` $+\,\delta$ with `lower_edge` the lower edge of its
    support; when the sum stays below 1 up to the edge there is no root and $\lambda^* =
    \mu_{\min}$ (the phase below $\gamma^*$). For a discrete spectrum a root always exists
    when $\gamma < \gamma_{\max}$. Bisection (`iterations` halvings); NaN for
    $\gamma \ge \gamma_{\max}$ (no decay)."""
    lam = problem.eigenvalues
    big = jnp.max(lam) + problem.ridge + 1.0
    mu_min = jnp.min(jnp.where(lam > 0, lam + problem.ridge, big))
    if lower_edge is not None:
        mu_min = jnp.minimum(mu_min, lower_edge + problem.ridge)

    def body(_, bracket):
        lo, hi = bracket
        mid = 0.5 * (lo + hi)
        above = _malthusian(problem, gamma, mid) >= 1
        return jnp.where(above, lo, mid), jnp.where(above, mid, hi)

    lo, hi = jax.lax.fori_loop(0, iterations, body, (jnp.zeros_like(mu_min), mu_min))
    root = 0.5 * (lo + hi)
    return jnp.where(kernel_norm(problem, gamma) < 1, root, jnp.nan)


def asymptotic_rate(problem: FiniteProblem, gamma, lower_edge=None):
    r"""The exponential decay rate $2\gamma\lambda^*(\gamma)$ of $\psi(t) - \psi(\infty)$ per
    epoch (see [`malthusian_root`][])."""
    return 2.0 * gamma * malthusian_root(problem, gamma, lower_edge)


def marchenko_pastur_edge(n: int, d: int) -> float:
    r"""The lower edge $\frac nd(1 - \sqrt{d/n})^2$ of the nonzero spectrum of $A^\top A$ for
    Gaussian data $A_{ij}\sim N(0, 1/d)$ as $n, d \to\infty$ (for $d > n$, the edge of its
    $n$ nonzero eigenvalues, $\frac nd(1 - \sqrt{d/n})^2$ as well)."""
    r = d / n
    return (n / d) * (1.0 - math.sqrt(r)) ** 2


def phase_transition_stepsize(n: int, d: int) -> float:
    r"""The phase-transition stepsize $\gamma^*$ (SPEC §2, the talk's "SGD in the large") for
    Gaussian data $A_{ij}\sim N(0, 1/d)$, $d/n = r$, in the limit:

    $$\gamma^* = \Big(\frac{d}{2n}\int\frac{x^2}{x - a}\,d\mu(x)\Big)^{-1},$$

    $\mu$ the limiting spectral law of $A^\top A$ and $a$ its lower edge. Writing the continuous
    part as mass $\times$ the Marchenko–Pastur law with ratio $\rho = \min(r, 1/r) \le 1$ and
    scale $s$, the Cauchy transform at the edge gives in closed form
    $\int x^2/(x - a)\,d\mu = m_1 + a + a^2/(s\sqrt\rho\,(1 - \sqrt\rho))$ per unit mass,
    with $m_1 = s$ and $a = s(1 - \sqrt\rho)^2$. For $\gamma < \gamma^*$ the loss decays like
    $t^{-3/2}e^{-2\gamma\lambda_{\min}t}$;
    above, at the rate $2\gamma\lambda^*(\gamma)$ with $\lambda^* < \lambda_{\min}$.
    $\gamma^* \to \gamma_{\max} = 2$ as $r \to 1$ (the edge reaches 0)."""
    r = d / n
    sigma2 = n / d  # scale of A^T A's law
    rho, s, mass = (r, sigma2, 1.0) if r <= 1 else (1.0 / r, sigma2 * r, 1.0 / r)
    if rho == 1.0:
        return 2.0 * n / (d * mass * s)
    q = math.sqrt(rho)
    a = s * (1.0 - q) ** 2
    # int x^2/(x - a) dmu = m1 + a m0 + a^2 int dmu/(x - a); for the law (mass 1):
    # m1 = s, int dmu/(x - a) = 1/(s q (1 - q)).
    integral = mass * (s + a + a**2 / (s * q * (1.0 - q)))
    return 2.0 * n / (d * integral)
