import equinox as eqx
import jax
import jax.numpy as jnp

from .._noise import CategoricalTeacher
from .base import AbstractLoss


class Softmax(AbstractLoss):
    r"""Multi-class logistic (softmax) regression with $C$ classes and a categorical teacher
    (SPEC §1.1): $f(x; x^*, y) = \operatorname{logsumexp}(x) - \langle e_y, x\rangle$,
    $y \sim \text{Categorical}(\operatorname{softmax}(x^*))$, $m = m^* = C$.

    $p = 2C$; expectations use the quasi-Monte-Carlo rule for $C \ge 3$.

    **Arguments:**

    - `num_classes`: $C \ge 2$.

    Example: `hsgd.Softmax(3)`.
    """

    noise: CategoricalTeacher
    m: int = eqx.field(static=True)
    m_star: int = eqx.field(static=True)

    def __init__(self, num_classes: int = 3):
        if int(num_classes) < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        self.m = self.m_star = int(num_classes)
        self.noise = CategoricalTeacher()

    def f(self, x, x_star, eps):
        return jax.nn.logsumexp(x) - jnp.vdot(eps, x)
