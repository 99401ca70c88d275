import jax.numpy as jnp

from .base import AbstractSchedule, check_not_above_peak, parameter


class Cosine(AbstractSchedule):
    r"""Cosine annealing from `peak` to `final` over $[0, T]$, constant after (SPEC §4):

    $$\gamma(t) = \gamma_f + \tfrac12(\gamma_p - \gamma_f)\big(1 + \cos(\pi\min(t, T)/T)\big),$$

    with $t$ clipped to $[0, T]$.

    **Arguments:**

    - `peak`: $\gamma_p > 0$, the value at $t = 0$.
    - `horizon`: $T > 0$.
    - `final`: $\gamma_f \in [0, \gamma_p]$, the value from $t = T$ on (default 0).

    Example: `Cosine(1.0, 20.0)(10.0)` is `0.5`.
    """

    peak: jnp.ndarray
    horizon: jnp.ndarray
    final: jnp.ndarray

    def __init__(self, peak, horizon, final=0.0):
        self.peak = parameter(peak, "peak", positive=True)
        self.horizon = parameter(horizon, "horizon", positive=True)
        self.final = parameter(final, "final", nonnegative=True)
        check_not_above_peak(self.final, self.peak)

    def __call__(self, t):
        u = jnp.clip(t / self.horizon, 0.0, 1.0)
        return self.final + 0.5 * (self.peak - self.final) * (1 + jnp.cos(jnp.pi * u))
