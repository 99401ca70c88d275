r"""The ground truth for signSGD: the real iteration on Gaussian data in the eigenbasis of $K$
(SPEC §11),

$$X_{k+1} = X_k - \frac{\gamma(k/d)}{d}\operatorname{sign}\Big(\frac1\beta\sum_{b=1}^{\beta}
a_b\otimes\nabla_x f(a_b^\top X_k;\ a_b^\top X^*,\ \varepsilon_b)\Big),\qquad
a_b\sim N(0, \operatorname{diag}\lambda),$$

fresh samples and noise every step, recorded exactly as one-pass SGD is
(`hsgd._simulate.streaming_sgd`: $B$, $\|X - X^*\|^2$ and the population risk $h(B)$ of each
iterate).
"""

from collections.abc import Callable

import jax.numpy as jnp

from .._custom_types import PRNGKey
from .._optimizer.sign_sgd import SignSGD
from .._problem import Problem
from .._registry import register
from .._results import Runs
from .._risk import DEFAULT_RISK_SAMPLES
from .streaming_sgd import batch_gradient, run_streaming


def _signsgd_step(problem: Problem, schedule, batch: int, X, key, k):
    a, g = batch_gradient(problem, batch, X, key)
    d = a.shape[1]
    gamma = schedule(k.astype(X.dtype) / d).astype(X.dtype)
    # The sign of the batch mean is the sign of the batch sum.
    return X - (gamma / d) * jnp.sign(a.T @ g)


@register("simulate", Problem, SignSGD)
def simulate(problem: Problem, optimizer: SignSGD, ts, key: PRNGKey, *, num_runs: int = 8,
             progress: bool | Callable[[float, float], None] = False, blowup: float = 1e6,
             risk_samples: int = DEFAULT_RISK_SAMPLES) -> Runs:
    r"""Run `num_runs` independent signSGD runs (vmapped) and record them at times `ts`: the
    cell [`Problem`][] × [`SignSGD`][] of [`hsgd.simulate`][].

    Any loss and noise the problem has (the ODE needs least squares; the simulator does not):
    each step draws $\beta$ fresh $a_b\sim N(0,\operatorname{diag}\lambda)$ and noise
    $\varepsilon_b$ from the loss's noise law, and moves every coordinate by
    $\mp\gamma/d$ (by 0 where the batch gradient is exactly 0).

    **Arguments:** as for SGD's simulator — `problem` with an instance (`X_star`, `X0`),
    `optimizer` a [`SignSGD`][] (integer `batch`), record times `ts` (iteration
    $\operatorname{round}(td)$), a PRNG `key`, `num_runs`, `progress`, `blowup`,
    `risk_samples` (Monte-Carlo samples per risk for a loss without an exact risk).

    **Returns:** [`Runs`][] with `risk` $h(B)$ of each iterate (for least squares with a noise
    without a variance: the excess risk, see [`LeastSquares`][]), `risk_se`, `B`, `distance`.

    Costs $O(\beta d)$ per step and $td$ steps per unit time.
    """
    return run_streaming(_signsgd_step, problem, optimizer, ts, key, num_runs=num_runs,
                         blowup=blowup, progress=progress, risk_samples=risk_samples,
                         label="signsgd")
