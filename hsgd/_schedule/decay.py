import jax.numpy as jnp
import numpy as np

from .base import AbstractSchedule, concrete, parameter


class ExponentialDecay(AbstractSchedule):
    r"""Exponential decay (SPEC §4):

    $$\gamma(t) = \gamma_0\, e^{-\rho t}.$$

    **Arguments:**

    - `initial`: $\gamma_0 > 0$.
    - `rate`: $\rho \ge 0$.

    Example: `ExponentialDecay(1.0, 0.1)(10.0)` is `exp(-1)`.
    """

    initial: jnp.ndarray
    rate: jnp.ndarray

    def __init__(self, initial, rate):
        self.initial = parameter(initial, "initial", positive=True)
        self.rate = parameter(rate, "rate", nonnegative=True)

    def __call__(self, t):
        return self.initial * jnp.exp(-self.rate * t)


class StepDecay(AbstractSchedule):
    r"""Piecewise-constant decay by a factor every `interval` (SPEC §4):

    $$\gamma(t) = \gamma_0\, f^{\lfloor t/\tau\rfloor}$$

    for $t \ge 0$ (and $\gamma_0$ for $t < 0$).

    **Arguments:**

    - `initial`: $\gamma_0 > 0$.
    - `factor`: $f \in (0, 1]$.
    - `interval`: $\tau > 0$.

    Example: `StepDecay(1.0, 0.5, 5.0)(12.0)` is `0.25` (halved every 5 time units).
    """

    initial: jnp.ndarray
    factor: jnp.ndarray
    interval: jnp.ndarray

    def __init__(self, initial, factor, interval):
        self.initial = parameter(initial, "initial", positive=True)
        self.factor = parameter(factor, "factor", positive=True)
        self.interval = parameter(interval, "interval", positive=True)
        if concrete(self.factor) and np.any(np.asarray(self.factor) > 1):
            raise ValueError(f"schedule parameter factor must be in (0, 1], got "
                             f"{np.asarray(self.factor)}")

    def __call__(self, t):
        steps = jnp.maximum(jnp.floor(t / self.interval), 0.0)
        return self.initial * self.factor**steps
