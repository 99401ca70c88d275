import equinox as eqx
import jax.numpy as jnp

from .._noise import GaussianNoise
from .base import AbstractLoss, Moments


class PhaseRetrieval(AbstractLoss):
    r"""Real phase retrieval (SPEC §1.1): $f(x; x^*, \varepsilon) = (x^2 - x^{*2} - \varepsilon)^2$,
    $\varepsilon \sim N(0, \sigma^2)$ (default noiseless).

    The loss is a polynomial, so Gauss–Hermite is exact; the risk also has the Wick closed form
    $h = 3B_{11}^2 + 3B_{22}^2 - 2(B_{11}B_{22} + 2B_{12}^2) + \sigma^2$. $X_0 = 0$ is a fixed
    point (the gradient vanishes), so start with a nonzero overlap. $J$, $I$ and $A$ come from the
generic engine on the 40×40 Gauss–Hermite rule and the noise's 20-node rule: their integrands
are polynomials of degree $\le 6$ in $r$ and $\le 2$ in $\varepsilon$, integrated exactly
(up to the $1.5\times10^{-10}$ Cholesky jitter), so `moment_errors` reports 0.

    Example: `hsgd.PhaseRetrieval()`.
    """

    noise: GaussianNoise
    m: int = eqx.field(static=True, default=1)
    m_star: int = eqx.field(static=True, default=1)

    def __init__(self, noise_std=0.0):
        self.noise = GaussianNoise(noise_std)

    def f(self, x, x_star, eps):
        return (x[0] ** 2 - x_star[0] ** 2 - eps) ** 2

    def exact_risk(self, B):
        a, b, c = B[0, 0], B[0, 1], B[1, 1]
        return 3 * a**2 + 3 * c**2 - 2 * (a * c + 2 * b**2) + self.noise.std.astype(B.dtype) ** 2

    def moments(self, B):
        generic = self.generic_moments(B)
        return Moments(self.exact_risk(B), generic.J, generic.I, generic.A)

    def moment_errors(self, B):
        """Exact (Wick closed form; polynomial integrands on Gauss–Hermite): 0."""
        zero = jnp.zeros((), B.dtype)
        return Moments(zero, zero, zero, zero)
