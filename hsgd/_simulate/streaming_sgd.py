r"""The ground truth: plain one-pass SGD on Gaussian data in the eigenbasis of $K$ (SPEC §1).

$$X_{k+1} = X_k - \frac{\gamma(k/d)}{d}\cdot\frac1\beta\sum_{b=1}^{\beta}
a_b \otimes \nabla_x f(a_b^\top X_k;\ a_b^\top X^*,\ \varepsilon_b),\qquad
a_b \sim N(0, \operatorname{diag}\lambda),$$

with fresh samples every step, run for $k = \operatorname{round}(t d)$ iterations to reach time
$t$. At each requested time we record $B = W^\top K W$ (exact, from the iterate),
$\|X - X^*\|^2$ and the population risk $h(B)$ (not a noisy sample loss), computed
independently of the ODE's quadrature rule (`hsgd._risk`): the loss's closed form when it has
one, else a Monte-Carlo estimate on fresh Gaussian samples whose standard error is recorded
too (`risk_se`).
"""

import itertools
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._checks import check_learning_rate, check_times, probe_times
from .._custom_types import PRNGKey
from .._optimizer import SGD
from .._problem import Problem
from .._registry import register
from .._results import Runs
from .._risk import DEFAULT_RISK_SAMPLES, observe, risks_of
from .common import drive


def batch_gradient(problem: Problem, batch: int, X, key):
    r"""One mini-batch: $\beta$ fresh samples $a_b\sim N(0,\operatorname{diag}\lambda)$ (rows of
    `a`) and the per-sample gradients $g_b = \nabla_x f(a_b^\top X; a_b^\top X^*,
    \varepsilon_b)$ (rows of `g`), the noise drawn by the loss's noise law."""
    loss = problem.loss
    lam = problem.spectrum.eigenvalues
    d = lam.shape[0]
    k_data, k_noise = jax.random.split(key)
    a = jax.random.normal(k_data, (batch, d), X.dtype) * jnp.sqrt(lam)
    r_x = a @ X
    r_s = a @ problem.X_star
    eps = jax.vmap(loss.noise.sample)(jax.random.split(k_noise, batch), r_s)
    return a, jax.vmap(loss.gradient)(r_x, r_s, eps)


def _sgd_step(problem: Problem, schedule, batch: int, X, key, k):
    a, g = batch_gradient(problem, batch, X, key)
    d = a.shape[1]
    gamma = schedule(k.astype(X.dtype) / d).astype(X.dtype)
    return X - (gamma / (d * batch)) * (a.T @ g)


@eqx.filter_jit
def _advance(step, problem, schedule, batch, X, keys, k0, k1):
    """Iterations `k0 .. k1 - 1` of `step(problem, schedule, batch, X, key, k)` (the update
    rule, static) on every run."""
    def one_run(X, key):
        def body(k, carry):
            X, key = carry
            key, sub = jax.random.split(key)
            return step(problem, schedule, batch, X, sub, k), key

        return jax.lax.fori_loop(k0, k1, body, (X, key))

    return jax.vmap(one_run)(X, keys)


@eqx.filter_jit
def _record(problem, X, keys, num_samples):
    B, dist = jax.vmap(lambda x: observe(problem, x))(X)
    risk, se = risks_of(problem.loss, B, keys, num_samples)
    return risk, B, dist, se


@register("simulate", Problem, SGD)
def simulate(problem: Problem, optimizer: SGD, ts, key: PRNGKey, *, num_runs: int = 8,
             blowup: float = 1e6, progress: bool | Callable[[float, float], None] = False,
             risk_samples: int = DEFAULT_RISK_SAMPLES) -> Runs:
    r"""Run `num_runs` independent one-pass SGD runs (vmapped) and record them at times `ts`
    (the cell [`Problem`][] × [`SGD`][] of [`hsgd.simulate`][]).

    **Arguments:**

    - `problem`: a [`Problem`][] with an instance (`X_star`, `X0`), e.g. from
      [`Problem.random`][hsgd.Problem.random] or [`Problem.from_arrays`][hsgd.Problem.from_arrays].
    - `optimizer`: [`SGD`][]: its schedule $\gamma(t)$ at time $t = k/d$ and its mini-batch
      size $\beta$ (an integer; gradients are averaged).
    - `ts`: increasing record times; iteration $\operatorname{round}(t d)$ is recorded.
    - `key`: a JAX PRNG key; `num_runs`: independent runs (seeds).
    - `blowup`: a run counts as diverged once $\max|B|$ exceeds `blowup`$\times(1+\max|B(0)|)$
      or its risk is not finite.
    - `progress`: `True` prints a line per ~10% of the horizon to stderr; a callable gets
      `(t_done, t_final)` after every recorded time.
    - `risk_samples`: Monte-Carlo samples per recorded risk for a loss without an exact risk
      (`hsgd._risk`; default $2^{16}$); unused otherwise.

    The learning rate may be 0 (e.g. annealed to zero) but must be finite and $\ge 0$; it is
    checked at `ts` and on 1025 points of $[0, t_{\rm final}]$.

    **Returns:** [`Runs`][]: `risk` is $h(B)$ of each run's iterate, independent of the
    ODE's quadrature rule, with its standard error `risk_se`; `B`, `distance`.

    Costs $O(\beta d m)$ per step and $t d$ steps per unit time: this is the expensive ground
    truth the ODE replaces.
    """
    return run_streaming(_sgd_step, problem, optimizer, ts, key, num_runs=num_runs,
                         blowup=blowup, progress=progress, risk_samples=risk_samples,
                         label="sgd")


