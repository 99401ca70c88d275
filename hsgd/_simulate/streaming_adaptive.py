r"""The ground truth for the feedback stepsizes (SPEC §10): one-pass SGD whose stepsize is the
real rule, computed from the real run.

- [`AdaGradNorm`][]: the accumulator of the actual stochastic gradients, the current one
  included,

  $$G_k = \frac1\beta\sum_b a_b\otimes\nabla_xf(a_b^\top X_k; a_b^\top X^*, \varepsilon_b),
  \quad S_k = S_{k-1} + \frac{\|G_k\|^2}{d^2},\quad
  X_{k+1} = X_k - \frac{\eta(k/d)}{d\sqrt{\bar b_0^2 + S_k}}\,G_k.$$

- the oracles ([`Polyak`][], [`LineSearch`][]) and [`FeedbackSchedule`][]: SPEC §10's formula
  evaluated at the current iterate $X_k$, on quantities computed from $X_k$ itself and
  independently of the ODE's code: $B = W^\top KW$ and $\nabla R = KWJ^\top$ exactly from the
  iterate; $h$ by the loss's exact risk (`hsgd._risk`: closed form or a fine trapezoid rule);
  $J$, $I$, $A$ by closed forms for least squares and otherwise by the generic engine
  (Stein's lemma on per-node gradients) on [`reference_rule`][hsgd._expectations.reference_rule]
  (1.5x the default nodes per axis), never the loss's own `moments`.

Recorded as SGD is (`hsgd._simulate.streaming_sgd`), plus each run's stepsize at the record
times (`Runs.gamma`).
"""

from collections.abc import Callable

import jax.numpy as jnp

from .._custom_types import PRNGKey
from .._expectations import reference_rule
from .._loss import LeastSquares
from .._loss.base import Moments
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
from .._results import Runs
from .._risk import DEFAULT_RISK_SAMPLES
from .streaming_sgd import batch_gradient, run_streaming


def _adagrad_gamma(problem, opt: AdaGradNorm, X, S, k):
    d = X.shape[0]
    eta = opt.eta(k.astype(X.dtype) / d).astype(X.dtype)
    return eta / jnp.sqrt(opt.b0.astype(X.dtype) ** 2 + S)


def _adagrad_step(problem: Problem, opt: AdaGradNorm, batch: int, state, key, k):
    X, S = state
    a, g = batch_gradient(problem, batch, X, key)
    d = a.shape[1]
    G = (a.T @ g) / batch
    S = S + jnp.sum(G**2) / d**2  # the current gradient included
    return X - (_adagrad_gamma(problem, opt, X, S, k) / d) * G, S


def independent_moments(loss, B, E=None) -> Moments:
    r"""$h, J, I, A$ at $B$ without the loss's `moments` (the ODE's code): least squares by
    its closed forms from $E = \mathbb{E}(x - x^*)^2$ (exact), any other loss by the generic
    engine on [`reference_rule`][hsgd._expectations.reference_rule], with $h$ from
    `exact_risk` when the loss has one."""
    if isinstance(loss, LeastSquares):
        E = B[0, 0] - 2 * B[0, 1] + B[1, 1] if E is None else E
        h = 0.5 * (E + loss._floor(B.dtype))
        return Moments(h, jnp.asarray([[1.0, -1.0]], B.dtype), (2 * h)[None, None], E)
    mom = loss.generic_moments(B, reference_rule(loss.p))
    exact = loss.exact_risk(B)
    return mom if exact is None else mom._replace(h=exact)


