import equinox as eqx
import jax

from .._noise import BernoulliTeacher
from .base import AbstractLoss


class Logistic(AbstractLoss):
    r"""Binary logistic regression with a Bernoulli teacher (SPEC §1.1):
    $f(x; x^*, y) = \log(1 + e^{x}) - y\,x$ with $y \sim \text{Bernoulli}(\sigma(x^*))$.

    $J = \mathbb{E}[\sigma'(x), -\sigma'(x^*)]$ and
    $I = \mathbb{E}[(\sigma(x) - \sigma(x^*))^2 + \sigma(x^*)(1 - \sigma(x^*))]$; both come from
    the generic Gauss–Hermite engine (40×40 nodes).

    Example: `hsgd.Logistic()`.
    """

    noise: BernoulliTeacher
    m: int = eqx.field(static=True, default=1)
    m_star: int = eqx.field(static=True, default=1)

    def __init__(self):
        self.noise = BernoulliTeacher()

    def f(self, x, x_star, eps):
        return jax.nn.softplus(x[0]) - eps * x[0]