def run_streaming(step, problem: Problem, optimizer, ts, key: PRNGKey, *, num_runs: int,
                  blowup: float, progress, risk_samples: int, label: str, carry=None,
                  gamma_of=None) -> Runs:
    r"""The streaming simulators' common part: checks, `num_runs` vmapped runs of the update
    rule `step(problem, schedule, batch, X, key, k)` from `problem.X0` (fresh samples from the
    run's key stream), recorded at iterations $\operatorname{round}(td)$ of `ts` (B, distance
    and the risk by `risks_of`), collected by `Runs.from_paths`.

    With `carry` (a pytree: per-run state besides $X$, e.g. an accumulator, the same initial
    value for every run) the rule is `step(problem, optimizer, batch, (X, carry), key, k) ->
    (X, carry)` (it gets the optimizer itself), and `gamma_of(problem, optimizer, X, carry, k)`,
    when given, is recorded as the stepsize path `Runs.gamma`."""
    if problem.X_star is None:
        raise ValueError("simulate needs a problem with an instance (X_star, X0): build it with "
                         "Problem.random or Problem.from_arrays, not Problem.isotropic/coarsen")
    batch = int(optimizer.batch)
    if batch != optimizer.batch:
        raise ValueError(f"the simulator needs an integer batch, got batch={optimizer.batch!r}")
    if int(num_runs) < 1:
        raise ValueError(f"num_runs must be >= 1, got {num_runs}")
    schedule = optimizer.schedule
    ts_np = check_times(ts)
    check_learning_rate(schedule, probe_times(ts_np).astype(problem.X0.dtype))
    steps = np.rint(ts_np * problem.d).astype(np.int64)
    X = jnp.broadcast_to(problem.X0, (num_runs, *problem.X0.shape))
    params = schedule
    if carry is not None:
        params = optimizer
        X = (X, jax.tree_util.tree_map(
            lambda c: jnp.broadcast_to(jnp.asarray(c, problem.X0.dtype),
                                       (num_runs, *jnp.shape(c))), carry))
    keys = jax.random.split(key, num_runs)
    # The risk estimates draw from their own stream: one key per run and recorded time.
    risk_keys = jax.random.split(jax.random.fold_in(key, 0x7269736B), num_runs)
    record_index = itertools.count()

    def advance(state, k0, k1):
        return _advance(step, problem, params, batch, *state, k0, k1)

    def record(state):
        i = next(record_index)
        step_keys = jax.vmap(lambda k: jax.random.fold_in(k, i))(risk_keys)
        X = state[0] if carry is None else state[0][0]
        out = _record(problem, X, step_keys, int(risk_samples))
        if gamma_of is not None:
            out = (*out, _gamma_path(gamma_of, problem, params, *state[0],
                                     jnp.asarray(int(steps[i]))))
        return out

    out = drive(advance, record, (X, keys), steps, ts_np, progress, label)
    risk, B, dist, se = out[:4]
    return Runs.from_paths(jnp.asarray(ts_np), risk, B, dist,
                           bound=blowup * (1 + jnp.max(jnp.abs(problem.B0()))), risk_se=se,
                           gamma=out[4] if gamma_of is not None else None)


@eqx.filter_jit
def _gamma_path(gamma_of, problem, optimizer, X, carry, k):
    return jax.vmap(lambda x, c: gamma_of(problem, optimizer, x, c, k))(X, carry)
