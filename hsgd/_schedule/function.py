from collections.abc import Callable

import equinox as eqx
import jax.numpy as jnp

from .base import AbstractSchedule
from .constant import Constant


class FunctionSchedule(AbstractSchedule):
    r"""Any plain function $t \mapsto \gamma(t)$ (branch-free JAX).

    An optax schedule counts SGD steps $k$; for streaming SGD $t = k/d$, so wrap it as
    `FunctionSchedule(lambda t: optax_schedule(t * d))`. Its parameters are not leaves: to
    differentiate or vmap over them, use one of the schedule modules instead."""

    fn: Callable = eqx.field(static=True)

    def __call__(self, t):
        return jnp.asarray(self.fn(t), dtype=jnp.result_type(float))


def as_schedule(x) -> AbstractSchedule:
    """A schedule from a number (→ [`Constant`][]), a schedule (itself) or a callable."""
    if isinstance(x, AbstractSchedule):
        return x
    if isinstance(x, int | float) or (hasattr(x, "ndim") and getattr(x, "ndim") == 0):
        return Constant(x)
    if callable(x):
        return FunctionSchedule(x)
    raise TypeError(f"a schedule must be a number, an AbstractSchedule or a callable t -> gamma; "
                    f"got {type(x).__name__}")
