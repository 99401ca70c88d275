import equinox as eqx
import jax.numpy as jnp
import numpy as np

from .base import AbstractSchedule, check_not_above_peak, concrete, parameter

_DECAYS = ("cosine", "linear", "exponential")


class WarmupDecay(AbstractSchedule):
    r"""Linear warm-up from `initial` to `peak` on $[0, t_w]$, the peak held until $t_s$
    (`stable`, default $t_w$: no stable phase), then decay to `final` at the horizon $T$,
    constant after (SPEC §4) — with a stable phase, the warm-up–stable–decay (WSD) schedule:

    $$\gamma(t) = \gamma_0 + (\gamma_p - \gamma_0)\,t/t_w \quad (0 \le t < t_w),$$

    and for $t \ge t_w$, with $u = \min\big(\max(t - t_s, 0)/(T - t_s), 1\big)$:

    - `"cosine"`: $\gamma_f + \tfrac12(\gamma_p - \gamma_f)(1 + \cos\pi u)$,
    - `"linear"`: $\gamma_p + (\gamma_f - \gamma_p)\,u$,
    - `"exponential"`: $\gamma_p (\gamma_f/\gamma_p)^u$, a geometric interpolation (needs
      $\gamma_f > 0$).

    **Arguments:**

    - `peak`: $\gamma_p > 0$.
    - `warmup`: $t_w \ge 0$ (0: no warm-up).
    - `horizon`: $T > t_w$.
    - `final`: $\gamma_f \in [0, \gamma_p]$ (default 0; must be $> 0$ for `"exponential"`).
    - `decay`: `"cosine"` (default), `"linear"` or `"exponential"`; a static field.
    - `initial`: $\gamma_0 \ge 0$, the value at $t = 0$ (default 0).
    - `stable`: $t_s\in[t_w, T)$, where the decay starts (default $t_w$). WSD with a
      tenth-of-the-budget linear cool-down: `WarmupDecay(peak, t_w, T, decay="linear",
      stable=0.9 * T)`.

    Example: `WarmupDecay(1.0, 2.0, 20.0, final=0.01, decay="exponential")(1.0)` is `0.5`.
    """

    peak: jnp.ndarray
    warmup: jnp.ndarray
    horizon: jnp.ndarray
    final: jnp.ndarray
    initial: jnp.ndarray
    stable: jnp.ndarray
    decay: str = eqx.field(static=True)

    def __init__(self, peak, warmup, horizon, final=0.0, decay: str = "cosine", initial=0.0,
                 stable=None):
        if decay not in _DECAYS:
            raise ValueError(f"schedule parameter decay must be one of {_DECAYS}, got {decay!r}")
        self.decay = decay
        self.peak = parameter(peak, "peak", positive=True)
        self.warmup = parameter(warmup, "warmup", nonnegative=True)
        self.horizon = parameter(horizon, "horizon", positive=True)
        self.final = parameter(final, "final", positive=decay == "exponential",
                               nonnegative=True)
        self.initial = parameter(initial, "initial", nonnegative=True)
        if concrete(self.warmup, self.horizon) and np.any(
                np.asarray(self.warmup) >= np.asarray(self.horizon)):
            raise ValueError(f"schedule parameter warmup must be < horizon, got warmup = "
                             f"{np.asarray(self.warmup)} >= horizon = {np.asarray(self.horizon)}")
        check_not_above_peak(self.final, self.peak)
        self.stable = self.warmup if stable is None else parameter(stable, "stable",
                                                                   nonnegative=True)
        if stable is not None and concrete(self.stable, self.warmup, self.horizon) and (
                np.any(np.asarray(self.stable) < np.asarray(self.warmup))
                or np.any(np.asarray(self.stable) >= np.asarray(self.horizon))):
            raise ValueError(f"schedule parameter stable must be in [warmup, horizon), got "
                             f"stable = {np.asarray(self.stable)} (warmup = "
                             f"{np.asarray(self.warmup)}, horizon = {np.asarray(self.horizon)})")

    def __call__(self, t):
        # Safe division: with warmup = 0 the ramp is never selected for t >= 0, and the `where`
        # keeps its gradient finite.
        has_warmup = self.warmup > 0
        ramp_u = jnp.clip(t / jnp.where(has_warmup, self.warmup, 1.0), 0.0, 1.0)
        ramp = self.initial + (self.peak - self.initial) * ramp_u
        u = jnp.clip((t - self.stable) / (self.horizon - self.stable), 0.0, 1.0)
        # `decay` is a static string: this Python branch is resolved at trace time.
        if self.decay == "cosine":
            dec = self.final + 0.5 * (self.peak - self.final) * (1 + jnp.cos(jnp.pi * u))
        elif self.decay == "linear":
            dec = self.peak + (self.final - self.peak) * u
        else:
            dec = self.peak * (self.final / self.peak) ** u
        return jnp.where(t < self.warmup, ramp, dec)
