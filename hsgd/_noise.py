r"""Label-noise models $\varepsilon$ for the per-sample loss $f(x; x^*, \varepsilon)$ (SPEC §1.1).

A noise model does two things: it integrates a function of $\varepsilon$ exactly or by
quadrature (used by the deterministic equivalent), and it samples $\varepsilon$ (used by the SGD
simulator). Teacher models draw the label from a law that depends on the teacher's
pre-activation $x^* = a^\top X^*$.
"""

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ._custom_types import PRNGKey


class AbstractNoise(eqx.Module):
    """A law for $\\varepsilon$ given the teacher pre-activation $x^*$."""

    @abc.abstractmethod
    def expect(self, fn, x_star: Float[Array, " m_star"]):
        r"""$\mathbb{E}_\varepsilon[\text{fn}(\varepsilon) \mid x^*]$ (any pytree output)."""

    @abc.abstractmethod
    def sample(self, key: PRNGKey, x_star: Float[Array, " m_star"]):
        r"""One draw of $\varepsilon$ given $x^*$."""


class NoNoise(AbstractNoise):
    """No noise: $\\varepsilon = 0$."""

    def expect(self, fn, x_star):
        return fn(jnp.zeros((), x_star.dtype))

    def sample(self, key, x_star):
        return jnp.zeros((), x_star.dtype)


class GaussianNoise(AbstractNoise):
    r"""Additive Gaussian noise $\varepsilon \sim N(0, \sigma^2)$, independent of $x^*$.

    Expectations use a 20-node Gauss–Hermite rule: exact for polynomials in $\varepsilon$ of
    degree $< 40$.

    **Arguments:**

    - `std`: $\sigma \ge 0$.
    """

    std: Float[Array, ""]

    def __init__(self, std=0.0):
        self.std = jnp.asarray(std, dtype=float)
        if not isinstance(self.std, jax.core.Tracer):
            s = float(self.std)
            if not np.isfinite(s) or s < 0:
                raise ValueError(f"noise std must be finite and >= 0, got {s}")

    def expect(self, fn, x_star):
        z, w = np.polynomial.hermite_e.hermegauss(20)
        z = jnp.asarray(z, x_star.dtype)
        w = jnp.asarray(w / w.sum(), x_star.dtype)
        values = jax.vmap(fn)(self.std.astype(x_star.dtype) * z)
        return jax.tree_util.tree_map(lambda v: jnp.tensordot(w, v, axes=1), values)

    def sample(self, key, x_star):
        return self.std.astype(x_star.dtype) * jax.random.normal(key, (), x_star.dtype)


class BernoulliTeacher(AbstractNoise):
    r"""Binary label $y \sim \text{Bernoulli}(\operatorname{sigmoid}(x^*_1))$; $\varepsilon = y$."""

    def expect(self, fn, x_star):
        prob = jax.nn.sigmoid(x_star[0])
        one = jnp.ones((), x_star.dtype)
        values = jax.vmap(fn)(jnp.stack([one, 0 * one]))
        w = jnp.stack([prob, 1 - prob])
        return jax.tree_util.tree_map(lambda v: jnp.tensordot(w, v, axes=1), values)

    def sample(self, key, x_star):
        return jax.random.bernoulli(key, jax.nn.sigmoid(x_star[0])).astype(x_star.dtype)


class CategoricalTeacher(AbstractNoise):
    r"""Class label $y \sim \text{Categorical}(\operatorname{softmax}(x^*))$; $\varepsilon$ is
    the one-hot vector $e_y \in \mathbb{R}^C$."""

    def expect(self, fn, x_star):
        probs = jax.nn.softmax(x_star)
        eye = jnp.eye(x_star.shape[0], dtype=x_star.dtype)
        values = jax.vmap(fn)(eye)
        return jax.tree_util.tree_map(lambda v: jnp.tensordot(probs, v, axes=1), values)

    def sample(self, key, x_star):
        y = jax.random.categorical(key, x_star)
        return jax.nn.one_hot(y, x_star.shape[0], dtype=x_star.dtype)
