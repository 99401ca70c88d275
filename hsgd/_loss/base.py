r"""The abstract loss: a per-sample function $f(x; x^*, \varepsilon)$ and the Gaussian
expectations the deterministic equivalent needs (SPEC §1).

With $r = (x, x^*) \sim N(0, B) \in \mathbb{R}^{p}$, $p = m + m^*$:

$$h(B) = \mathbb{E}[f],\qquad J(B) = \mathbb{E}\Big[\tfrac{\partial}{\partial r}
\mathbb{E}_\varepsilon \nabla_x f\Big] \in \mathbb{R}^{m\times p},\qquad
I(B) = \mathbb{E}[\nabla_x f\,\nabla_x f^\top] \in \mathbb{R}^{m\times m},$$

and, when $m = m^*$, $A(B) = \mathbb{E}[\langle x - x^*, \nabla_x f\rangle]$ (for the critical
learning rate). The generic engine computes all four in one pass over a fixed quadrature rule,
with $J$ by Stein's lemma from the noise-averaged gradient; a loss with closed forms
overrides `moments`, and the tests hold every closed form against the generic path.
"""

import abc
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .._custom_types import Moment
from .._expectations import GaussianRule, default_rule, psd_factor
from .._noise import AbstractNoise


class Moments(NamedTuple):
    """Gaussian expectations of a loss at one $B$: `h` (scalar), `J` $(m, p)$, `I` $(m, m)$,
    `A` (scalar; `nan` when $m \\ne m^*$)."""

    h: Float[Array, ""]
    J: Float[Array, "m p"]
    I: Float[Array, "m m"]  # noqa: E741
    A: Float[Array, ""]


class AbstractLoss(eqx.Module):
    r"""A loss $f(x; x^*, \varepsilon)$ of the student pre-activation $x = a^\top X \in
    \mathbb{R}^m$, the teacher pre-activation $x^* = a^\top X^* \in \mathbb{R}^{m^*}$ and noise
    $\varepsilon$ drawn by `noise`.

    Subclasses define `f`, the sizes `m`, `m_star`, the `noise` model and may pass a
    `quadrature` rule (default: [`default_rule`][] for $p = m + m^*$).
    """

    m: eqx.AbstractVar[int]
    m_star: eqx.AbstractVar[int]
    noise: eqx.AbstractVar[AbstractNoise]

    @abc.abstractmethod
    def f(self, x: Float[Array, " m"], x_star: Float[Array, " m_star"], eps) -> Float[Array, ""]:
        """The per-sample loss."""

    @property
    def p(self) -> int:
        return self.m + self.m_star

    def rule(self) -> GaussianRule:
        """The quadrature rule for $r \\sim N(0, B)$ (override to change accuracy/cost)."""
        return default_rule(self.p)

    def gradient(self, x, x_star, eps) -> Float[Array, " m"]:
        r"""$\nabla_x f(x; x^*, \varepsilon)$, the per-sample gradient SGD uses."""
        return jax.grad(self.f)(x, x_star, eps)

    def generic_moments(self, B: Moment) -> Moments:
        r"""$h, J, I, A$ at $B$ from the quadrature rule alone (no closed forms).

        $J$ comes from Stein's lemma, $J = \mathbb{E}[g(r)\,r^\top]B^{-1}$ with
        $g = \mathbb{E}_\varepsilon\nabla_x f$, evaluated as $\mathbb{E}[g(Lz)z^\top]L^{-1}$ on
        the rule's nodes $z$ ($LL^\top = B$ + jitter). It needs only first derivatives of $f$,
        so it stays accurate for losses whose gradient has kinks (Huber, hinge), where
        differentiating $g$ would integrate a step function."""
        rule = self.rule()
        L = psd_factor(B)
        z = rule.nodes.astype(L.dtype)
        w = rule.weights.astype(L.dtype)

        def at_point(r):
            x, x_star = r[:self.m], r[self.m:]

            def per_noise(e):
                g = self.gradient(x, x_star, e)
                a = jnp.vdot(x - x_star, g) if self.m == self.m_star else jnp.zeros((), r.dtype)
                return self.f(x, x_star, e), g, jnp.outer(g, g), a

            return self.noise.expect(per_noise, x_star)

        h, g, I, a = jax.vmap(at_point)(z @ L.T)  # noqa: E741
        h, I, a = w @ h, jnp.tensordot(w, I, axes=1), w @ a  # noqa: E741
        M = jnp.einsum("q,qa,qb->ab", w, g, z)  # E[g z^T], (m, p)
        J = jax.scipy.linalg.solve_triangular(L, M.T, lower=True, trans="T").T
        if self.m != self.m_star:
            a = jnp.full((), jnp.nan, h.dtype)
        return Moments(h, J, I, a)

    def moments(self, B: Moment) -> Moments:
        """$h, J, I, A$ at $B$: closed forms where the loss has them, else the generic path."""
        return self.generic_moments(B)

    def error_moments(self, B: Moment, E) -> Moments:
        r"""$h, J, I, A$ at $B$ given also $E = \mathbb{E}[(x - x^*)(x - x^*)^\top]$
        ($m = m^*$), which the deterministic equivalent carries without cancellation (its
        state is in the coordinates of $X - X^*$). A loss whose moments depend on $B$ through
        $E$ (least squares: $h = \tfrac12(E + \sigma^2)$) overrides this, so that a risk
        falling many decades below $\|X^*\|^2$ is not a difference of large numbers; the
        default ignores $E$."""
        return self.moments(B)

    def risk(self, B: Moment) -> Float[Array, ""]:
        """$h(B) = \\mathbb{E} f$, the population risk of a model with $W^\\top K W = B$."""
        return self.moments(B).h

    def exact_risk(self, B: Moment) -> Float[Array, ""] | None:
        r"""$h(B) = \mathbb{E}f$ computed without the quadrature rule the ODE uses (`rule()`):
        a closed form, or a deterministic rule accurate to rounding, for the SGD simulator's
        independent ground truth (`hsgd._risk`). `None` (the default) when the loss has none;
        the simulator then estimates $h$ by Monte Carlo with its own standard error."""
        return None
