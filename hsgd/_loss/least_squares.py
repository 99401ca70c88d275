import equinox as eqx
import jax
import jax.numpy as jnp

from .._noise import AbstractNoise, BernoulliTeacher, CategoricalTeacher, GaussianNoise
from .base import AbstractLoss, Moments


class LeastSquares(AbstractLoss):
    r"""Least squares with additive label noise (SPEC §1.1):
    $f(x; x^*, \varepsilon) = \tfrac12 (x - x^* - \varepsilon)^2$, $\varepsilon \sim N(0,\sigma^2)$
    by default, or any additive noise law independent of $x^*$ (`noise=`, e.g. a
    [`StudentTNoise`][]).

    Closed forms: $h = \tfrac12(B_{11} - 2B_{12} + B_{22} + \mathbb{E}\varepsilon^2)$,
    $J = [1, -1]$, $I = 2h$, $A = B_{11} - 2B_{12} + B_{22}$. They need a finite noise
    variance: with a noise law whose variance is infinite (Student-$t$ with $\nu \le 2$) or
    unknown, `moments` — hence SGD's ODE and homogenized SGD — raise a `ValueError` naming the
    noise (SGD's deterministic equivalent does not exist there, SPEC §11), while signSGD's
    ([`SignSGD`][]) needs only the noise density. The risk the library reports
    ([`risk`][hsgd.LeastSquares.risk], `exact_risk`, hence `Solution.risk` and `Runs.risk`) is
    then the **excess** risk $\tfrac12(B_{11} - 2B_{12} + B_{22})$: the infinite constant
    $\tfrac12\mathbb{E}\varepsilon^2$ is dropped.

    **Arguments:**

    - `noise_std`: $\sigma \ge 0$ of Gaussian noise.
    - `noise`: instead of `noise_std`, an additive noise law ([`GaussianNoise`][],
      [`NoNoise`][], [`StudentTNoise`][], [`DensityNoise`][]; not a teacher model).

    Example: `hsgd.LeastSquares(noise_std=0.5)`,
    `hsgd.LeastSquares(noise=hsgd.StudentTNoise(nu=1.5, scale=0.5))`.
    """

    noise: AbstractNoise
    m: int = eqx.field(static=True, default=1)
    m_star: int = eqx.field(static=True, default=1)

    def __init__(self, noise_std=0.0, *, noise=None):
        if noise is None:
            self.noise = GaussianNoise(noise_std)
            return
        if not isinstance(noise, AbstractNoise):
            raise TypeError(f"noise must be a hsgd noise law (an AbstractNoise), got {noise!r}")
        if isinstance(noise, BernoulliTeacher | CategoricalTeacher):
            raise ValueError(f"LeastSquares needs additive noise independent of the teacher, "
                             f"got the teacher model {type(noise).__name__}")
        if isinstance(noise_std, jax.core.Tracer) or float(noise_std) != 0.0:
            raise ValueError("pass either noise_std (Gaussian noise) or noise, not both")
        self.noise = noise

    def noise_variance(self):
        r"""$\mathbb{E}\varepsilon^2$ (`inf` for a law without a variance, `None` when the
        noise law does not say)."""
        return self.noise.variance

    def has_finite_variance(self) -> bool:
        """Whether the noise variance is known and finite, so that SGD's closed forms exist
        (decided from static information, so also inside `jit`)."""
        return isinstance(self.noise, GaussianNoise) or self.noise.has_finite_variance()

    def _floor(self, dtype):
        """The risk's noise part, E eps^2: 0 where it is infinite or unknown (see the class
        docstring: the reported risk is then the excess risk)."""
        if isinstance(self.noise, GaussianNoise):
            return self.noise.std.astype(dtype) ** 2
        if not self.noise.has_finite_variance():
            return jnp.zeros((), dtype)
        return jnp.asarray(self.noise_variance()).astype(dtype)

    def _finite_variance(self, dtype):
        """E eps^2 for SGD's closed forms; a ValueError when it is infinite or unknown."""
        if isinstance(self.noise, GaussianNoise):
            return self.noise.std.astype(dtype) ** 2
        if self.noise.has_finite_variance():
            return jnp.asarray(self.noise_variance()).astype(dtype)
        why = "infinite" if self.noise_variance() is not None else "unknown"
        raise ValueError(
            f"LeastSquares with noise {self.noise!r}: the noise variance is {why}, so SGD's "
            f"closed forms (I(B) = tau^2 + E eps^2, SPEC §1) do not exist — the deterministic "
            f"equivalent of SGD and homogenized SGD do not apply to this noise (SPEC §11; "
            f"SGD's risk is dominated by rare huge jumps). hsgd.SignSGD's ODE applies: it "
            f"needs only the noise density.")

    def f(self, x, x_star, eps):
        return 0.5 * (x[0] - x_star[0] - eps) ** 2

    def risk(self, B):
        r"""$h(B) = \tfrac12(B_{11} - 2B_{12} + B_{22} + \mathbb{E}\varepsilon^2)$ (the excess
        risk when $\mathbb{E}\varepsilon^2$ is infinite or unknown; see the class docstring)."""
        return self.exact_risk(B)

    def exact_risk(self, B):
        return 0.5 * (B[0, 0] - 2 * B[0, 1] + B[1, 1] + self._floor(B.dtype))

    def moments(self, B):
        return self.error_moments(B, (B[0, 0] - 2 * B[0, 1] + B[1, 1])[None, None])

    def error_moments(self, B, E):
        err = E[0, 0]
        h = 0.5 * (err + self._finite_variance(B.dtype))
        J = jnp.array([[1.0, -1.0]], dtype=B.dtype)
        return Moments(h, J, (2 * h)[None, None], err)

    def moment_errors(self, B):
        """Closed forms: every error is 0."""
        zero = jnp.zeros((), B.dtype)
        return Moments(zero, zero, zero, zero)
