"""Plain SGD written independently of hsgd, for the finite-d and PLRF checks: `lax.scan` over
iterations with fresh Gaussian samples every step and the exact population risk of every
iterate (no moment, no ODE, no eigen-decomposition shared with the predictions)."""

import jax
import jax.numpy as jnp
import numpy as np


def sgd_risk_paths(lam, x_star, sigma, gamma, batch, num_iterations, runs, key):
    r"""`runs` independent SGD runs $x \leftarrow x - (\gamma/(d\beta))\sum_b a_b(a_b^\top x -
    y_b)$, $a_b\sim N(0, \operatorname{diag}\lambda)$, $y_b = a_b^\top x^* + \sigma\xi_b$, from
    $x_0 = 0$: the exact population risk at every iteration $k = 0..K$, shape (runs, K + 1)."""
    lam = jnp.asarray(lam)
    d = lam.shape[0]
    sq = jnp.sqrt(lam)

    def one(key):
        def body(e, key):
            ka, ke = jax.random.split(key)
            a = jax.random.normal(ka, (batch, d), lam.dtype) * sq
            eps = sigma * jax.random.normal(ke, (batch,), lam.dtype)
            e = e - (gamma / (d * batch)) * (a.T @ (a @ e - eps))
            return e, 0.5 * (jnp.sum(lam * e**2) + sigma**2)

        e0 = -jnp.asarray(x_star)
        _, risk = jax.lax.scan(body, e0, jax.random.split(key, num_iterations))
        return jnp.concatenate([(0.5 * (jnp.sum(lam * e0**2) + sigma**2))[None], risk])

    return np.asarray(jax.jit(jax.vmap(one))(jax.random.split(key, runs)))


def windows(ts, d):
    """SPEC §12's windows: iterations k in [td - w, td + w], w = max(50, 0.1 td)."""
    out = []
    for t in ts:
        k = int(round(t * d))
        w = max(50, int(round(0.1 * k)))
        out.append((k - w, k + w))
    return out


def plrf_loss_paths(W, alpha, beta, eta, batch, num_iterations, runs, key):
    r"""`runs` independent runs of one-pass SGD on power-law random features with the real data:
    $x = (j^{-\alpha}z_j)_{j\le v}$, $y = \langle x, b\rangle$ ($b_j = j^{-\beta}$), features
    $a = W^\top x$, $\theta \leftarrow \theta - \eta\frac1\beta\sum_b a_b(\langle a_b,
    \theta\rangle - y_b)$ from 0; the exact population loss
    $\tfrac12\|D^{1/2}(W\theta - b)\|^2$ at every iteration, shape (runs, K + 1)."""
    W = jnp.asarray(W)
    v, d = W.shape
    j = jnp.arange(1, v + 1, dtype=W.dtype)
    scale, b = j ** (-alpha), j ** (-beta)

    def loss(theta):
        return 0.5 * jnp.sum((scale * (W @ theta - b)) ** 2)

    def one(key):
        def body(theta, key):
            x = jax.random.normal(key, (batch, v), W.dtype) * scale
            a = x @ W
            theta = theta - (eta / batch) * (a.T @ (a @ theta - x @ b))
            return theta, loss(theta)

        theta0 = jnp.zeros((d,), W.dtype)
        _, path = jax.lax.scan(body, theta0, jax.random.split(key, num_iterations))
        return jnp.concatenate([loss(theta0)[None], path])

    return np.asarray(jax.jit(jax.vmap(one))(jax.random.split(key, runs)))
