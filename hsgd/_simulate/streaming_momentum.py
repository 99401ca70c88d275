r"""The ground truth for streaming momentum: the real recursion of the linear family (SPEC §9) on
Gaussian data in the eigenbasis of $K$,

$$y_{k+1} = (1 - \Delta_k)\,y_k + \gamma_{1,k}G_k,\qquad
x_{k+1} = x_k - \gamma_{2,k}G_k - \gamma_{3,k}\,y_k,\qquad y_0 = 0,$$

$G_k = \frac1\beta\sum_b a_b\otimes\nabla_xf(a_b^\top x_k; a_b^\top x^*, \varepsilon_b)$ on
$\beta$ fresh samples $a_b\sim N(0, \operatorname{diag}\lambda)$ and fresh noise, with the
per-iteration coefficients $\gamma_{i,k} = \bar\gamma_i(k/d)/d$, $\Delta_k = \delta(k/d)/d$ of
[`LinearMomentum`][] (no ODE, no moment, no expectation: only the samples), recorded as one-pass
SGD is (`hsgd._simulate.streaming_sgd`: $B$, $\|X - X^*\|^2$ and the population risk of each
iterate).
"""

from collections.abc import Callable

import jax.numpy as jnp

from .._custom_types import PRNGKey
from .._dynamics.streaming_momentum import heavy_ball_family
from .._optimizer import HeavyBall
from .._optimizer.linear_momentum import (
    DANAConstant,
    DANADecaying,
    LinearMomentum,
    check_coefficients,
)
from .._problem import Problem
from .._registry import register
from .._results import Runs
from .._risk import DEFAULT_RISK_SAMPLES
from .streaming_sgd import batch_gradient, run_streaming


def _momentum_step(problem: Problem, optimizer: LinearMomentum, batch: int, state, key, k):
    X, Y = state
    a, g = batch_gradient(problem, batch, X, key)
    d = a.shape[1]
    t = k.astype(X.dtype) / d
    g1, g2, g3, dl = (s(t).astype(X.dtype) / d for s in optimizer.coefficients())
    G = (a.T @ g) / batch
    return X - g2 * G - g3 * Y, (1.0 - dl) * Y + g1 * G


@register("simulate", Problem, LinearMomentum)
def simulate(problem: Problem, optimizer: LinearMomentum, ts, key: PRNGKey, *,
             num_runs: int = 8, blowup: float = 1e6,
             progress: bool | Callable[[float, float], None] = False,
             risk_samples: int = DEFAULT_RISK_SAMPLES) -> Runs:
    r"""Run `num_runs` independent runs of the linear momentum family (module docstring),
    vmapped, and record them at `ts`: the cells [`Problem`][] × [`LinearMomentum`][] (and
    [`DANAConstant`][], [`DANADecaying`][], resolved on the problem) of [`hsgd.simulate`][].

    **Arguments:** as for SGD's simulator — `problem` with an instance (`X_star`, `X0`),
    `optimizer` (an integer `batch`), record times `ts` (iteration $\operatorname{round}(td)$),
    a PRNG `key`, `num_runs`, `blowup`, `progress`, `risk_samples`.

    **Returns:** [`Runs`][] (`risk` $h(B)$ of each iterate, `risk_se`, `B`, `distance`).

    Costs $O(\beta d m)$ per step and $td$ steps per unit time.
    """
    optimizer = optimizer.linear(problem).for_simulation(problem)
    check_coefficients(optimizer, ts)
    Y0 = None if problem.X0 is None else jnp.zeros_like(problem.X0)
    return run_streaming(_momentum_step, problem, optimizer, ts, key, num_runs=num_runs,
                         blowup=blowup, progress=progress, risk_samples=risk_samples,
                         label="momentum", carry=Y0)


for _preset in (DANAConstant, DANADecaying):
    register("simulate", Problem, _preset)(simulate)


@register("simulate", Problem, HeavyBall)
def simulate_heavy_ball(problem: Problem, optimizer: HeavyBall, ts, key: PRNGKey, *,
                        num_runs: int = 8, blowup: float = 1e6,
                        progress: bool | Callable[[float, float], None] = False,
                        risk_samples: int = DEFAULT_RISK_SAMPLES) -> Runs:
    r"""Streaming heavy ball $x_{k+1} = x_k - \frac{\gamma(k/d)}dG_k + \Delta_{\rm hb}(x_k -
    x_{k-1})$ run as the family
    ([`LinearMomentum.heavy_ball`][hsgd.LinearMomentum.heavy_ball], exact): the cell
    [`Problem`][] × [`HeavyBall`][] of [`hsgd.simulate`][]. Arguments as for the family's
    [`simulate`][hsgd._simulate.streaming_momentum.simulate]."""
    return simulate(problem, heavy_ball_family(problem, optimizer), ts, key, num_runs=num_runs,
                    blowup=blowup, progress=progress, risk_samples=risk_samples)
