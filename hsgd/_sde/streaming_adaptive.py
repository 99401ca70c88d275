r"""Homogenized SGD with a feedback stepsize (SPEC §10): SPEC §1's SDE with $\gamma_t$ the rule
evaluated on the path itself,

$$dX_t = -\Gamma_t\,\nabla R(X_t)\,dt + \Gamma_t\sqrt{\tfrac{K}{d}\otimes\tfrac{I(B_t)}{\beta}}
\,d\mathcal B_t,\qquad \Gamma_t = \text{rule}(t, B_t, a_t),\qquad da_t = r(B_t, a_t)\,dt,$$

(AdaGrad-Norm: $dS_t = (\operatorname{tr}K/d)\operatorname{tr}I(B_t)/\beta\,dt$, the mean rate
of its accumulator, whose fluctuations are $O(d^{-1/2})$ relative), the state of the rule from
the path's $B_t = W_t^\top KW_t$ and $\nabla R = KW_tJ^\top$ with the loss's moments.
"""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx

from .._custom_types import PRNGKey
from .._expectations import psd_factor
from .._optimizer.adaptive import (
    AbstractFeedback,
    AdaGradNorm,
    FeedbackSchedule,
    LineSearch,
    Polyak,
)
from .._problem import Problem
from .._registry import register
from .._results import Runs
from .._risk import DEFAULT_RISK_SAMPLES
from .._simulate.streaming_adaptive import iterate_state
from .common import streaming_arguments, streaming_runs


def _loss_moments(loss, B, E):
    """The loss's own moments (what homogenized SGD's drift and noise use)."""
    return loss.moments(B)


@register("sde", Problem, AdaGradNorm)
@register("sde", Problem, Polyak)
@register("sde", Problem, LineSearch)
@register("sde", Problem, FeedbackSchedule)
def sde(problem: Problem, optimizer: AbstractFeedback, ts, key: PRNGKey, *, num_paths: int = 8,
        dt=None, solver: diffrax.AbstractSolver | None = None, coupled: bool = False,
        blowup: float = 1e6, risk_samples: int = DEFAULT_RISK_SAMPLES) -> Runs:
    r"""Sample `num_paths` paths of homogenized SGD with a feedback stepsize (module docstring)
    and record them at `ts`: the cells [`Problem`][] × [`AdaGradNorm`][], [`Polyak`][],
    [`LineSearch`][], [`FeedbackSchedule`][] of [`hsgd.sde`][].

    **Arguments:** as for SGD's [`sde`][] (`problem` with an instance, `ts`, `key`,
    `num_paths`, `solver`, `coupled`, `blowup`, `risk_samples`). `dt`: default
    $\min(0.05, 0.01/(\Gamma_{\max}\lambda_{\max}))$ with $\Gamma_{\max}$ the rule's stepsize at
    $X_0$ (the rules here decrease from there, AdaGrad-Norm's from $\eta/\bar b_0$); pass a
    smaller one if yours grows.

    **Returns:** [`Runs`][] with `risk`, `risk_se`, `B`, `distance` and `gamma` (each path's
    stepsize at the record times).
    """
    optimizer.check_problem(problem)
    if dt is None:
        state = iterate_state(problem, optimizer, problem.X0, 0.0,
                              jnp.zeros((optimizer.num_aux,), problem.X0.dtype), _loss_moments)
        gamma0 = float(optimizer.gamma(state))
        lam_max = float(jnp.max(problem.spectrum.eigenvalues))
        dt = 0.05 if gamma0 * lam_max == 0 or gamma0 == float("inf") else \
            min(0.05, 0.01 / (gamma0 * lam_max))
    schedule, ts, grid, batch, num_paths, solver = streaming_arguments(
        problem, optimizer, ts, num_paths, dt, solver, coupled, blowup)
    return _solve(problem, optimizer, ts, grid, key, batch, num_paths, solver, bool(coupled),
                  float(blowup), int(risk_samples))


@eqx.filter_jit
def _solve(problem, rule, ts, grid, key, batch, num_paths, solver, coupled, blowup,
           risk_samples):
    lam = problem.spectrum.eigenvalues.astype(ts.dtype)
    d = lam.shape[0]
    noise_scale = jnp.sqrt(lam / d)[:, None]
    shape = jax.ShapeDtypeStruct(problem.X0.shape, problem.X0.dtype)
    k = rule.num_aux

    def split(y):
        return y if k else (y, jnp.zeros((0,), ts.dtype))

    def join(x, a):
        return (x, a) if k else x

    def at(t, y):
        X, a = split(y)
        state = iterate_state(problem, rule, X, t, a, _loss_moments)
        return X, state, rule.gamma(state).astype(X.dtype)

    def drift(t, y, args):
        X, state, g = at(t, y)
        W = jnp.concatenate([X, problem.X_star], axis=1)
        dX = -g * lam[:, None] * (W @ state.moments.J.T)
        return join(dX, rule.aux_rate(state, g).astype(X.dtype))

    def diffusion(t, y, args):
        X, state, g = at(t, y)
        L = psd_factor(state.moments.I.astype(X.dtype))
        scale = g / jnp.sqrt(batch) * noise_scale
        zero = jnp.zeros((k,), X.dtype)
        return lx.FunctionLinearOperator(lambda dB: join(scale * (dB @ L.T), zero), shape)

    def gamma_of(t, y):
        return at(t, y)[2]

    return streaming_runs(problem, drift, diffusion, ts, grid, key, num_paths, solver, coupled,
                          blowup, risk_samples, aux0=jnp.zeros((k,), ts.dtype) if k else None,
                          gamma_of=gamma_of)
