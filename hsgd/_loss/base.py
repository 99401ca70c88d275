r"""The abstract loss: a per-sample function $f(x; x^*, \varepsilon)$ and the Gaussian
expectations the deterministic equivalent needs (SPEC §1), with error estimates.

With $r = (x, x^*) \sim N(0, B) \in \mathbb{R}^{p}$, $p = m + m^*$, and $g(r) =
\mathbb{E}_\varepsilon\nabla_x f$:

$$h(B) = \mathbb{E}[f],\qquad J(B) = \mathbb{E}\Big[\frac{\partial g}{\partial r}\Big]
= \mathbb{E}[g(r)\,r^\top]\,B^{-1} \in \mathbb{R}^{m\times p},\qquad
I(B) = \mathbb{E}[\nabla_x f\,\nabla_x f^\top] \in \mathbb{R}^{m\times m},$$

and, when $m = m^*$, $A(B) = \mathbb{E}[\langle x - x^*, \nabla_x f\rangle]$ (for the critical
learning rate). The generic engine computes all four in one pass over a quadrature rule, with
$J$ by Stein's lemma (the middle form: first derivatives of $f$ only); a loss with closed forms
overrides `moments`, and the tests hold every closed form against the generic path.

**Noise.** Per node, $\varepsilon$ is integrated by the noise model's own `expect`, unless the
rule has dimension $p + q$ and the noise law is a function of $q$ standard normals — hsgd's
[`GaussianNoise`][] ($q = 1$, $\varepsilon = \sigma z$) or any noise model with an attribute
`num_normals` $= q$ and a method `from_normal(z, x_star) -> eps` (e.g. Student-$t$ label noise by
its quantile, $\varepsilon = F^{-1}(\Phi(z))$). Then $(r, \varepsilon)$ is integrated jointly by
the rule, and the error estimate covers the noise expectation too; the automatic rules
([`AbstractLoss.refined`][]) do this whenever they can.

**Errors.** [`AbstractLoss.moment_errors`][] estimates the relative error of each moment at $B$
from the rule's companion or its replicated copies (see [`GaussianRule`][]), relative to the
moment's scale: $\mathbb{E}|f|$ for $h$, the Frobenius norms $\|J\|_F$ and $\|I\|_F$ for every
entry of $J$ and $I$, and the Cauchy–Schwarz bound
$\sqrt{\mathbb{E}\|x - x^*\|^2\,\operatorname{tr} I}$ for $A$.
"""

import abc
import functools
import warnings
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .._custom_types import Moment
from .._expectations import (
    DEFAULT_MAX_POINTS,
    DIFFERENCE_FACTOR,
    ERROR_FACTOR,
    ExpectationAccuracyWarning,
    GaussianRule,
    default_rule,
    deterministic_ladders,
    psd_factor,
    randomized_ladder,
    reference_rule,
)
from .._noise import AbstractNoise, GaussianNoise

DEFAULT_RTOL = 1e-5


class Moments(NamedTuple):
    """Gaussian expectations of a loss at one $B$: `h` (scalar), `J` $(m, p)$, `I` $(m, m)$,
    `A` (scalar; `nan` when $m \\ne m^*$)."""

    h: Float[Array, ""]
    J: Float[Array, "m p"]
    I: Float[Array, "m m"]  # noqa: E741
    A: Float[Array, ""]


def noise_normals(noise: AbstractNoise):
    r"""$(q, T)$ when the noise law is $\varepsilon = T(z, x^*)$ with $z \sim N(0, I_q)$:
    $q = 1$, $T = \sigma z$ for [`GaussianNoise`][]; `(noise.num_normals, noise.from_normal)`
    for a noise model that defines both; else `(0, None)` (the noise model's `expect` is used)."""
    if isinstance(noise, GaussianNoise):
        return 1, lambda z, x_star: noise.std.astype(z.dtype) * z[0]
    q, transform = getattr(noise, "num_normals", None), getattr(noise, "from_normal", None)
    if q is not None and callable(transform):
        if int(q) < 1:
            raise ValueError(f"noise.num_normals must be >= 1, got {q}")
        return int(q), transform
    return 0, None


