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
import sys
import time
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float

from ._blowup import after_first, nan_where
from ._checks import check_learning_rate, probe_times
from ._custom_types import PRNGKey, Times
from ._finite.problem import FiniteProblem
from ._problem import Problem
from ._risk import DEFAULT_RISK_SAMPLES, risk_estimate
from ._schedule import as_schedule


class SGDResult(eqx.Module):
    r"""Output of [`simulate`][]: arrays over runs `R` and times `T`.

    `risk` $(R, T)$ the population risk $h(B)$ of each run (see `hsgd._risk`: exact where the
    loss has a closed form, else Monte Carlo), `risk_se` $(R, T)$ the standard error of each
    risk value (0 where exact), `B` $(R, T, p, p)$, `distance` $(R, T)$ (NaN when
    $m \ne m^*$), `diverged` $(R,)$ and `divergence_time` $(R,)$ (inf when a run did not
    diverge).
    """

    ts: Times
    risk: Float[Array, "R T"]
    B: Float[Array, "R T p p"]
    distance: Float[Array, "R T"]
    diverged: Bool[Array, " R"]
    divergence_time: Float[Array, " R"]
    risk_se: Float[Array, "R T"]

    @classmethod
    def from_paths(cls, ts, risk, B, distance, bound, failed=None,
                   risk_se=None) -> "SGDResult":
        r"""Collect recorded paths: a path has diverged from the first time its risk is not
        finite, $\max|B|$ reaches `bound` or `failed` (R, T) is set; from then on its risk
        (and `risk_se`, default 0) is NaN."""
        bad = ~jnp.isfinite(risk) | ~(jnp.max(jnp.abs(B), axis=(-1, -2)) < bound)
        if failed is not None:
            bad = bad | failed
        bad, diverged, divergence_time = after_first(ts, bad)
        risk_se = jnp.zeros_like(risk) if risk_se is None else risk_se
        return cls(ts=ts, risk=nan_where(bad, risk), B=B, distance=distance,
                   diverged=diverged, divergence_time=divergence_time,
                   risk_se=nan_where(bad, risk_se))

    def mean(self) -> Float[Array, " T"]:
        """Mean risk over runs."""
        return jnp.mean(self.risk, axis=0)

    def std(self) -> Float[Array, " T"]:
        """Standard deviation of the risk over runs."""
        return jnp.std(self.risk, axis=0, ddof=1 if self.risk.shape[0] > 1 else 0)

    def estimate_se(self) -> Float[Array, " T"]:
        r"""The part of the standard error of `mean()` due to the risk estimates alone,
        $\sqrt{\sum_r \mathrm{SE}_r^2}/R$ (0 when the loss's risk is exact). The run-to-run
        spread `std()` already contains it."""
        return jnp.sqrt(jnp.sum(self.risk_se**2, axis=0)) / self.risk_se.shape[0]


def _sgd_step(problem: Problem, schedule, batch: int, X, key, k):
    loss = problem.loss
    lam = problem.spectrum.eigenvalues
    d = lam.shape[0]
    k_data, k_noise = jax.random.split(key)
    a = jax.random.normal(k_data, (batch, d), X.dtype) * jnp.sqrt(lam)
    r_x = a @ X
    r_s = a @ problem.X_star
    eps = jax.vmap(loss.noise.sample)(jax.random.split(k_noise, batch), r_s)
    g = jax.vmap(loss.gradient)(r_x, r_s, eps)
    gamma = schedule(k.astype(X.dtype) / d).astype(X.dtype)
    return X - (gamma / (d * batch)) * (a.T @ g)


@eqx.filter_jit
def _advance(problem, schedule, batch, X, keys, k0, k1):
    def one_run(X, key):
        def body(k, carry):
            X, key = carry
            key, sub = jax.random.split(key)
            return _sgd_step(problem, schedule, batch, X, sub, k), key

        return jax.lax.fori_loop(k0, k1, body, (X, key))

    return jax.vmap(one_run)(X, keys)


def observe(problem: Problem, X):
    r"""$B = W^\top K W$ and $\|X - X^*\|^2$ (NaN when $m \ne m^*$) of one iterate $X$, exact
    — what SGD and homogenized-SGD paths record (their risk comes from $B$ by
    [`risk_estimate`][])."""
    W = jnp.concatenate([X, problem.X_star], axis=1)
    B = (W.T * problem.spectrum.eigenvalues.astype(X.dtype)) @ W
    dist = (jnp.sum((X - problem.X_star) ** 2) if problem.loss.m == problem.loss.m_star
            else jnp.full((), jnp.nan, X.dtype))
    return B, dist


def risks_of(loss, B, keys, num_samples: int):
    r"""`risk_estimate` over leading axes: `B` $(\dots, p, p)$ and one key per matrix (`keys`
    of shape `B.shape[:-2]`); returns (risk, SE), each of shape `B.shape[:-2]`."""
    flat_B = B.reshape((-1, *B.shape[-2:]))
    flat_k = keys.reshape((flat_B.shape[0], *keys.shape[B.ndim - 2:]))
    risk, se = jax.vmap(lambda b, k: risk_estimate(loss, b, k, num_samples))(flat_B, flat_k)
    return risk.reshape(B.shape[:-2]), se.reshape(B.shape[:-2])


@eqx.filter_jit
def _record(problem, X, keys, num_samples):
    B, dist = jax.vmap(lambda x: observe(problem, x))(X)
    risk, se = risks_of(problem.loss, B, keys, num_samples)
    return risk, B, dist, se


