r"""The abstract learning-rate schedule $\gamma(t)$ (SPEC §4).

$t$ is the library's continuous time: $t = k/d$ for streaming SGD, epochs for finite data.
Parameters are float array leaves, so `jax.vmap` over them and `jax.grad` with respect to them
go through every solver that takes a schedule.
"""

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np


class AbstractSchedule(eqx.Module):
    """A learning rate $\\gamma(t)$: a branch-free JAX function of scalar time."""

    @abc.abstractmethod
    def __call__(self, t):
        """$\\gamma(t)$."""

    def on_grid(self, ts):
        """$\\gamma$ at each time of `ts`."""
        return jax.vmap(self)(jnp.asarray(ts, dtype=float))


def parameter(value, name: str, *, positive: bool = False, nonnegative: bool = False):
    """Convert a schedule parameter to a float array and, when it is concrete, check it."""
    x = jnp.asarray(value)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(float)
    if isinstance(x, jax.core.Tracer):
        return x
    v = np.asarray(x)
    if not np.all(np.isfinite(v)):
        raise ValueError(f"schedule parameter {name} must be finite, got {v}")
    if positive and not np.all(v > 0):
        raise ValueError(f"schedule parameter {name} must be > 0, got {v}")
    if nonnegative and not np.all(v >= 0):
        raise ValueError(f"schedule parameter {name} must be >= 0, got {v}")
    return x


def concrete(*xs) -> bool:
    return not any(isinstance(x, jax.core.Tracer) for x in xs)