class AbstractLoss(eqx.Module):
    r"""A loss $f(x; x^*, \varepsilon)$ of the student pre-activation $x = a^\top X \in
    \mathbb{R}^m$, the teacher pre-activation $x^* = a^\top X^* \in \mathbb{R}^{m^*}$ and noise
    $\varepsilon$ drawn by `noise`.

    Subclasses define `f`, the sizes `m`, `m_star`, the `noise` model and may pass a
    `quadrature` rule (default: [`default_rule`][] for $p = m + m^*$). A loss whose expectations
    use the generic engine holds its rule in a field `quadrature` (`None`: the default rule);
    [`AbstractLoss.refined`][] returns a copy with a rule chosen for a tolerance. A subclass
    that overrides `moments` with closed forms or its own rules should also override
    `moment_errors` (0 for exact closed forms).
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

    @property
    def integration_dim(self) -> int:
        """$p + q$: the dimension of a rule that integrates the noise jointly with $r$ ($q$ from
        `noise_normals`; $q = 0$ when the noise model integrates itself)."""
        return self.p + noise_normals(self.noise)[0]

    def rule(self) -> GaussianRule:
        """The quadrature rule for $r \\sim N(0, B)$ (override to change accuracy/cost)."""
        quadrature = getattr(self, "quadrature", None)
        return default_rule(self.p) if quadrature is None else quadrature

    def gradient(self, x, x_star, eps) -> Float[Array, " m"]:
        r"""$\nabla_x f(x; x^*, \varepsilon)$, the per-sample gradient SGD uses."""
        return jax.grad(self.f)(x, x_star, eps)

    # -- the generic engine ---------------------------------------------------------------

    def _node_values(self, B: Moment, nodes):
        """Per-node $(f, |f|, \\nabla_x f, \\nabla_x f\\nabla_x f^\\top, \\langle x - x^*,
        \\nabla_x f\\rangle)$ (noise-averaged unless integrated jointly) at the rule nodes
        `nodes` $(Q, p)$ or $(Q, p + q)$, the factor $L$ and the nodes' $r$-part $z$."""
        q, transform = noise_normals(self.noise)
        dim = nodes.shape[-1]
        if dim not in (self.p, self.p + q):
            raise ValueError(f"the quadrature rule has dimension {dim}; this loss needs "
                             f"p = m + m_star = {self.p}"
                             + (f" (or p + q = {self.p + q} to integrate the noise jointly)"
                                if q else ""))
        joint = q > 0 and dim == self.p + q
        L = psd_factor(B)
        nodes = nodes.astype(L.dtype)
        z = nodes[:, :self.p]

        def per_noise(x, x_star, e):
            f = self.f(x, x_star, e)
            g = self.gradient(x, x_star, e)
            a = jnp.vdot(x - x_star, g) if self.m == self.m_star else jnp.zeros((), f.dtype)
            return f, jnp.abs(f), g, jnp.outer(g, g), a

        def at_point(node):
            r = L @ node[:self.p]
            x, x_star = r[:self.m], r[self.m:]
            if joint:
                return per_noise(x, x_star, transform(node[self.p:], x_star))
            return self.noise.expect(lambda e: per_noise(x, x_star, e), x_star)

        return jax.vmap(at_point)(nodes), L, z

    def _finish(self, B, L, sums):
        """Moments and their scales from the weighted sums $(h, \\mathbb{E}|f|, \\mathbb{E}[g
        z^\\top], I, A)$."""
        h, abs_f, M, I, a = sums  # noqa: E741
        J = jax.scipy.linalg.solve_triangular(L, M.T, lower=True, trans="T").T
        tiny = jnp.finfo(h.dtype).tiny
        frob = lambda v: jnp.sqrt(jnp.sum(v**2))  # noqa: E731
        if self.m == self.m_star:
            P = jnp.concatenate([jnp.eye(self.m, dtype=B.dtype),
                                 -jnp.eye(self.m, dtype=B.dtype)], axis=1)
            dist2 = jnp.maximum(jnp.trace(P @ B @ P.T), 0.0)
            scale_a = jnp.sqrt(dist2 * jnp.maximum(jnp.trace(I), 0.0))
        else:
            a = jnp.full((), jnp.nan, h.dtype)
            scale_a = jnp.ones((), h.dtype)
        scales = Moments(jnp.maximum(abs_f, tiny), jnp.maximum(frob(J), tiny),
                         jnp.maximum(frob(I), tiny), jnp.maximum(scale_a, tiny))
        return Moments(h, J, I, a), scales

    def _generic(self, B: Moment, rule: GaussianRule):
        """(moments, scales, per-copy moments or None) of the generic engine on `rule`."""
        (f, abs_f, g, gg, a), L, z = self._node_values(B, rule.nodes)
        w = rule.weights.astype(L.dtype)
        sums = (w @ f, w @ abs_f, jnp.einsum("q,qa,qb->ab", w, g, z),
                jnp.tensordot(w, gg, axes=1), w @ a)
        mom, scales = self._finish(B, L, sums)
        copies = None
        if rule.replicates > 1:
            R = rule.replicates
            wr = rule.replicate_weights(L.dtype)  # (R, Q/R)
            split = lambda v: v.reshape((R, -1) + v.shape[1:])  # noqa: E731
            gz = split(g)[:, :, :, None] * split(z)[:, :, None, :]
            csums = (jnp.einsum("rq,rq->r", wr, split(f)),
                     jnp.einsum("rq,rq->r", wr, split(abs_f)),
                     jnp.einsum("rq,rqab->rab", wr, gz),
                     jnp.einsum("rq,rqab->rab", wr, split(gg)),
                     jnp.einsum("rq,rq->r", wr, split(a)))
            copies = jax.vmap(lambda s: self._finish(B, L, s)[0])(csums)
        return mom, scales, copies

    def generic_moments(self, B: Moment, rule: GaussianRule | None = None) -> Moments:
        r"""$h, J, I, A$ at $B$ from a quadrature rule alone (no closed forms): `rule`, default
        the loss's own ([`AbstractLoss.rule`][]).

        $J$ comes from Stein's lemma, $J = \mathbb{E}[g(r)\,r^\top]B^{-1}$ with
        $g = \mathbb{E}_\varepsilon\nabla_x f$, evaluated as $\mathbb{E}[g(Lz)z^\top]L^{-1}$ on
        the rule's nodes $z$ ($LL^\top = B$ + jitter). It needs only first derivatives of $f$,
        so it stays accurate for losses whose gradient has kinks (Huber, hinge), where
        differentiating $g$ would integrate a step function."""
        return self._generic(B, self.rule() if rule is None else rule)[0]

    def generic_moment_errors(self, B: Moment, rule: GaussianRule | None = None) -> Moments:
        r"""Estimated relative errors of [`AbstractLoss.generic_moments`][] on `rule` (default
        the loss's own) at $B$, one non-negative scalar per moment (`A`: 0 when $m \ne m^*$):
        for a replicated rule $4\times$ the standard error of its copies' mean; otherwise
        `companion_factor` (default 2) times the difference to the rule's companion (twice the
        difference to `reference_rule` if it has none); relative to the scales of the module
        docstring; plus the rule's `bias_bound`.
        Traceable (`jit`/`vmap` over $B$)."""
        rule = self.rule() if rule is None else rule
        mom, scales, copies = self._generic(B, rule)
        if copies is not None:
            R = rule.replicates
            se = jax.tree_util.tree_map(lambda c: jnp.std(c, axis=0, ddof=1) / np.sqrt(R),
                                        copies)
            zero = jax.tree_util.tree_map(jnp.zeros_like, se)
            rel = self._relative(se, zero, scales, factor=ERROR_FACTOR)
        else:
            if rule.companion is not None:
                partner, factor = rule.companion, rule.companion_factor
            else:
                partner, factor = reference_rule(rule.dim), DIFFERENCE_FACTOR
            rel = self._relative(mom, self._generic(B, partner)[0], scales, factor=factor)
        return Moments(*(e + rule.bias_bound for e in rel))

    def _relative(self, a: Moments, b: Moments, scales: Moments, factor=1.0) -> Moments:
        rel = lambda u, v, s: factor * jnp.max(jnp.abs(u - v)) / s  # noqa: E731
        A = (rel(a.A, b.A, scales.A) if self.m == self.m_star
             else jnp.zeros((), scales.A.dtype))
        return Moments(rel(a.h, b.h, scales.h), rel(a.J, b.J, scales.J),
                       rel(a.I, b.I, scales.I), A)

    # -- the public interface -------------------------------------------------------------

    def moments(self, B: Moment) -> Moments:
        """$h, J, I, A$ at $B$: closed forms where the loss has them, else the generic path."""
        return self.generic_moments(B)

    def moment_errors(self, B: Moment) -> Moments:
        """Estimated relative error of each moment of `moments(B)` (non-negative scalars; see
        [`AbstractLoss.generic_moment_errors`][]). Exact closed forms report 0. Traceable."""
        return self.generic_moment_errors(B)

    def moment_error(self, B: Moment) -> Float[Array, ""]:
        r"""$\max$ over $h, J, I, A$ of the estimated relative error of `moments(B)`: a scalar,
        0 for exact closed forms; `jit`- and `vmap`-able over $B$ (for the error along a
        solution)."""
        return jnp.max(jnp.stack(list(self.moment_errors(B))))

    def refined(self, B0: Moment, rtol: float = DEFAULT_RTOL, *,
                max_points: int = DEFAULT_MAX_POINTS) -> tuple["AbstractLoss", float]:
        r"""A loss whose expectation rule meets `rtol` at $B_0$, and its estimated error there:
        `(loss, estimate)`. Python-level (not traced): call it once, before a solve.

        - Closed forms and losses with fixed rules of their own (no `quadrature` field): the
          loss itself and `float(moment_error(B0))`.
        - A generic-engine loss with `quadrature=None`: a copy with a rule that meets `rtol`
          (relative, on every moment: [`AbstractLoss.moment_errors`][]) at $B_0$:
          1. the deterministic chains of `deterministic_ladders` (Gauss–Hermite from the
             default rule's companion up; trapezoid grids for $p \le 4$; sparse grids for
             $p \ge 4$; quasi-Monte-Carlo for $p \ge 5$), each rule $k$ compared with the
             next finer rule $k + 1$ (its companion if taken): with $d$ their relative
             difference and $\rho$ its ratio to the previous difference, rule $k$ is accepted
             when $c\,d \le$ `rtol` with $c = 1.25/(1 - \rho)$ (at least 1.5, at most 2) if
             $\rho \le 1/2$ (geometric convergence: rule $k$'s error is at most
             $d/(1 - \rho)$; 25% margin) or $c = 2$ if
             rules $k - 1, k, k + 1$ all agree; and the same holds for the difference to the
             companion: rule $k + 1$, for trapezoid grids shifted by half a spacing (as good on
             smooth integrands, differently placed on a kink or jump that happens to sit well
             on the grid, so that the estimate sees such an alignment, at $B_0$ and along a
             solution). A chain is left once its differences fail to halve twice in a row or
             the shifted grid is 10x off (a kink or jump). The default rule is kept whenever it
             is accepted (today's cost); otherwise the accepted rule with the fewest points;
          2. if no chain gives one, the replicated rules of `randomized_ladder` (scrambled
             Sobol' sets, and for $p \le 3$ randomised grids; a family 3x worse than the other
             is dropped), whose estimate is a standard error, honest for kinks and jumps, up
             to `max_points` points.
          Both integrate the noise jointly with $r$ when its law is a function of normals
          (`noise_normals`). If nothing meets `rtol`: the rule with the smallest estimate (of
          the replicated rules and the best deterministic candidate with the companion it
          would have been accepted with) and an `ExpectationAccuracyWarning` giving it.
        - A user-given rule is kept; its estimate is the larger of its own
          (`moment_error(B0)`) and its distance to the automatic rule plus that rule's estimate,
          with a warning if above `rtol`.

        The returned loss's `moment_error(B)` estimates its error at any later $B$ with the same
        mechanism (companion difference times its factor, or the copies' spread); at $B_0$ it
        equals the returned estimate."""
        B0 = jnp.asarray(B0)
        if B0.shape != (self.p, self.p):
            raise ValueError(f"refined needs B0 of shape ({self.p}, {self.p}), got {B0.shape}")
        if not rtol > 0:
            raise ValueError(f"rtol must be > 0, got {rtol}")
        if not hasattr(self, "quadrature"):
            est = float(_jitted_error(self, B0))
            _warn_if(self, est, rtol, "its own expectation rules")
            return self, est
        rule, est = _choose_rule(self, B0, float(rtol), int(max_points))
        if self.quadrature is None:
            _warn_if(self, est, rtol, rule.label, max_points)
            return _with_quadrature(self, rule), est
        own = self.quadrature
        mine, scales, _ = _evaluate(self, B0, own)
        auto = _evaluate(self, B0, rule)[0]
        distance = float(max(self._relative(mine, auto, scales)))
        est_user = max(float(_jitted_error(self, B0)), distance + est)
        _warn_if(self, est_user, rtol, f"the given rule {own.label or '(user rule)'}")
        return self, est_user

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


