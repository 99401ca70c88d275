r"""The ground truth for SGD+M on finite data: mini-batch SGD with heavy-ball momentum over the
rows of $A$ (SPEC §3).

$$x_{k+1} = x_k - \gamma_k\Big(\sum_{i\in\mathcal B_k}a_i(a_i^\top x_k - b_i) + \zeta\delta x_k
\Big) + \Delta(x_k - x_{k-1}),\qquad x_{-1} = x_0,$$

with $\mathcal B_k$ a uniformly random set of $\beta$ distinct rows, drawn afresh (independently)
at every step — without replacement *within* a step, the setting of SPEC §3's $\zeta(1-\zeta)$.
The ridge term is the one of [`hsgd.ode`][] on [`HeavyBall`][]. Independent runs are vmapped; at
each
recorded iteration the full training loss $\tfrac12\|Ax - b\|^2$ and the population risk are
computed exactly.
"""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp

from .._checks import check_iterations, check_learning_rate, probe_times
from .._custom_types import PRNGKey
from .._optimizer import HeavyBall
from .._problem import FiniteProblem
from .._registry import register
from .._results import Runs
from .common import drive
from .finite_sgd import _record, finish


def _draw_batch(key, n: int, batch: int):
    """`batch` distinct rows, uniformly (static special cases: one row, all rows)."""
    if batch == 1:
        return jax.random.randint(key, (1,), 0, n)
    if batch == n:
        return jnp.arange(n)
    return jax.random.permutation(key, n)[:batch]


@eqx.filter_jit
def _advance(problem, schedule, batch, momentum, state, k0, k1):
    data = problem.data
    n = problem.n
    zeta = batch / n

    def one_run(x, x_prev, key):
        def body(k, carry):
            x, x_prev, key = carry
            key, sub = jax.random.split(key)
            idx = _draw_batch(sub, n, batch)
            a = data.A[idx]
            gamma = schedule(k.astype(x.dtype)).astype(x.dtype)
            grad = a.T @ (a @ x - data.b[idx]) + zeta * problem.ridge * x
            return x - gamma * grad + momentum * (x - x_prev), x, key

        return jax.lax.fori_loop(k0, k1, body, (x, x_prev, key))

    return jax.vmap(one_run)(*state)


@register("simulate", FiniteProblem, HeavyBall)
def simulate(problem: FiniteProblem, optimizer: HeavyBall, iterations, key: PRNGKey, *,
             num_runs: int = 8, blowup: float = 1e6,
             progress: bool | Callable[[float, float], None] = False) -> Runs:
    r"""Run `num_runs` independent SGD+M runs over the rows of `problem.data` (vmapped over
    seeds) and record them at `iterations`: the cell [`FiniteProblem`][] × [`HeavyBall`][] of
    [`hsgd.simulate`][].

    **Arguments:**

    - `problem`: a [`FiniteProblem`][] built from arrays (`from_arrays`, `gaussian`,
      `random_features`, `from_npz`).
    - `optimizer`: [`HeavyBall`][] with an integer `batch` $\beta\in[1, n]$ (rows per step,
      summed gradient, drawn without replacement), $\gamma_k$ as a function of the iteration
      $k$, `momentum` $\Delta\in[0, 1)$.
    - `iterations`: non-decreasing integers to record; `key`: a JAX PRNG key; `num_runs`.
    - `blowup`: a run diverges once its loss exceeds `blowup`$\,\times(1 + L(x_0))$ or is not
      finite; `progress` as for [`hsgd.simulate`][].

    $\gamma_k$ must be finite and $\ge 0$ (0 allowed), checked at `iterations` and on 1025
    points of $[0, k_{\rm final}]$.

    **Returns:** [`Runs`][] whose `ts` are the recorded **iterations** (not epochs; epochs are
    $k\beta/n$). Cost $O(\beta d + n\log n)$ per iteration (the batch is a prefix of a random
    permutation; $O(d)$ for $\beta = 1$) plus $O(nd)$ per record.
    """
    if problem.data is None:
        raise ValueError("simulate_momentum needs the data themselves: build the FiniteProblem "
                         "with from_arrays, from_npz, gaussian or random_features (not "
                         "marchenko_pastur or from_spectrum)")
    if optimizer.batch is None:
        raise ValueError("the SGD+M simulator needs an integer batch (rows per step): "
                         "HeavyBall(schedule, momentum, batch=...), not batch_fraction")
    optimizer.fraction(problem.n)  # checks batch <= n
    batch, momentum = int(optimizer.batch), float(optimizer.momentum)
    if int(num_runs) < 1:
        raise ValueError(f"num_runs must be >= 1, got num_runs={num_runs}")
    schedule = optimizer.schedule
    steps = check_iterations(iterations)
    dtype = problem.data.A.dtype
    check_learning_rate(schedule, probe_times(steps).astype(dtype), time_name="k")
    x0 = problem.data.x0
    xs = jnp.broadcast_to(x0, (num_runs, *x0.shape))
    state = (xs, xs, jax.random.split(key, num_runs))
    mom = jnp.asarray(momentum, dtype)

    def advance(state, k0, k1):
        return _advance(problem, schedule, int(batch), mom, state, k0, k1)

    ts_np = steps.astype(float)
    loss, risk = drive(advance, lambda s: _record(problem, s), state, steps, ts_np, progress,
                       "sgd+m")
    return finish(problem, jnp.asarray(ts_np, dtype), loss, risk, blowup)


def simulate_momentum(problem: FiniteProblem, schedule, iterations, key: PRNGKey, *,
                      batch: int, momentum=0.0, num_runs: int = 8, blowup: float = 1e6,
                      progress: bool | Callable[[float, float], None] = False) -> Runs:
    """The spelling before optimizers were values, kept as an alias: exactly
    `hsgd.simulate(problem, HeavyBall(schedule, momentum, batch=batch), iterations, key,
    num_runs=num_runs, blowup=blowup, progress=progress)`."""
    return simulate(problem, HeavyBall(schedule, momentum, batch=batch), iterations, key,
                    num_runs=num_runs, blowup=blowup, progress=progress)