def simulate(problem: Problem, schedule, ts, key: PRNGKey, *, num_runs: int = 8,
             batch: int = 1, blowup: float = 1e6,
             progress: bool | Callable[[float, float], None] = False,
             risk_samples: int = DEFAULT_RISK_SAMPLES, **finite_options) -> SGDResult:
    r"""Run `num_runs` independent one-pass SGD runs (vmapped) and record them at times `ts`.

    Given a [`FiniteProblem`][], runs multi-pass SGD over its rows instead (epochs $t = k\beta/n$,
    option `reshuffle`) and returns a [`FiniteSGDResult`][] (see `hsgd._finite.simulate`).

    **Arguments:**

    - `problem`: a [`Problem`][] with an instance (`X_star`, `X0`), e.g. from
      [`Problem.random`][] or [`Problem.from_arrays`][].
    - `schedule`: learning rate $\gamma(t)$ at time $t = k/d$ (float, schedule or callable).
    - `ts`: increasing record times; iteration $\operatorname{round}(t d)$ is recorded.
    - `key`: a JAX PRNG key; `num_runs`: independent runs (seeds).
    - `batch`: mini-batch size $\beta$ (gradients are averaged).
    - `blowup`: a run counts as diverged once $\max|B|$ exceeds `blowup`$\times(1+\max|B(0)|)$
      or its risk is not finite.
    - `progress`: `True` prints a line per ~10% of the horizon to stderr; a callable gets
      `(t_done, t_final)` after every recorded time.
    - `risk_samples`: Monte-Carlo samples per recorded risk for a loss without an exact risk
      (`hsgd._risk`; default $2^{16}$); unused otherwise.

    The learning rate may be 0 (e.g. annealed to zero) but must be finite and $\ge 0$; it is
    checked at `ts` and on 1025 points of $[0, t_{\rm final}]$.

    **Returns:** an [`SGDResult`][]: `risk` is $h(B)$ of each run's iterate, independent of the
    ODE's quadrature rule, with its standard error `risk_se`.

    Costs $O(\beta d m)$ per step and $t d$ steps per unit time: this is the expensive ground
    truth the ODE replaces.
    """
    if isinstance(problem, FiniteProblem):
        return finite_simulate(problem, schedule, ts, key, num_runs=num_runs, batch=batch,
                               blowup=blowup, progress=progress, **finite_options)
    if finite_options:
        raise ValueError(f"options {sorted(finite_options)} apply to finite-data problems only")
    if problem.X_star is None:
        raise ValueError("simulate needs a problem with an instance (X_star, X0): build it with "
                         "Problem.random or Problem.from_arrays, not Problem.isotropic/coarsen")
    batch = int(batch)
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    if int(num_runs) < 1:
        raise ValueError(f"num_runs must be >= 1, got {num_runs}")
    schedule = as_schedule(schedule)
    ts_np = check_times(ts)
    check_learning_rate(schedule, probe_times(ts_np).astype(problem.X0.dtype))
    steps = np.rint(ts_np * problem.d).astype(np.int64)
    X = jnp.broadcast_to(problem.X0, (num_runs, *problem.X0.shape))
    keys = jax.random.split(key, num_runs)
    # The risk estimates draw from their own stream: one key per run and recorded time.
    risk_keys = jax.random.split(jax.random.fold_in(key, 0x7269736B), num_runs)
    record_index = itertools.count()

    def advance(state, k0, k1):
        return _advance(problem, schedule, batch, *state, k0, k1)

    def record(state):
        i = next(record_index)
        step_keys = jax.vmap(lambda k: jax.random.fold_in(k, i))(risk_keys)
        return _record(problem, state[0], step_keys, int(risk_samples))

    risk, B, dist, se = drive(advance, record, (X, keys), steps, ts_np, progress, "sgd")
    return SGDResult.from_paths(jnp.asarray(ts_np), risk, B, dist,
                                bound=blowup * (1 + jnp.max(jnp.abs(problem.B0()))),
                                risk_se=se)


def finite_simulate(*args, **kwargs):
    from ._finite import simulate as _simulate  # the finite simulator builds on this module

    return _simulate(*args, **kwargs)


def check_times(ts) -> np.ndarray:
    """`ts` as a float64 NumPy array, checked to be 1-D, non-empty, >= 0 and non-decreasing."""
    ts_np = np.asarray(ts, dtype=float)
    if ts_np.ndim != 1 or ts_np.size == 0 or np.any(ts_np < 0) or np.any(np.diff(ts_np) < 0):
        raise ValueError(f"ts must be a non-empty, non-decreasing 1-D array of times >= 0, "
                         f"got {ts_np}")
    return ts_np


def drive(advance, record, state, steps, ts_np, progress, label: str):
    r"""The loop every simulator shares: advance `state` from iteration to iteration
    (`advance(state, k0, k1)`, jitted, traced bounds so it compiles once), `record(state)` at
    each of `steps`, report progress; returns the records stacked along a time axis 1."""
    records = []
    k = 0
    start, last_report = time.perf_counter(), -1
    for i, k_next in enumerate(steps):
        if k_next > k:
            state = advance(state, jnp.asarray(k), jnp.asarray(int(k_next)))
            k = int(k_next)
        records.append(record(state))
        if callable(progress):
            progress(float(ts_np[i]), float(ts_np[-1]))
        elif progress:
            decile = int(10 * (i + 1) / len(steps))
            if decile > last_report:
                last_report = decile
                print(f"  {label}: t = {ts_np[i]:.4g} / {ts_np[-1]:.4g} "
                      f"({time.perf_counter() - start:.1f} s)", file=sys.stderr, flush=True)
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs, axis=1), *records)
