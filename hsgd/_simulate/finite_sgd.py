r"""The ground truth for finite data: multi-pass SGD over the rows of $A$ (SPEC §2).

One iteration with a batch $\mathcal B_k$ of $\beta$ rows (the batch loss is *summed*, SPEC §3):

$$x_{k+1} = x_k - \gamma(t_k)\sum_{i\in\mathcal B_k}a_i(a_i^\top x_k - b_i)
- \frac{\gamma(t_k)\,\beta}{n}\,\delta\,x_k,\qquad t_k = k\beta/n\ \text{(epochs)}.$$

Rows are drawn uniformly with replacement (the setting of the theory); `reshuffle=True` instead
walks through a fresh random permutation every epoch (random reshuffling — common in practice,
*outside* the theory, which models independent draws). At each recorded epoch the full training
loss $\tfrac12\|Ax - b\|^2$ and the population risk are computed exactly.
"""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._blowup import after_first, nan_where
from .._checks import check_learning_rate, check_times, probe_times
from .._custom_types import PRNGKey
from .._optimizer import SGD
from .._problem import FiniteProblem
from .._registry import register
from .._results import Runs
from .common import drive


def _batch_indices(key, perm, pos, n, batch, reshuffle):
    if not reshuffle:
        return jax.random.randint(key, (batch,), 0, n), perm, pos
    # Walk through the permutation; draw a new one when the batch would run past its end.
    fresh = pos + batch > n
    perm = jnp.where(fresh, jax.random.permutation(key, n), perm)
    pos = jnp.where(fresh, 0, pos)
    idx = jax.lax.dynamic_slice(perm, (pos,), (batch,))
    return idx, perm, pos + batch


@eqx.filter_jit
def _advance(problem, schedule, batch, reshuffle, state, k0, k1):
    data = problem.data
    n = problem.n

    def one_run(x, key, perm, pos):
        def body(k, carry):
            x, key, perm, pos = carry
            key, sub = jax.random.split(key)
            idx, perm, pos = _batch_indices(sub, perm, pos, n, batch, reshuffle)
            a = data.A[idx]
            resid = a @ x - data.b[idx]
            gamma = schedule((k * batch).astype(x.dtype) / n).astype(x.dtype)
            x = x - gamma * (a.T @ resid) - (gamma * batch / n) * problem.ridge * x
            return x, key, perm, pos

        return jax.lax.fori_loop(k0, k1, body, (x, key, perm, pos))

    return jax.vmap(one_run)(*state)


@eqx.filter_jit
def _record(problem, state):
    data = problem.data

    def one(x):
        loss = 0.5 * jnp.sum((data.A @ x - data.b) ** 2)
        risk = (jnp.full((), jnp.nan, x.dtype) if data.population is None
                else data.population(x))
        return loss, risk

    return jax.vmap(one)(state[0])


@register("simulate", FiniteProblem, SGD)
def simulate(problem: FiniteProblem, optimizer: SGD, ts, key: PRNGKey, *, num_runs: int = 8,
             reshuffle: bool = False, blowup: float = 1e6,
             progress: bool | Callable[[float, float], None] = False) -> Runs:
    r"""Run `num_runs` independent multi-pass SGD runs over the rows of `problem.data`
    (vmapped) and record them at epochs `ts` (iteration $\operatorname{round}(tn/\beta)$):
    the cell [`FiniteProblem`][] × [`SGD`][] of [`hsgd.simulate`][].

    **Arguments:** `problem` (a [`FiniteProblem`][] built from arrays), `optimizer`
    ([`SGD`][]: $\gamma(t)$ per epoch, `batch` $\beta \le n$, summed batch gradient), `ts`,
    `key`, `num_runs`;
    `reshuffle` (see the module docstring); `blowup`: a run diverges once its loss exceeds
    `blowup`$\,\times(1 + L(x_0))$ or is not finite; `progress` as for streaming SGD. The
    learning rate must be finite and $\ge 0$ (0 allowed), checked at `ts` and on 1025 epochs of
    $[0, t_{\rm final}]$.

    **Returns:** [`Runs`][] (`loss`, `risk`). Cost $O(\beta d)$ per iteration plus $O(nd)$ per
    record.
    """
    if problem.data is None:
        raise ValueError("simulate needs the data themselves: build the FiniteProblem with "
                         "from_arrays, from_npz, gaussian or random_features (not "
                         "marchenko_pastur or from_spectrum)")
    n = problem.n
    batch = int(optimizer.batch)
    if batch != optimizer.batch or not 1 <= batch <= n:
        raise ValueError(f"batch must be between 1 and n = {n}, got {batch}")
    if int(num_runs) < 1:
        raise ValueError(f"num_runs must be >= 1, got {num_runs}")
    schedule = optimizer.schedule
    ts_np = check_times(ts)
    check_learning_rate(schedule, probe_times(ts_np).astype(problem.data.A.dtype),
                        time_name="epoch")
    steps = np.rint(ts_np * n / batch).astype(np.int64)
    x0 = problem.data.x0
    keys = jax.random.split(key, num_runs)
    perms = jnp.broadcast_to(jnp.arange(n), (num_runs, n))
    state = (jnp.broadcast_to(x0, (num_runs, *x0.shape)), keys, perms,
             jnp.full((num_runs,), n, jnp.int32))  # pos = n: the first batch draws a permutation

    def advance(state, k0, k1):
        return _advance(problem, schedule, batch, bool(reshuffle), state, k0, k1)

    loss, risk = drive(advance, lambda s: _record(problem, s), state, steps, ts_np, progress,
                       "sgd")
    return finish(problem, jnp.asarray(ts_np), loss, risk, blowup)


def finish(problem: FiniteProblem, ts, loss, risk, blowup) -> Runs:
    r"""[`Runs`][] from recorded (R, T) losses and risks: a run diverges once its loss exceeds
    `blowup`$\,\times(1 + L(x_0))$ or is not finite; its values from then on are NaN."""
    x0 = problem.data.x0
    loss0 = 0.5 * jnp.sum((problem.data.A @ x0 - problem.data.b) ** 2)
    mask, diverged, when = after_first(ts, ~(loss < blowup * (1 + loss0)))
    return Runs(ts=ts, loss=nan_where(mask, loss), risk=nan_where(mask, risk),
                diverged=diverged, divergence_time=when)
