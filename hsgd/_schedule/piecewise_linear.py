import jax.numpy as jnp
import numpy as np

from .base import AbstractSchedule, concrete, parameter


class PiecewiseLinear(AbstractSchedule):
    r"""Linear interpolation through knots $(t_i, \gamma_i)$, constant outside $[t_1, t_n]$.

    **Arguments:** `times` (strictly increasing), `values` ($> 0$), same length $\ge 1$.
    Example: `PiecewiseLinear([0.0, 1.0, 10.0], [0.1, 1.0, 0.05])`."""

    times: jnp.ndarray
    values: jnp.ndarray

    def __init__(self, times, values):
        self.times = parameter(times, "times")
        self.values = parameter(values, "values", positive=True)
        if self.times.ndim != 1 or self.times.shape != self.values.shape or self.times.size < 1:
            raise ValueError(f"times and values must be 1-D of the same length >= 1, got shapes "
                             f"{self.times.shape} and {self.values.shape}")
        if concrete(self.times) and np.any(np.diff(np.asarray(self.times)) <= 0):
            raise ValueError(f"times must be strictly increasing, got {np.asarray(self.times)}")

    def __call__(self, t):
        return jnp.interp(t, self.times, self.values)
