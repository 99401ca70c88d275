import equinox as eqx
import jax
import jax.numpy as jnp

from .._expectations import GaussianRule
from .._noise import CategoricalTeacher
from .base import AbstractLoss


class Softmax(AbstractLoss):
    r"""Multi-class logistic (softmax) regression with $C$ classes and a categorical teacher
    (SPEC §1.1): $f(x; x^*, y) = \operatorname{logsumexp}(x) - \langle e_y, x\rangle$,
    $y \sim \text{Categorical}(\operatorname{softmax}(x^*))$, $m = m^* = C$.

    $p = 2C$; expectations use the generic engine on [`default_rule`][] (Gauss–Hermite for
    $C = 2$, quasi-Monte-Carlo for $C \ge 3$) or on `rule`; [`AbstractLoss.refined`][] chooses
    one for a tolerance.

    **Arguments:**

    - `num_classes`: $C \ge 2$.
    - `rule`: optional [`GaussianRule`][] of dimension $2C$.

    Example: `hsgd.Softmax(3)`.
    """

    noise: CategoricalTeacher
    m: int = eqx.field(static=True)
    m_star: int = eqx.field(static=True)
    quadrature: GaussianRule | None

    def __init__(self, num_classes: int = 3, rule: GaussianRule | None = None):
        if int(num_classes) < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        self.m = self.m_star = int(num_classes)
        self.noise = CategoricalTeacher()
        if rule is not None and rule.dim != 2 * self.m:
            raise ValueError(f"rule has dimension {rule.dim}, expected 2C = {2 * self.m}")
        self.quadrature = rule

    def f(self, x, x_star, eps):
        return jax.nn.logsumexp(x) - jnp.vdot(eps, x)
