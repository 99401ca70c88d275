r"""The deterministic equivalent of one-pass SGD with a state-feedback stepsize (SPEC §10).

SPEC §1's per-mode ODE with the learning rate a function of the state,

$$\frac{dV_j}{dt} = -\Gamma_t\lambda_j\,(G V_j + V_j G^\top) + \frac{\Gamma_t^2\lambda_j}{\beta}
E_m,\qquad \Gamma_t = \text{rule}\big(t, B(t), a(t)\big),\qquad a' = r\big(B(t), a(t)\big),$$

with the rule's auxiliary scalars $a$ (AdaGrad-Norm: $S' = (\operatorname{tr}K/d)
\operatorname{tr}I(B)/\beta$, $\Gamma = \eta/\sqrt{\bar b_0^2 + S}$). Rules that read
$\|\nabla R\|^2 = \operatorname{tr}(J\,W^\top K^2 W J^\top)$ (the exact line search) carry
$B_2 = W^\top K^2W = \sum_j\omega_j\lambda_j^2V_j$ as a second summary. It is SGD's
per-mode system ([`SGDModes`][]) with its learning-rate hook
([`SGDModes.learning_rate`][hsgd.SGDModes.learning_rate]) replaced, integrated by
[`StructuredKvaerno5`][] (L-stable, error-controlled, differentiable); the stepsize now
depends on the summary and on $a$, so each stage takes Newton corrections.
"""

import dataclasses

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array

from .._optimizer.adaptive import (
    AbstractFeedback,
    AdaGradNorm,
    FeedbackSchedule,
    FeedbackState,
    LineSearch,
    Polyak,
)
from .._problem import Problem
from .._registry import register
from .._results import Solution
from .streaming_sgd import SGDModes, _check, integrate_modes
from .structured import (
    StructuredKvaerno5,
    checked_times,
    contract,
    default_tolerances,
    initial_state,
)


class AdaptiveModes(SGDModes):
    r"""SGD's per-mode system ([`SGDModes`][]) with the stepsize of a feedback rule
    ([`AbstractFeedback`][hsgd.AbstractFeedback]): `learning_rate` evaluates the rule on the
    [`FeedbackState`][hsgd.FeedbackState] of the summary (and $a$), and returns the rule's
    auxiliary rates. With `rule.uses_B2` the summary is extended by the upper triangle of
    $\sum_j\omega_j\lambda_j^2F_j$ and $\sum_j\omega_j\lambda_j^2C_j$ (the moments of
    $W^\top K^2W$ in the same coordinates), and their aggregate is error-controlled too."""

    rule: AbstractFeedback | None = None
    mean_eig: Array | None = None
    mean_eig2: Array | None = None
    h_star: Array | None = None
    weighted2: Array | None = None
    B2_target: Array | None = None

    @classmethod
    def from_rule(cls, problem: Problem, rule: AbstractFeedback, batch):
        """The dynamics and the initial blocks `(F, C)` (mode axis last)."""
        base, F0, C0 = SGDModes.from_problem(problem, rule.schedule, batch)
        fields = {f.name: getattr(base, f.name) for f in dataclasses.fields(base)
                  if f.name in {g.name for g in dataclasses.fields(SGDModes)}}
        fields["affine"] = False
        dtype = F0.dtype
        spec = problem.spectrum
        lam, w = spec.eigenvalues.astype(dtype), spec.weights.astype(dtype)
        weighted2 = B2_target = None
        if rule.uses_B2:
            weighted2 = w * lam**2 * base.scale
            B2_target = contract(base.target, weighted2)
        h_star = jnp.full((), jnp.nan, dtype)
        if rule.needs_h_star:
            if getattr(rule, "h_star", None) is not None:
                h_star = jnp.asarray(rule.h_star, dtype)
            else:
                h_star = _minimal_risk(problem.loss, base.B_target)
        dyn = cls(**fields, rule=rule, mean_eig=jnp.sum(w * lam),
                  mean_eig2=jnp.sum(w * lam**2), h_star=h_star, weighted2=weighted2,
                  B2_target=B2_target)
        return dyn, F0, C0

    @property
    def forcing_only(self):
        return False  # the stepsize depends on the summary (and on a)

    def _n_base(self):
        m, ms = self.m, self.loss.m_star
        return m * (m + 1) // 2 + m * ms

    def summary_linear(self, F, C):
        base = super().summary_linear(F, C)
        if self.weighted2 is None:
            return base
        SF = contract(F, self.weighted2)
        return jnp.concatenate([base] + [SF[a, a:] for a in range(self.m)]
                               + [contract(C, self.weighted2).ravel()])

    def summary_offset(self):
        n = self._n_base() * (1 if self.weighted2 is None else 2)
        return jnp.zeros(n, self.B_target.dtype)

    def grad_norm2(self, u, mom):
        r"""$\|\nabla R\|^2 = \operatorname{tr}(J B_2 J^\top)$ from the summary's second part
        (in error coordinates without cancellation: for least squares it is the weighted sum
        $\sum_j\omega_j\lambda_j^2P_j$ itself)."""
        if self.weighted2 is None:
            return jnp.full((), jnp.nan, u.dtype)
        S2xx, S2xt = self._unpack(u[self._n_base():])
        m = self.m
        Jx, Js = mom.J[:, :m], mom.J[:, m:]
        if self.error_coords:  # grad R = K((X - X*) Jx^T + X* (Jx + J*)^T)
            Jt = Jx + Js
            return (jnp.trace(Jx @ S2xx @ Jx.T) + 2 * jnp.trace(Jx @ S2xt @ Jt.T)
                    + jnp.trace(Jt @ self.B2_target @ Jt.T))
        return (jnp.trace(Jx @ S2xx @ Jx.T) + 2 * jnp.trace(Jx @ S2xt @ Js.T)
                + jnp.trace(Js @ self.B2_target @ Js.T))

    def feedback_state(self, t, u, aux, mom) -> FeedbackState:
        return FeedbackState(t=t, B=self.B(u), moments=mom, aux=aux, batch=self.batch,
                             mean_eigenvalue=self.mean_eig,
                             mean_square_eigenvalue=self.mean_eig2,
                             grad_norm2=self.grad_norm2(u, mom), h_star=self.h_star)

    def learning_rate(self, t, u, aux, mom):
        state = self.feedback_state(t, u, aux, mom)
        g = self.rule.gamma(state).astype(u.dtype)
        return g, self.rule.aux_rate(state, g).astype(u.dtype)

    def error_weights(self):
        w = super().error_weights()
        if self.weighted2 is None:
            return w
        total = jnp.sum(self.weighted2)
        return jnp.concatenate([w, (self.weighted2 / jnp.where(total > 0, total, 1.0))[None]])


