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

from .._dtype import as_float


class AbstractSchedule(eqx.Module):
    r"""A learning rate $\gamma(t)$: a branch-free JAX function of scalar time $t$.

    Subclasses implement `__call__(t)`; it must work for a scalar `t`, under `jax.vmap` over `t`,
    under `jax.jit` and under `jax.grad` with respect to the schedule's array parameters.
    """

    @abc.abstractmethod
    def __call__(self, t):
        r"""$\gamma(t)$ at a scalar time `t`."""

    def on_grid(self, ts):
        r"""$\gamma$ at each time of the 1-D array `ts` (`jax.vmap` of `__call__`)."""
        ts = jnp.asarray(ts)
        if not jnp.issubdtype(ts.dtype, jnp.floating):
            ts = jnp.asarray(ts, dtype=float)
        return jax.vmap(self)(ts)


def concrete(*xs) -> bool:
    """Whether none of `xs` is a JAX tracer (so Python checks on their values are possible)."""
    return not any(isinstance(x, jax.core.Tracer) for x in xs)


def parameter(value, name: str, *, positive: bool = False, nonnegative: bool = False):
    """A schedule parameter as a float array, checked when it is concrete.

    Floating inputs keep their dtype (a float32 parameter stays float32); anything else becomes
    JAX's default float. Inside `jit`/`vmap`/`grad` the value is a tracer and is not checked.
    """
    x = as_float(value)
    if not concrete(x):
        return x
    v = np.asarray(x)
    if not np.all(np.isfinite(v)):
        raise ValueError(f"schedule parameter {name} must be finite, got {v}")
    if positive and not np.all(v > 0):
        raise ValueError(f"schedule parameter {name} must be > 0, got {v}")
    if nonnegative and not np.all(v >= 0):
        raise ValueError(f"schedule parameter {name} must be >= 0, got {v}")
    return x


def check_not_above_peak(final, peak):
    """`final <= peak` for the decaying families, when both are concrete."""
    if concrete(final, peak) and np.any(np.asarray(final) > np.asarray(peak)):
        raise ValueError(f"schedule parameter final must not exceed peak, got final = "
                         f"{np.asarray(final)} > peak = {np.asarray(peak)}")
