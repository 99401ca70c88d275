from collections.abc import Callable

import equinox as eqx

from .._expectations import GaussianRule
from .._noise import AbstractNoise, NoNoise
from .base import AbstractLoss, noise_normals


class CustomLoss(AbstractLoss):
    r"""Any loss written as a plain JAX function `fn(x, x_star, eps) -> scalar`, with
    `x` of shape `(m,)`, `x_star` of shape `(m_star,)` and `eps` drawn by `noise`.

    With $r = (x, x^*) \sim N(0, B)$, $g(r) = \mathbb{E}_\varepsilon\nabla_x f$ and SGD's
    per-sample gradient `jax.grad(fn)` in `x`, the generic engine computes on a quadrature rule

    $$h = \mathbb{E} f,\qquad J = \mathbb{E}[g(r)\,r^\top]\,B^{-1}\ \ (\text{Stein's lemma}),
    \qquad I = \mathbb{E}[\nabla_x f\,\nabla_x f^\top],\qquad
    A = \mathbb{E}\langle x - x^*, \nabla_x f\rangle\ (m = m^*).$$

    **What `fn` may be.** Only `fn` and its *first* derivative in `x` are ever evaluated (by
    `jax.grad`); no derivative in `x_star` or `eps` is taken, and $J$ needs no second
    derivative (Stein's lemma integrates $g$ against $r$). So `fn` must be differentiable
    almost everywhere in `x`, with JAX's derivative equal to the true one off a null set (a
    `jnp.where`/`abs`/`maximum` kink is fine: Huber, hinge, ReLU), and may be any measurable
    function of `x_star` and `eps`, discontinuous included (a sign teacher). $f$ and
    $\nabla_x f$ need finite second moments (for $I$); $J = \partial_r\,\mathbb{E}[\ldots]$
    treats a jump of $f$ in `x` as absent, so `fn` should be continuous in `x` (a jump in `x`
    would put a Dirac mass in the true gradient that neither SGD nor the engine sees).
    Smoothness only decides the cost: analytic integrands meet the tolerance of
    [`AbstractLoss.refined`][] on the default Gauss–Hermite rule, kinks and jumps need the
    replicated rules (and may exhaust the budget, with a warning giving the estimate).

    **Arguments:**

    - `fn`: the per-sample loss.
    - `m`, `m_star`: output sizes of student and teacher (default 1, 1).
    - `noise`: an [`AbstractNoise`][] (default none), e.g. `hsgd.GaussianNoise(0.3)`.
    - `rule`: optional [`GaussianRule`][] overriding the default quadrature, of dimension
      $p = m + m^*$, or $p + q$ to integrate a noise that is a function of $q$ normals jointly
      (`noise_normals`). A given rule is always used as given; `moment_error` and
      `refined` still estimate its error.

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
        p = self.m + self.m_star
        q = noise_normals(self.noise)[0]
        if rule is not None and rule.dim not in (p, p + q):
            raise ValueError(f"rule has dimension {rule.dim}, expected p = m + m_star = {p}"
                             + (f" or p + q = {p + q} (noise integrated jointly)" if q else ""))
        self.quadrature = rule

    def f(self, x, x_star, eps):
        return self.fn(x, x_star, eps)
