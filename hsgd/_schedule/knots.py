import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .base import AbstractSchedule, concrete, parameter
from .tunable import AbstractTunableSchedule, inverse_softplus, knot_times


def _check_knots(times, raw, name):
    if times.ndim != 1 or times.size < 2:
        raise ValueError(f"schedule parameter times must be 1-D with at least two knots, got "
                         f"shape {times.shape}")
    if raw.shape != times.shape:
        raise ValueError(f"schedule parameters times and {name} must have the same length, got "
                         f"{raw.shape} for times of shape {times.shape}")
    if concrete(times) and np.any(np.diff(np.asarray(times)) <= 0):
        raise ValueError(f"schedule parameter times must be strictly increasing, got "
                         f"{np.asarray(times)}")


class TunableKnots(AbstractTunableSchedule):
    r"""Piecewise-linear knots with positive values (SPEC §4), for tuning:

    $$\gamma(t) = \operatorname{interp}\big(t;\ (t_i, e^{\theta_i})\big),$$

    linear between the knots, constant outside $[t_1, t_n]$. The knot values $e^{\theta_i}$ are
    positive for every raw $\theta$; the knot times are fixed.

    **Arguments:**

    - `times`: knot times $t_1 < \dots < t_n$ ($n \ge 2$), e.g. from
      `TunableKnots.init(horizon, num_knots, spacing="log")`.
    - `values`: initial knot values $> 0$ (stored as $\theta_i = \log$ value).

    Example: `TunableKnots.init(20.0, 8, value=0.3)(5.0)` is `0.3`.
    """

    times: jnp.ndarray
    log_values: jnp.ndarray
    raw_fields = ("log_values",)

    def __init__(self, times, values):
        self.times = parameter(times, "times")
        values = parameter(values, "values", positive=True)
        _check_knots(self.times, values, "values")
        self.log_values = jnp.log(values)

    @classmethod
    def init(cls, horizon, num_knots: int = 12, spacing: str = "log", value=1.0):
        """Knots on a `"log"` or `"linear"` grid of $[0, T]$, all at `value`."""
        times = knot_times(horizon, num_knots, spacing)
        return cls(times, np.full(times.shape, float(value)))

    def values(self):
        return jnp.exp(self.log_values)

    def __call__(self, t):
        return jnp.interp(t, self.times, jnp.exp(self.log_values))


class TunableSoftplus(AbstractTunableSchedule):
    r"""A free-form positive schedule: softplus of a piecewise-linear curve (SPEC §4),

    $$\gamma(t) = \log\big(1 + e^{c(t)}\big),\qquad c(t) = \operatorname{interp}\big(t;\ (t_i,
    \theta_i)\big).$$

    Unlike [`TunableKnots`][] the curve is interpolated *before* the positive map, so it can
    bend smoothly between knots; every raw $\theta$ gives $\gamma > 0$.

    **Arguments:**

    - `times`: knot times $t_1 < \dots < t_n$ ($n \ge 2$).
    - `values`: initial $\gamma$ at the knots, $> 0$ (stored as $\theta_i =
      \operatorname{softplus}^{-1}$ of the value).

    Example: `TunableSoftplus.init(20.0, 8, value=0.3)(5.0)` is `0.3` (to rounding).
    """

    times: jnp.ndarray
    raw_values: jnp.ndarray
    raw_fields = ("raw_values",)

    def __init__(self, times, values):
        self.times = parameter(times, "times")
        values = parameter(values, "values", positive=True)
        _check_knots(self.times, values, "values")
        self.raw_values = inverse_softplus(values)

    @classmethod
    def init(cls, horizon, num_knots: int = 12, spacing: str = "log", value=1.0):
        """Knots on a `"log"` or `"linear"` grid of $[0, T]$, all at `value`."""
        times = knot_times(horizon, num_knots, spacing)
        return cls(times, np.full(times.shape, float(value)))

    def __call__(self, t):
        return jax.nn.softplus(jnp.interp(t, self.times, self.raw_values))


class TunableModulated(AbstractTunableSchedule):
    r"""A given schedule times a tunable positive factor on knots (SPEC §4):

    $$c(t) = c_0(t)\,\operatorname{interp}\big(t;\ (t_i, e^{\theta_i})\big),$$

    the factor linear between the knots and constant outside $[t_1, t_n]$. Only the $\theta_i$
    are tuned; the base $c_0$ keeps its shape (e.g. DANA-decaying's
    $\bar\gamma_3(t)\propto(1 + dt)^{-1/(2\alpha)}$ or $\delta(t)\propto d/(1 + dt)$, whose
    early decay a knot grid could not follow), so tuning starts from $c_0$ itself ($\theta = 0$)
    and corrects it smoothly. What [`tune`][] makes of the optimizer's own schedules with
    `family="modulated"` and `coefficients=`.

    **Arguments:**

    - `base`: the schedule $c_0$ (an [`AbstractSchedule`][]; its leaves are not tuned).
    - `times`: knot times $t_1 < \dots < t_n$ ($n\ge2$); `TunableModulated.init(base, horizon)`
      puts them on the log grid of the knot families.
    - `factors`: initial factors $> 0$ at the knots (default 1: $c = c_0$).

    Example: `TunableModulated(hsgd.Constant(0.5), [0.0, 1.0, 10.0])(3.0)` is `0.5`.
    """

    base: AbstractSchedule
    times: jnp.ndarray
    log_factors: jnp.ndarray
    raw_fields = ("log_factors",)

    def __init__(self, base, times, factors=None):
        if not isinstance(base, AbstractSchedule):
            raise TypeError(f"base must be an AbstractSchedule, got {type(base).__name__}")
        self.base = base
        self.times = parameter(times, "times")
        if factors is None:
            factors = np.ones(np.shape(self.times))
        factors = parameter(factors, "factors", positive=True)
        _check_knots(self.times, factors, "factors")
        self.log_factors = jnp.log(factors).astype(self.times.dtype)

    @classmethod
    def init(cls, base, horizon, num_knots: int = 12, spacing: str = "log"):
        """`base` times a factor 1 on a `"log"` or `"linear"` knot grid of $[0, T]$."""
        return cls(base, knot_times(horizon, num_knots, spacing))

    def trainable(self):
        spec = jax.tree_util.tree_map(lambda _: False, self)
        return eqx.tree_at(lambda s: s.log_factors, spec, replace=True)

    def __call__(self, t):
        return self.base(t) * jnp.interp(t, self.times, jnp.exp(self.log_factors))
