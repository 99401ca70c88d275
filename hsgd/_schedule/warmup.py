import equinox as eqx
import jax.numpy as jnp
import numpy as np

from .base import AbstractSchedule, concrete, parameter


class WarmupDecay(AbstractSchedule):
    r"""Linear warm-up from `initial` to `peak` on $[0, t_w]$, then decay to `final` at the
    horizon $T$ (constant after):

    - `"cosine"`: $\gamma_f + \tfrac12(\gamma_p - \gamma_f)(1 + \cos\pi u)$,
    - `"linear"`: $\gamma_p + (\gamma_f - \gamma_p) u$,
    - `"exponential"`: $\gamma_p (\gamma_f/\gamma_p)^u$ (needs $\gamma_f > 0$),

    with $u = (t - t_w)/(T - t_w) \in [0, 1]$.

    **Arguments:** `peak` $> 0$, `warmup` $t_w \ge 0$, `horizon` $T > t_w$, `final` $\ge 0$,
    `decay` (static string), `initial` $\ge 0$ (default 0).
    Example: `WarmupDecay(1.0, 2.0, 20.0, final=0.01, decay="exponential")`."""

    peak: jnp.ndarray
    warmup: jnp.ndarray
    horizon: jnp.ndarray
    final: jnp.ndarray
    initial: jnp.ndarray
    decay: str = eqx.field(static=True)

    def __init__(self, peak, warmup, horizon, final=0.0, decay: str = "cosine", initial=0.0):
        if decay not in ("cosine", "linear", "exponential"):
            raise ValueError(f"decay must be 'cosine', 'linear' or 'exponential', got {decay!r}")
        self.decay = decay
        self.peak = parameter(peak, "peak", positive=True)
        self.warmup = parameter(warmup, "warmup", nonnegative=True)
        self.horizon = parameter(horizon, "horizon", positive=True)
        self.final = parameter(final, "final", positive=decay == "exponential",
                               nonnegative=True)
        self.initial = parameter(initial, "initial", nonnegative=True)
        if concrete(self.warmup, self.horizon) and float(self.warmup) >= float(self.horizon):
            raise ValueError(f"schedule parameter warmup ({float(self.warmup)}) must be < "
                             f"horizon ({float(self.horizon)})")
        if concrete(self.peak, self.final) and float(self.final) > float(self.peak):
            raise ValueError(f"schedule parameter final ({np.asarray(self.final)}) must not "
                             f"exceed peak ({np.asarray(self.peak)})")

    def __call__(self, t):
        ramp = self.initial + (self.peak - self.initial) * t / jnp.maximum(self.warmup, 1e-30)
        u = jnp.clip((t - self.warmup) / (self.horizon - self.warmup), 0.0, 1.0)
        if self.decay == "cosine":
            dec = self.final + 0.5 * (self.peak - self.final) * (1 + jnp.cos(jnp.pi * u))
        elif self.decay == "linear":
            dec = self.peak + (self.final - self.peak) * u
        else:
            dec = self.peak * (self.final / self.peak) ** u
        return jnp.where(t < self.warmup, ramp, dec)
