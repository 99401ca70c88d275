from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .base import AbstractSchedule
from .constant import Constant


class FunctionSchedule(AbstractSchedule):
    r"""Any plain function $t \mapsto \gamma(t)$, written with branch-free JAX operations.

    $$\gamma(t) = \texttt{fn}(t).$$

    An optax schedule counts SGD steps $k$, while hsgd's time is $t = k/d$ for streaming SGD
    ($t = k/n$, epochs, for finite data with $n$ samples). Wrap it on the right time scale:
    `FunctionSchedule(lambda t: optax_schedule(t * d))`.

    `fn` is a static field: whatever it closes over is a constant, so to differentiate or
    `vmap` with respect to the schedule's parameters, use one of the schedule modules
    ([`PiecewiseLinear`][], [`WarmupDecay`][], ...) instead.

    **Arguments:**

    - `fn`: a callable taking a scalar time and returning a scalar learning rate.

    Example: `FunctionSchedule(lambda t: 1.0 / (1.0 + t))(1.0)` is `0.5`.
    """

    fn: Callable = eqx.field(static=True)

    def __check_init__(self):
        if not callable(self.fn):
            raise TypeError(f"FunctionSchedule needs a callable, got {type(self.fn).__name__}")

    def __call__(self, t):
        return jnp.asarray(self.fn(t), dtype=jnp.result_type(t, float))


def as_schedule(x) -> AbstractSchedule:
    """Convert `x` to a schedule.

    **Arguments:**

    - `x`: a number or 0-d array (→ [`Constant`][]), an [`AbstractSchedule`][] (returned as is)
      or a plain callable $t \\mapsto \\gamma$ (→ [`FunctionSchedule`][]).

    **Returns:** an [`AbstractSchedule`][]. Raises `TypeError` for anything else.

    Example: `as_schedule(0.5)` is `Constant(0.5)`.
    """
    if isinstance(x, AbstractSchedule):
        return x
    if isinstance(x, bool):
        raise TypeError("a schedule cannot be a bool")
    if isinstance(x, int | float | np.generic | np.ndarray | jax.Array) and np.ndim(x) == 0:
        return Constant(x)
    if callable(x):
        return FunctionSchedule(x)
    shape = f" of shape {np.shape(x)}" if isinstance(x, np.ndarray | jax.Array) else ""
    raise TypeError(f"a schedule must be a number, a 0-d array, an AbstractSchedule or a "
                    f"callable t -> gamma; got {type(x).__name__}{shape}")
