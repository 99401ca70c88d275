import equinox as eqx
import jax.numpy as jnp

from .._noise import GaussianNoise
from .base import AbstractLoss, Moments


class LeastSquares(AbstractLoss):
    r"""Least squares with Gaussian label noise (SPEC §1.1):
    $f(x; x^*, \varepsilon) = \tfrac12 (x - x^* - \varepsilon)^2$, $\varepsilon \sim N(0,\sigma^2)$.

    Closed forms: $h = \tfrac12(B_{11} - 2B_{12} + B_{22} + \sigma^2)$, $J = [1, -1]$,
    $I = 2h$, $A = B_{11} - 2B_{12} + B_{22}$.

    **Arguments:**

    - `noise_std`: $\sigma \ge 0$.

    Example: `hsgd.LeastSquares(noise_std=0.5)`.
    """

    noise: GaussianNoise
    m: int = eqx.field(static=True, default=1)
    m_star: int = eqx.field(static=True, default=1)

    def __init__(self, noise_std=0.0):
        self.noise = GaussianNoise(noise_std)

    def f(self, x, x_star, eps):
        return 0.5 * (x[0] - x_star[0] - eps) ** 2

    def exact_risk(self, B):
        return 0.5 * (B[0, 0] - 2 * B[0, 1] + B[1, 1] + self.noise.std.astype(B.dtype) ** 2)

    def moments(self, B):
        return self.error_moments(B, (B[0, 0] - 2 * B[0, 1] + B[1, 1])[None, None])

    def error_moments(self, B, E):
        err = E[0, 0]
        h = 0.5 * (err + self.noise.std.astype(B.dtype) ** 2)
        J = jnp.array([[1.0, -1.0]], dtype=B.dtype)
        return Moments(h, J, (2 * h)[None, None], err)

    def moment_errors(self, B):
        """Closed forms: every error is 0."""
        zero = jnp.zeros((), B.dtype)
        return Moments(zero, zero, zero, zero)
