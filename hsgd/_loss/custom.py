from collections.abc import Callable

import equinox as eqx

from .._expectations import GaussianRule, default_rule
from .._noise import AbstractNoise, NoNoise
from .base import AbstractLoss


class CustomLoss(AbstractLoss):
    r"""Any loss written as a plain JAX function `fn(x, x_star, eps) -> scalar`, with
    `x` of shape `(m,)`, `x_star` of shape `(m_star,)` and `eps` drawn by `noise`.

    $h$, $J$ and $I$ come from the generic quadrature + autodiff engine; SGD uses
    `jax.grad(fn)`. The function must be differentiable almost everywhere in `x` (twice for
    $J$: a Huber or smoothed-hinge loss is fine).

    **Arguments:**

    - `fn`: the per-sample loss.
    - `m`, `m_star`: output sizes of student and teacher (default 1, 1).
    - `noise`: an [`AbstractNoise`][] (default none), e.g. `hsgd.GaussianNoise(0.3)`.
    - `rule`: optional [`GaussianRule`][] overriding the default quadrature.

    Example (Huber regression with noisy labels):

    ```python
    def huber(x, x_star, eps, delta=1.0):
        u = x[0] - x_star[0] - eps
        return jnp.where(abs(u) < delta, 0.5 * u**2, delta * (abs(u) - 0.5 * delta))
    loss = hsgd.CustomLoss(huber, noise=hsgd.GaussianNoise(0.5))
    ```
    """

    fn: Callable = eqx.field(static=True)
    m: int = eqx.field(static=True)
    m_star: int = eqx.field(static=True)
    noise: AbstractNoise
    quadrature: GaussianRule | None

    def __init__(self, fn, m: int = 1, m_star: int = 1, noise: AbstractNoise | None = None,
                 rule: GaussianRule | None = None):
        if not callable(fn):
            raise TypeError(f"CustomLoss needs a callable fn(x, x_star, eps), got {type(fn)}")
        if int(m) < 1 or int(m_star) < 1:
            raise ValueError(f"m and m_star must be >= 1, got m={m}, m_star={m_star}")
        self.fn = fn
        self.m, self.m_star = int(m), int(m_star)
        self.noise = NoNoise() if noise is None else noise
        if rule is not None and rule.dim != self.m + self.m_star:
            raise ValueError(f"rule has dimension {rule.dim}, expected p = m + m_star = "
                             f"{self.m + self.m_star}")
        self.quadrature = rule

    def f(self, x, x_star, eps):
        return self.fn(x, x_star, eps)

    def rule(self):
        return default_rule(self.p) if self.quadrature is None else self.quadrature
