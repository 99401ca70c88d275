r"""The strongly convex convergence bound of one-pass SGD (SPEC §1).

For a loss $f(x; x^*, \varepsilon)$ (here $m = m^* = 1$) that is $\hat\mu$-strongly convex and
$\hat L$-smooth in $x$ with its minimum at the target, $\nabla_x f(x^*; x^*, \varepsilon) = 0$
(noiseless, realisable), the distance $D^2 = \|X - X^*\|^2$ of the deterministic equivalent obeys
(SPEC §1)

$$\frac{dD^2}{dt} = -2\gamma A(B) + \frac{\gamma^2}{\beta}\frac{\operatorname{tr}K}{d}
\operatorname{tr}I(B),\qquad A \ge \hat\mu\,\|X - X^*\|_K^2,\quad
\operatorname{tr}I \le \hat L^2\,\|X - X^*\|_K^2,\quad \|X - X^*\|_K^2 \ge \lambda_{\min}(K)D^2,$$

so for a constant $\gamma < 2\beta\hat\mu/(\hat L^2\operatorname{tr}K/d)$,

$$D^2(t) \le e^{-a(\gamma)t}D^2(0),\qquad a(\gamma) = \Big(2\gamma\hat\mu
- \frac{\gamma^2\hat L^2}{\beta}\frac{\operatorname{tr}K}{d}\Big)\lambda_{\min}(K).$$

The best constant stepsize $\gamma^\star = \beta\hat\mu/(\hat L^2\operatorname{tr}K/d)$ gives the
talk's rate $a = \beta(\hat\mu^2/\hat L^2)\,\lambda_{\min}(K)/(\operatorname{tr}K/d)$ (SPEC §1,
there with $\beta = 1$). The bound is an equality for least squares ($\hat\mu = \hat L = 1$) on an
isotropic spectrum ($K = \lambda I$).
"""

import jax.numpy as jnp

from .._problem import Problem


def _spectrum_facts(problem: Problem):
    spec = problem.spectrum
    return spec.mean(), spec.min()


def convex_rate(problem: Problem, gamma, mu, L, batch=1.0):
    r"""$a(\gamma) = (2\gamma\hat\mu - \gamma^2\hat L^2(\operatorname{tr}K/d)/\beta)\,
    \lambda_{\min}(K)$: the guaranteed exponential decay rate of $D^2$ at constant $\gamma$
    (negative: no guarantee) for a $\hat\mu$-strongly convex, $\hat L$-smooth, noiseless loss.
    `vmap`s over `gamma`, `mu`, `L`, `batch`."""
    mean, lam_min = _spectrum_facts(problem)
    return (2.0 * gamma * mu - gamma**2 * L**2 * mean / batch) * lam_min


def convex_stepsize(problem: Problem, mu, L, batch=1.0):
    r"""The constant stepsize that maximises [`convex_rate`][hsgd.theory.convex_rate]:
    $\gamma^\star = \beta\hat\mu/(\hat L^2\operatorname{tr}K/d)$ (where the rate is
    $\beta(\hat\mu^2/\hat L^2)\lambda_{\min}(K)/(\operatorname{tr}K/d)$)."""
    mean, _ = _spectrum_facts(problem)
    return batch * mu / (L**2 * mean)


def convex_bound(problem: Problem, gamma, ts, mu, L, batch=1.0):
    r"""$D^2(0)\,e^{-a(\gamma)t}$ on the times `ts`: the strongly convex upper bound on the
    distance $\|X_t - X^*\|^2$ (SPEC §1), with $D^2(0) = \sum_j\omega_j(V_j)_{x-x^*}$ from the
    problem's initial moments."""
    V0 = problem.V0
    u0 = V0[:, 0, 0] - 2.0 * V0[:, 0, 1] + V0[:, 1, 1]
    d0 = jnp.sum(problem.spectrum.weights * u0)
    return d0 * jnp.exp(-convex_rate(problem, gamma, mu, L, batch) * jnp.asarray(ts))
