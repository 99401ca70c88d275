import jax.numpy as jnp
import numpy as np

from .base import AbstractSchedule, concrete, parameter


class PiecewiseLinear(AbstractSchedule):
    r"""Linear interpolation through knots $(t_i, \gamma_i)$, constant outside $[t_1, t_n]$
    (SPEC §4):

    $$\gamma(t) = \gamma_i + (\gamma_{i+1} - \gamma_i)\frac{t - t_i}{t_{i+1} - t_i}
    \quad (t_i \le t \le t_{i+1}),$$

    $\gamma_1$ before $t_1$ and $\gamma_n$ after $t_n$. The knot values are differentiable leaves:
    this is the family to tune with `jax.grad`.

    **Arguments:**

    - `times`: knot times $t_1 < \dots < t_n$, 1-D, $n \ge 1$.
    - `values`: knot values $\gamma_i > 0$, same length as `times`.

    Example: `PiecewiseLinear([0.0, 1.0, 10.0], [0.1, 1.0, 0.1])(0.5)` is `0.55`.
    """

    times: jnp.ndarray
    values: jnp.ndarray

    def __init__(self, times, values):
        self.times = parameter(times, "times")
        self.values = parameter(values, "values", positive=True)
        if self.times.ndim != 1 or self.times.size < 1:
            raise ValueError(f"schedule parameter times must be 1-D with at least one knot, got "
                             f"shape {self.times.shape}")
        if self.values.shape != self.times.shape:
            raise ValueError(f"schedule parameters times and values must have the same length, "
                             f"got values of shape {self.values.shape} for times of shape "
                             f"{self.times.shape}")
        if concrete(self.times) and np.any(np.diff(np.asarray(self.times)) <= 0):
            raise ValueError(f"schedule parameter times must be strictly increasing, got "
                             f"{np.asarray(self.times)}")

    def __call__(self, t):
        return jnp.interp(t, self.times, self.values)
