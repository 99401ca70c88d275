import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .base import concrete, parameter
from .tunable import AbstractTunableSchedule, logit

_SHAPES = ("cosine", "exponential", "polynomial")


def _fraction(value, name):
    v = parameter(value, name)
    if concrete(v) and (np.any(np.asarray(v) <= 0) or np.any(np.asarray(v) >= 1)):
        raise ValueError(f"schedule parameter {name} must be in (0, 1), got {np.asarray(v)}")
    return v


class TunableWarmupDecay(AbstractTunableSchedule):
    r"""Warm-up then decay with tunable peak, warm-up length, final level and shape (SPEC §4).

    With raw parameters mapped to $\gamma_p = e^{\theta_p}$ (peak), $t_w = T\sigma(\theta_w)$
    (warm-up length), $\gamma_0 = \gamma_p\sigma(\theta_0)$ (start), $\gamma_f =
    \gamma_p\sigma(\theta_f)$ (final) and $s = e^{\theta_s}$ (shape), $\sigma$ the logistic
    function:

    $$\gamma(t) = \gamma_0 + (\gamma_p - \gamma_0)\,t/t_w \quad (t < t_w),$$

    and for $t \ge t_w$, with $u = \min\big((t - t_w)/(T - t_w), 1\big)$:

    - `"cosine"`: $\gamma_f + (\gamma_p - \gamma_f)\,\tfrac12\big(1 + \cos(\pi u^s)\big)$,
    - `"exponential"`: $\gamma_p\,(\gamma_f/\gamma_p)^{u^s}$,
    - `"polynomial"`: $\gamma_f + (\gamma_p - \gamma_f)(1 - u)^s$.

    Every raw value gives $0 < \gamma_f < \gamma_p$, $\gamma_0 > 0$ and $0 < t_w < T$.

    **Arguments:**

    - `horizon`: $T > 0$ (fixed).
    - `peak`: initial $\gamma_p > 0$; `warmup`: initial $t_w/T \in (0, 1)$ (default 0.02);
      `start`: initial $\gamma_0/\gamma_p \in (0, 1)$ (default 0.1); `final`: initial
      $\gamma_f/\gamma_p \in (0, 1)$ (default 0.05); `shape`: initial $s > 0$ (default 1).
    - `decay`: `"cosine"`, `"exponential"` or `"polynomial"` (static).

    Example: `TunableWarmupDecay(20.0, 1.0, decay="polynomial")(20.0)` is `0.05`.
    """

    horizon: jnp.ndarray
    raw_peak: jnp.ndarray
    raw_warmup: jnp.ndarray
    raw_start: jnp.ndarray
    raw_final: jnp.ndarray
    raw_shape: jnp.ndarray
    decay: str = eqx.field(static=True)
    raw_fields = ("raw_peak", "raw_warmup", "raw_start", "raw_final", "raw_shape")

    def __init__(self, horizon, peak, *, warmup=0.02, start=0.1, final=0.05, shape=1.0,
                 decay: str = "cosine"):
        if decay not in _SHAPES:
            raise ValueError(f"schedule parameter decay must be one of {_SHAPES}, got {decay!r}")
        self.decay = decay
        self.horizon = parameter(horizon, "horizon", positive=True)
        self.raw_peak = jnp.log(parameter(peak, "peak", positive=True))
        self.raw_warmup = logit(_fraction(warmup, "warmup"))
        self.raw_start = logit(_fraction(start, "start"))
        self.raw_final = logit(_fraction(final, "final"))
        self.raw_shape = jnp.log(parameter(shape, "shape", positive=True))

    def parameters(self) -> dict:
        """The constrained values: peak, warmup (a time), start, final (stepsizes), shape."""
        peak = jnp.exp(self.raw_peak)
        return {"peak": peak, "warmup": self.horizon * jax.nn.sigmoid(self.raw_warmup),
                "start": peak * jax.nn.sigmoid(self.raw_start),
                "final": peak * jax.nn.sigmoid(self.raw_final), "shape": jnp.exp(self.raw_shape)}

    def __call__(self, t):
        p = self.parameters()
        peak, tw, start, final, s = p["peak"], p["warmup"], p["start"], p["final"], p["shape"]
        ramp = start + (peak - start) * jnp.clip(t / tw, 0.0, 1.0)  # tw > 0 always
        u = jnp.clip((t - tw) / (self.horizon - tw), 0.0, 1.0)
        # u**s has an infinite s-derivative factor log(u) at u = 0: keep u away from 0 (the
        # change to gamma is below 1e-12 relative) so gradients stay finite.
        us = jnp.maximum(u, 1e-12) ** s
        if self.decay == "cosine":  # static string: resolved at trace time
            dec = final + (peak - final) * 0.5 * (1 + jnp.cos(jnp.pi * us))
        elif self.decay == "exponential":
            dec = peak * (final / peak) ** us
        else:
            dec = final + (peak - final) * jnp.maximum(1 - u, 1e-12) ** s
        return jnp.where(t < tw, ramp, dec)