# -- the automatic choice (Python level) ----------------------------------------------------

_CHUNK = 2**14  # nodes per compiled call of the automatic choice (one compilation per loss)


@eqx.filter_jit
def _chunk_sums(loss, B, nodes, wrows):
    """Weighted sums $(h, \\mathbb{E}|f|, \\mathbb{E}[gz^\\top], I, A)$ over one chunk of
    nodes, one row of weights per group: shapes $(G, \\ldots)$."""
    (f, abs_f, g, gg, a), _, z = loss._node_values(B, nodes)
    return (wrows @ f, wrows @ abs_f, jnp.einsum("gq,qa,qb->gab", wrows, g, z),
            jnp.einsum("gq,qab->gab", wrows, gg), wrows @ a)


@eqx.filter_jit
def _finish_groups(loss, B, sums):
    L = psd_factor(B)
    total = jax.tree_util.tree_map(lambda v: jnp.mean(v, axis=0), sums)
    mom, scales = loss._finish(B, L, total)
    copies = jax.vmap(lambda s: loss._finish(B, L, s)[0])(sums)
    return mom, scales, copies


def _evaluate(loss, B, rule):
    """(moments, scales, per-copy moments or None) of `rule` at `B`, as `_generic` computes
    them, in chunks of `_CHUNK` nodes through one compiled function (rules of every size share
    it: the automatic choice tries many)."""
    nodes = np.asarray(rule.nodes)
    w = np.asarray(rule.weights, dtype=float)
    R, Q = rule.replicates, nodes.shape[0]
    group = np.repeat(np.arange(R), Q // R)
    scale = float(R) if R > 1 else 1.0
    dtype = B.dtype
    sums = None
    for start in range(0, Q, _CHUNK):
        stop = min(start + _CHUNK, Q)
        chunk = np.zeros((_CHUNK, nodes.shape[1]))
        chunk[:stop - start] = nodes[start:stop]
        wrows = np.zeros((R, _CHUNK))
        wrows[group[start:stop], np.arange(stop - start)] = w[start:stop] * scale
        part = _chunk_sums(loss, B, jnp.asarray(chunk, dtype), jnp.asarray(wrows, dtype))
        sums = part if sums is None else jax.tree_util.tree_map(jnp.add, sums, part)
    mom, scales, copies = _finish_groups(loss, B, sums)
    return mom, scales, (copies if R > 1 else None)


def _replicate_error(loss, B, rule):
    mom, scales, copies = _evaluate(loss, B, rule)
    R = rule.replicates
    se = jax.tree_util.tree_map(lambda c: jnp.std(c, axis=0, ddof=1) / np.sqrt(R), copies)
    zero = jax.tree_util.tree_map(jnp.zeros_like, se)
    return float(max(loss._relative(se, zero, scales, factor=ERROR_FACTOR))) + rule.bias_bound


@eqx.filter_jit
def _jitted_error(loss, B):
    return loss.moment_error(B)


def _with_quadrature(loss, rule):
    return eqx.tree_at(lambda lo: lo.quadrature, loss, rule, is_leaf=lambda v: v is None)


def _choose_rule(loss, B0, rtol, max_points):
    """(rule, estimate) per [`AbstractLoss.refined`][] for `quadrature=None`."""
    dim = loss.integration_dim
    candidates = []  # (estimate, family, builder of rule k, rule k - 1, rule k, factor, values)

    def raw(a, b):  # relative difference of two rules' values, on b's scales
        (ma, _), (mb, sb) = a, b
        return float(max(loss._relative(ma, mb, sb)))

    accepted = None  # (rule, estimate): the cheapest deterministic rule that met rtol
    for index, (family, builders) in enumerate(deterministic_ladders(dim, max_points)):
        first = index == 0  # the chain of the default rule (its companion, it, finer)
        chain = _LazyList(builders)
        cache = {}

        def ev(k, chain=chain, cache=cache):
            if k not in cache:
                cache[k] = _evaluate(loss, B0, chain[k])[:2]
            return cache[k]

        diffs = {}  # diffs[k]: relative difference of rules k and k - 1 (rule k - 1's scales)
        for k in range(1, len(chain)):
            if accepted is not None and chain[k - 1].num_points >= accepted[0].num_points:
                break  # an earlier family already met rtol more cheaply
            d = diffs[k] = raw(ev(k), ev(k - 1))
            bias = chain[k - 1].bias_bound
            # geometric convergence with ratio rho: |error of rule k - 1| <= d / (1 - rho)
            rho = d / diffs[k - 1] if k >= 2 and diffs[k - 1] > 0 else 1.0
            # (the bound is tight for an exact geometric sequence: 25% margin, at least 1.5)
            factor = min(DIFFERENCE_FACTOR, max(1.5, 1.25 / (1.0 - rho))) if rho <= 0.5 \
                else DIFFERENCE_FACTOR
            est = factor * d + bias
            candidates.append((est, family, builders[k], chain[k - 1], chain[k], factor,
                               ev(k - 1)))
            if not np.isfinite(d):
                break
            three_agree = (k >= 2 and DIFFERENCE_FACTOR * diffs[k - 1]
                           + chain[k - 2].bias_bound <= rtol)
            if k >= 2 and est <= rtol and (rho <= 0.5 or three_agree):
                # rules k - 2, k - 1, k agree, or converge geometrically: rule k - 1's error is
                # about its difference to the much better rule k, which (or its half-shifted
                # variant: `_variant`) becomes its companion.
                turned = _variant(family, builders[k], chain[k])
                d_turned = raw(_evaluate(loss, B0, turned)[:2], ev(k - 1))
                est_turned = factor * d_turned + bias
                if est_turned <= rtol:
                    accepted = (chain[k - 1].with_companion(turned, factor), est_turned)
                    if first and k == 2:  # today's default rule meets rtol: keep it
                        return accepted
                    break  # accepted: next family (for a cheaper rule)
                if d_turned > 10 * max(d, rtol):
                    break  # far from smooth at this resolution: next family
            if (k >= 3 and est > rtol and d > 0.5 * diffs[k - 1]
                    and diffs[k - 1] > 0.5 * diffs[k - 2]):
                break  # not converging geometrically (a kink or a jump): next family
    if accepted is not None:
        return accepted
    best = None
    alive = None  # the replicated families still tried (a family 3x worse than the best is dropped)
    for families in randomized_ladder(dim, max_points):
        alive = list(families) if alive is None else alive
        found = {}
        for name in alive:
            rule = families[name]()
            est = found[name] = _replicate_error(loss, B0, rule)
            if best is None or est < best[0]:
                best = (est, rule)
            if est <= rtol:
                return rule, est
        lowest = min(found.values())
        alive = [name for name in alive if found[name] <= 3 * lowest]
    finite = [c for c in candidates if np.isfinite(c[0])]
    if finite:  # the best deterministic candidate, with the companion it would be accepted with
        _, family, builder, rule, finer, factor, values = min(finite, key=lambda c: c[0])
        turned = _variant(family, builder, finer)
        est = factor * raw(_evaluate(loss, B0, turned)[:2], values) + rule.bias_bound
        if best is None or est < best[0]:
            best = (est, rule.with_companion(turned, factor))
    return best[1], best[0]


def _variant(family, builder, rule):
    """The companion of an accepted deterministic rule: the next finer rule of its chain, for
    trapezoid grids shifted by half a spacing (the midpoint grid: as accurate on smooth
    integrands, differently placed on a kink or jump that happens to sit well on the grid, and,
    like every rule here, symmetric in each coordinate, which Stein's J needs at nearly singular
    B). Gauss–Hermite and sparse grids: the finer rule itself (its nodes already sit elsewhere)."""
    if family == "trapezoid":
        return functools.partial(builder.func, *builder.args, offset=0.5)()
    return rule


class _LazyList:
    def __init__(self, builders):
        self.builders, self.built = builders, {}

    def __len__(self):
        return len(self.builders)

    def __getitem__(self, k):
        if k not in self.built:
            self.built[k] = self.builders[k]()
        return self.built[k]


def _describe(loss) -> str:
    fn = getattr(loss, "fn", None)
    name = getattr(fn, "__name__", None)
    return f"{type(loss).__name__}({name})" if name else type(loss).__name__


def _warn_if(loss, est, rtol, what, max_points=None):
    if est <= rtol:
        return
    budget = f" within max_points={max_points}" if max_points is not None else ""
    warnings.warn(
        f"hsgd: the Gaussian expectations of {_describe(loss)} miss rtol={rtol:g}{budget}: "
        f"estimated relative error {est:.3g} at B0 with {what}. The ODE's moments (h, J, I, A) "
        f"carry this error; raise max_points, loosen rtol, or smooth the loss's kinks/jumps.",
        ExpectationAccuracyWarning, stacklevel=3)
