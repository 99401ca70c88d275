r"""Schedules for tuning (SPEC §4): unconstrained raw parameters mapped to positive stepsizes.

Every tunable schedule stores only raw, unconstrained float leaves (listed in `raw_fields`) and
maps them to $\gamma(t) > 0$ with `exp`, `softplus` or a sigmoid, so an optimiser (optax) can move
the raw leaves anywhere without producing a negative or NaN stepsize. Fixed structure (knot
times, the horizon) is held in other array fields, which [`tune`][] never changes.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .base import AbstractSchedule, parameter


class AbstractTunableSchedule(AbstractSchedule):
    r"""A schedule whose fields named in `raw_fields` are unconstrained raw parameters.

    [`tune`][] optimises exactly these leaves (`trainable()` is the filter spec); every value
    of them gives a finite, positive $\gamma(t)$.
    """

    raw_fields: eqx.AbstractClassVar[tuple[str, ...]]

    def trainable(self):
        """The `eqx.partition` filter spec: True on the raw leaves, False elsewhere."""
        spec = jax.tree_util.tree_map(lambda _: False, self)
        return eqx.tree_at(lambda s: [getattr(s, n) for n in self.raw_fields], spec,
                           replace=[True] * len(self.raw_fields))

    def num_parameters(self) -> int:
        """The number of raw scalars that are tuned."""
        return int(sum(np.size(getattr(self, n)) for n in self.raw_fields))


def inverse_softplus(y):
    r"""$x$ with $\log(1 + e^x) = y$ for $y > 0$ (stable for large and small $y$)."""
    y = jnp.asarray(y)
    return y + jnp.log(-jnp.expm1(-y))


def logit(p):
    p = jnp.asarray(p)
    return jnp.log(p) - jnp.log1p(-p)


def _positive(value, name):
    return parameter(value, name, positive=True)


class TunableConstant(AbstractTunableSchedule):
    r"""A constant learning rate with a raw parameter (SPEC §4):

    $$\gamma(t) = e^{\theta}.$$

    **Arguments:**

    - `value`: the initial $\gamma > 0$ (stored as $\theta = \log\gamma$).

    Example: `TunableConstant(0.5)(3.0)` is `0.5`.
    """

    log_value: jnp.ndarray
    raw_fields = ("log_value",)

    def __init__(self, value):
        self.log_value = jnp.log(_positive(value, "value"))

    def __call__(self, t):
        return jnp.exp(self.log_value) * jnp.ones_like(jnp.asarray(t, self.log_value.dtype))


def knot_times(horizon, num_knots: int, spacing: str = "log"):
    r"""Knot times on $[0, T]$: `"linear"` (equispaced) or `"log"` ($0$ and a geometric grid
    from $T/100$ to $T$, which resolves the fast early phase of power-law problems)."""
    horizon = float(horizon)
    if not np.isfinite(horizon) or horizon <= 0:
        raise ValueError(f"horizon must be > 0, got {horizon}")
    num_knots = int(num_knots)
    if num_knots < 2:
        raise ValueError(f"num_knots must be >= 2, got {num_knots}")
    if spacing == "linear":
        return np.linspace(0.0, horizon, num_knots)
    if spacing == "log":
        return np.concatenate([[0.0], np.geomspace(horizon / 100, horizon, num_knots - 1)])
    raise ValueError(f"spacing must be 'linear' or 'log', got {spacing!r}")
