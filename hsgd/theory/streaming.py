r"""Stability of one-pass SGD on least squares at finite $d$ (SPEC §8), constant $\gamma$.

Per iteration the error second moments obey $v_j \leftarrow \rho_jv_j +
(\gamma^2\lambda_j/(\beta d))\,2h$ with $\rho_j = (1 - \gamma\lambda_j/d)^2 +
\gamma^2\lambda_j^2/(\beta d^2)$: diagonal plus a positive rank-one term, so the expected risk
stays bounded iff both

$$\text{(i)}\ \ \frac{\gamma\lambda_{\max}}{d} < \frac{2\beta}{\beta + 1}\quad(\rho_j < 1),
\qquad \text{(ii)}\ \ \kappa(\gamma) = \frac{\gamma}{2\beta}\sum_j\frac{\omega_j\lambda_j}
{1 - (1 + 1/\beta)\gamma\lambda_j/(2d)} < 1,$$

and then $2h_\infty = \sigma^2/(1 - \kappa)$. As $d\to\infty$ with bounded $\lambda$,
$\kappa\to\gamma(\operatorname{tr}K/d)/(2\beta)$ and the threshold is
$\gamma_{\rm crit} = 2\beta/(\operatorname{tr}K/d)$ (SPEC §1). Branch-free JAX functions.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float

from .._problem import Problem


class FiniteDStability(NamedTuple):
    r"""SPEC §8's stability bound at one $(\gamma, \beta)$: `mode_rate`
    $\gamma\lambda_{\max}/d$ against `mode_limit` $2\beta/(\beta+1)$ (condition (i)),
    `kappa` $\kappa(\gamma)$ (condition (ii), $+\infty$ where (i) fails), `kappa_limit` its
    $d\to\infty$ value $\gamma(\operatorname{tr}K/d)/(2\beta)$, `stable` (both hold) and
    `limit_risk` $h_\infty = \sigma^2/(2(1-\kappa))$ ($+\infty$ when unstable)."""

    mode_rate: Float[Array, ""]
    mode_limit: Float[Array, ""]
    kappa: Float[Array, ""]
    kappa_limit: Float[Array, ""]
    stable: Bool[Array, ""]
    limit_risk: Float[Array, ""]


def _spectrum_and_d(problem: Problem, d):
    if not isinstance(problem, Problem):
        raise TypeError(f"expected a streaming hsgd.Problem, got {type(problem).__name__}")
    d = problem.d if d is None else d
    if d is None:
        raise ValueError("the finite-d bound needs d: pass a problem with an instance "
                         "(Problem.random, Problem.from_arrays, Problem.plrf) or d=")
    return problem.spectrum.eigenvalues, problem.spectrum.weights, d


def _kappa(lam, w, d, gamma, batch):
    x = (1 + 1 / batch) * gamma * lam / (2 * d)
    ok = jnp.all(x < 1)
    terms = w * lam / jnp.where(x < 1, 1 - x, 1.0)
    return jnp.where(ok, gamma / (2 * batch) * jnp.sum(terms), jnp.inf)


def finite_d_stability(problem: Problem, gamma, batch=1, *, d=None) -> FiniteDStability:
    r"""SPEC §8's necessary and sufficient mean-square stability conditions (i) and (ii) (see
    the module docstring) for least squares at a constant `gamma` ($\gamma$ in hsgd's
    convention: SGD step $\gamma/d$; for a per-iteration stepsize $\eta$, $\gamma = \eta d$)
    and mini-batch `batch` $\beta$.

    `d`: the dimension, default `problem.d` (the instance's). The limit risk uses the loss's
    noise variance $\sigma^2$.

    **Returns:** a [`FiniteDStability`][hsgd.theory.FiniteDStability].

    ```python
    prob = hsgd.Problem.random(hsgd.LeastSquares(0.5), lam, key)   # lam: d eigenvalues
    s = hsgd.theory.finite_d_stability(prob, 0.8 * prob.d / lam.max(), batch=4)
    s.stable, s.kappa, s.kappa_limit
    ```
    """
    lam, w, d = _spectrum_and_d(problem, d)
    dtype = lam.dtype
    gamma = jnp.asarray(gamma, dtype)
    batch = jnp.asarray(batch, dtype)
    rate = gamma * jnp.max(lam) / d
    limit = 2 * batch / (batch + 1)
    kappa = _kappa(lam, w, d, gamma, batch)
    stable = (rate < limit) & (kappa < 1)
    noise = problem.loss._finite_variance(dtype)
    risk = jnp.where(stable, 0.5 * noise / jnp.where(stable, 1 - kappa, 1.0), jnp.inf)
    return FiniteDStability(mode_rate=rate, mode_limit=limit, kappa=kappa,
                            kappa_limit=gamma * jnp.sum(w * lam) / (2 * batch),
                            stable=stable, limit_risk=risk)


def finite_d_gamma_max(problem: Problem, batch=1, *, d=None, iterations: int = 100):
    r"""The largest stable constant $\gamma$ at finite $d$ (SPEC §8): the smaller of
    condition (i)'s $2\beta d/((\beta + 1)\lambda_{\max})$ and the root of $\kappa(\gamma) = 1$
    (condition (ii); $\kappa$ increases with $\gamma$), found by bisection (`iterations`
    halvings, branch-free). It lies between the sufficient bound
    $2\beta d/(\operatorname{tr}K + (\beta + 1)\lambda_{\max})$ and the $d\to\infty$ threshold
    $2\beta/(\operatorname{tr}K/d)$."""
    lam, w, d = _spectrum_and_d(problem, d)
    dtype = lam.dtype
    batch = jnp.asarray(batch, dtype)
    hi = 2 * batch * d / ((batch + 1) * jnp.max(lam))  # condition (i)
    lo = jnp.zeros((), dtype)

    def body(_, bracket):
        lo, hi = bracket
        mid = 0.5 * (lo + hi)
        ok = _kappa(lam, w, d, mid, batch) < 1
        return jnp.where(ok, mid, lo), jnp.where(ok, hi, mid)

    lo, hi = jax.lax.fori_loop(0, iterations, body, (lo, hi))
    return lo