def _minimal_risk(loss, B_target):
    r"""$h^* = h(B^*)$ at $X = X^*$ ($B^*$ has every block $B_{**}$), from the error moments
    ($E = 0$: least squares gives $\tfrac12\sigma^2$ exactly)."""
    m = loss.m
    Bs = jnp.concatenate([jnp.concatenate([B_target, B_target], axis=1)] * 2, axis=0)
    return loss.error_moments(Bs, jnp.zeros((m, m), Bs.dtype)).h


def check_rule(problem, optimizer: AbstractFeedback):
    """The eager checks every feedback cell makes: the rule's own (e.g. Polyak's $h^*$)."""
    optimizer.check_problem(problem)


@register("ode", Problem, AdaGradNorm)
@register("ode", Problem, Polyak)
@register("ode", Problem, LineSearch)
@register("ode", Problem, FeedbackSchedule)
def ode(problem: Problem, optimizer: AbstractFeedback, ts, *, statistics: dict | None = None,
        rtol: float | None = None, atol: float | None = None,
        stepsize_controller: diffrax.AbstractStepSizeController | None = None,
        adjoint: diffrax.AbstractAdjoint | None = None, max_steps: int = 200_000,
        blowup: float = 1e6) -> Solution:
    r"""Solve the deterministic equivalent of one-pass SGD with a feedback stepsize (SPEC
    §10) on the times `ts`: the cells [`Problem`][] × [`AdaGradNorm`][], [`Polyak`][],
    [`LineSearch`][], [`FeedbackSchedule`][] of [`hsgd.ode`][].

    $$\frac{dV_j}{dt} = -\Gamma_t\lambda_j(GV_j + V_jG^\top) + \frac{\Gamma_t^2\lambda_j}{\beta}
    E_m,\qquad \Gamma_t = \text{rule}(t, B(t), a(t)),\qquad a' = r(B, a)$$

    (module docstring), by [`StructuredKvaerno5`][] on every spectrum, with error control on
    the aggregates of $B$, the distance (and $B_2$ for the line search) and the auxiliary
    scalars.

    **Arguments:** `problem` a streaming [`Problem`][] with any loss; `optimizer` the rule;
    `ts` non-decreasing output times $\ge 0$; `statistics`, `rtol`, `atol` (default $10^{-7}$,
    $10^{-18}$; float32 $10^{-5}$, $10^{-8}$), `stepsize_controller`, `adjoint`, `max_steps`,
    `blowup` as for SGD's [`ode`][hsgd._dynamics.streaming_sgd.ode].

    **Returns:** a [`Solution`][] whose `gamma` is the predicted stepsize $\Gamma(t)$ (the
    learning-rate curve) and `gamma_crit` SPEC §1's critical rate along the solution.
    """
    check_rule(problem, optimizer)
    statistics = {} if statistics is None else dict(statistics)
    dtype = problem.V0.dtype
    ts = checked_times(ts, rtol, atol, dtype)
    rtol, atol = default_tolerances(rtol, atol, dtype)
    return _solve(problem, optimizer, ts, jnp.asarray(optimizer.batch, dtype), statistics,
                  rtol, atol, stepsize_controller, adjoint, int(max_steps), float(blowup))


@eqx.filter_jit
def _solve(problem, rule, ts, batch, statistics, rtol, atol, stepsize_controller, adjoint,
           max_steps, blowup):
    base_rates = jax.vmap(rule.schedule)(ts)
    ts, batch = _check(ts, batch, base_rates)
    if isinstance(rule, AdaGradNorm):  # traced b0 (vmap, grad) is checked here
        ts = eqx.error_if(ts, ~(rule.b0 > 0), "AdaGradNorm: b0 must be > 0 (b0 = 0 has no O(1) "
                          "limit, SPEC §10); pass a positive b0")
    dyn, F0, C0 = AdaptiveModes.from_rule(problem, rule, batch)
    y0 = initial_state(dyn, F0, C0, jnp.zeros((rule.num_aux,), F0.dtype))
    return integrate_modes(problem, dyn, y0, ts, None, batch, statistics, StructuredKvaerno5(),
                           rtol, atol, stepsize_controller, adjoint, max_steps, blowup)
