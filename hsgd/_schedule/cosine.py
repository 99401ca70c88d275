import jax.numpy as jnp
import numpy as np

from .base import AbstractSchedule, concrete, parameter


class Cosine(AbstractSchedule):
    r"""$\gamma(t) = \gamma_f + \tfrac12(\gamma_p - \gamma_f)\big(1 + \cos(\pi\min(t, T)/T)\big)$.

    **Arguments:** `peak` $\gamma_p > 0$, `horizon` $T > 0$, `final` $\gamma_f \ge 0$
    (default 0). Example: `Cosine(1.0, 20.0)`."""

    peak: jnp.ndarray
    horizon: jnp.ndarray
    final: jnp.ndarray

    def __init__(self, peak, horizon, final=0.0):
        self.peak = parameter(peak, "peak", positive=True)
        self.horizon = parameter(horizon, "horizon", positive=True)
        self.final = parameter(final, "final", nonnegative=True)
        if concrete(self.peak, self.final) and float(self.final) > float(self.peak):
            raise ValueError(f"schedule parameter final ({np.asarray(self.final)}) must not "
                             f"exceed peak ({np.asarray(self.peak)})")

    def __call__(self, t):
        u = jnp.clip(t / self.horizon, 0.0, 1.0)
        return self.final + 0.5 * (self.peak - self.final) * (1 + jnp.cos(jnp.pi * u))