def iterate_state(problem: Problem, opt: AbstractFeedback, X, t, aux=None,
                  moments=independent_moments) -> FeedbackState:
    r"""The [`FeedbackState`][hsgd.FeedbackState] of one iterate $X$ at time $t$, from the
    iterate (module docstring); `moments(loss, B, E)` gives $h, J, I, A$ (default
    [`independent_moments`][hsgd._simulate.streaming_adaptive.independent_moments])."""
    dtype = X.dtype
    lam = problem.spectrum.eigenvalues.astype(dtype)
    loss = problem.loss
    X_star = problem.X_star.astype(dtype)
    W = jnp.concatenate([X, X_star], axis=1)
    B = (W.T * lam) @ W
    E = None
    if isinstance(loss, LeastSquares):
        e = X - X_star
        E = jnp.sum(lam[:, None] * e**2)  # no cancellation
    mom = moments(loss, B, E)
    grad = (lam[:, None] * W) @ mom.J.T  # grad R = K W J^T
    h_star = jnp.full((), jnp.nan, dtype)
    if opt.needs_h_star:
        if getattr(opt, "h_star", None) is not None:
            h_star = jnp.asarray(opt.h_star, dtype)
        else:
            Ws = jnp.concatenate([X_star, X_star], axis=1)
            Bs = (Ws.T * lam) @ Ws
            h_star = moments(loss, Bs, jnp.zeros((), dtype)
                             if isinstance(loss, LeastSquares) else None).h
    return FeedbackState(t=jnp.asarray(t, dtype), B=B, moments=mom,
                         aux=jnp.zeros((0,), dtype) if aux is None else aux,
                         batch=jnp.asarray(opt.batch, dtype), mean_eigenvalue=jnp.mean(lam),
                         mean_square_eigenvalue=jnp.mean(lam**2),
                         grad_norm2=jnp.sum(grad**2), h_star=h_star)


def _oracle_gamma(problem, opt, X, carry, k):
    t = k.astype(X.dtype) / X.shape[0]
    return opt.gamma(iterate_state(problem, opt, X, t)).astype(X.dtype)


def _oracle_step(problem: Problem, opt: AbstractFeedback, batch: int, state, key, k):
    X, carry = state
    gamma = _oracle_gamma(problem, opt, X, carry, k)
    a, g = batch_gradient(problem, batch, X, key)
    d = a.shape[1]
    return X - (gamma / (d * batch)) * (a.T @ g), carry


@register("simulate", Problem, AdaGradNorm)
@register("simulate", Problem, Polyak)
@register("simulate", Problem, LineSearch)
@register("simulate", Problem, FeedbackSchedule)
def simulate(problem: Problem, optimizer: AbstractFeedback, ts, key: PRNGKey, *,
             num_runs: int = 8, blowup: float = 1e6,
             progress: bool | Callable[[float, float], None] = False,
             risk_samples: int = DEFAULT_RISK_SAMPLES) -> Runs:
    r"""Run `num_runs` independent runs of one-pass SGD with the real feedback stepsize
    (module docstring) and record them at times `ts`: the cells [`Problem`][] ×
    [`AdaGradNorm`][], [`Polyak`][], [`LineSearch`][], [`FeedbackSchedule`][] of
    [`hsgd.simulate`][].

    **Arguments:** as for SGD's simulator (`problem` with an instance, `ts`, `key`,
    `num_runs`, `blowup`, `progress`, `risk_samples`); `optimizer` with an integer `batch`.

    **Returns:** [`Runs`][] with `risk`, `risk_se`, `B`, `distance` and `gamma` $(R, T)$: each
    run's stepsize at the record times (AdaGrad-Norm: $\eta/\sqrt{\bar b_0^2 + S_k}$ after
    $k = \operatorname{round}(td)$ steps; the oracles: the rule at the iterate $X_k$).

    Costs $O(\beta d)$ per step, plus for the oracles on a loss without closed forms one
    quadrature per step.
    """
    optimizer.check_problem(problem)
    if isinstance(optimizer, AdaGradNorm):
        return run_streaming(_adagrad_step, problem, optimizer, ts, key, num_runs=num_runs,
                             blowup=blowup, progress=progress, risk_samples=risk_samples,
                             label="adagrad_norm", carry=jnp.zeros(()),
                             gamma_of=_adagrad_gamma)
    return run_streaming(_oracle_step, problem, optimizer, ts, key, num_runs=num_runs,
                         blowup=blowup, progress=progress, risk_samples=risk_samples,
                         label=type(optimizer).__name__.lower(), carry=jnp.zeros(()),
                         gamma_of=_oracle_gamma)
