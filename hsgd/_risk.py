r"""The population risk of an iterate, independently of the ODE's quadrature rule (SPEC §1).

An iterate $X$ with $W = [X \mid X^*]$ has $B = W^\top K W$ (computed exactly from the
iterate) and population risk $h(B) = \mathbb{E}_{r\sim N(0,B),\,\varepsilon}\,f(r_x; r_*,
\varepsilon)$. The SGD simulator and homogenized SGD record $h(B)$ by

1. the loss's [`AbstractLoss.exact_risk`][] when it has one (least squares
   $\tfrac12(B_{11} - 2B_{12} + B_{22} + \sigma^2)$, phase retrieval by Wick's theorem,
   logistic on a fine trapezoid rule): standard error 0;
2. otherwise Monte Carlo on fresh samples (never the loss's `rule()`): $N/2$ antithetic pairs
   $r = \pm L z$, $z \sim N(0, I_p)$, $LL^\top = B$ (eigen-factor, exact for singular $B$),
   each with its own fresh noise $\varepsilon$ drawn by the loss's noise model,

   $$\hat h = \frac2N\sum_{i=1}^{N/2} g_i,\quad g_i = \tfrac12\big(f(Lz_i;\varepsilon_i) +
   f(-Lz_i;\varepsilon_i')\big),\qquad \widehat{\rm SE} = \frac{\operatorname{sd}(g)}
   {\sqrt{N/2}},$$

   reported beside the estimate (`risk_se`).

So a quadrature error of the ODE's rule cannot hide in an ODE-vs-SGD comparison: the two sides
never share it.
"""

import math

import jax
import jax.numpy as jnp

from ._loss import AbstractLoss

# Monte-Carlo samples per recorded risk (2^15 antithetic pairs): relative SE ~ sd(f)/mean(f)/256.
DEFAULT_RISK_SAMPLES = 2**16


def risk_estimate(loss: AbstractLoss, B, key, num_samples: int = DEFAULT_RISK_SAMPLES):
    r"""$(\hat h(B), \widehat{\rm SE})$: the loss's exact risk with SE 0 when it has one, else
    the antithetic Monte-Carlo estimate of the module docstring with `num_samples` samples
    (keyed by `key`). Traceable; `vmap` over `B` and `key`."""
    exact = loss.exact_risk(B)
    if exact is not None:
        return exact, jnp.zeros((), B.dtype)
    return monte_carlo_risk(loss, B, key, num_samples)


def monte_carlo_risk(loss: AbstractLoss, B, key, num_samples: int = DEFAULT_RISK_SAMPLES):
    r"""The antithetic Monte-Carlo estimate of $h(B)$ and its standard error (module
    docstring); `num_samples` is rounded up to an even number $\ge 4$."""
    pairs = max(2, math.ceil(int(num_samples) / 2))
    B = 0.5 * (B + B.T)
    evals, evecs = jnp.linalg.eigh(B)
    L = evecs * jnp.sqrt(jnp.maximum(evals, 0.0))
    k_z, k_plus, k_minus = jax.random.split(key, 3)
    z = jax.random.normal(k_z, (pairs, loss.p), B.dtype) @ L.T

    def values(r, k):
        x, x_star = r[:, :loss.m], r[:, loss.m:]
        eps = jax.vmap(loss.noise.sample)(jax.random.split(k, pairs), x_star)
        return jax.vmap(loss.f)(x, x_star, eps)

    g = 0.5 * (values(z, k_plus) + values(-z, k_minus))
    return jnp.mean(g), jnp.std(g, ddof=1) / jnp.sqrt(jnp.asarray(pairs, B.dtype))


def observe(problem, X):
    r"""$B = W^\top K W$ and $\|X - X^*\|^2$ (NaN when $m \ne m^*$) of one iterate $X$, exact
    — what SGD and homogenized-SGD paths record (their risk comes from $B$ by
    [`risk_estimate`][])."""
    W = jnp.concatenate([X, problem.X_star], axis=1)
    B = (W.T * problem.spectrum.eigenvalues.astype(X.dtype)) @ W
    dist = (jnp.sum((X - problem.X_star) ** 2) if problem.loss.m == problem.loss.m_star
            else jnp.full((), jnp.nan, X.dtype))
    return B, dist


def risks_of(loss, B, keys, num_samples: int):
    r"""`risk_estimate` over leading axes: `B` $(\dots, p, p)$ and one key per matrix (`keys`
    of shape `B.shape[:-2]`); returns (risk, SE), each of shape `B.shape[:-2]`."""
    flat_B = B.reshape((-1, *B.shape[-2:]))
    flat_k = keys.reshape((flat_B.shape[0], *keys.shape[B.ndim - 2:]))
    risk, se = jax.vmap(lambda b, k: risk_estimate(loss, b, k, num_samples))(flat_B, flat_k)
    return risk.reshape(B.shape[:-2]), se.reshape(B.shape[:-2])
