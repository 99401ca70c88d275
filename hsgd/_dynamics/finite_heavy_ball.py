r"""The exact discrete dynamics of mini-batch SGD with heavy-ball momentum on finite least
squares (SPEC §3, 2206.01029).

SGD+M with a batch $\mathcal B_k$ of $\beta$ rows drawn *without replacement*, batch fraction
$\zeta = \beta/n$, stepsize $\gamma_k$, momentum $\Delta\in[0, 1)$ and ridge $\delta$:

$$x_{k+1} = x_k - \gamma_k\Big(\sum_{i\in\mathcal B_k}a_i(a_i^\top x_k - b_i) + \zeta\delta x_k
\Big) + \Delta(x_k - x_{k-1}),\qquad x_{-1} = x_0.$$

**How the ridge enters.** The batch gradient is an unbiased estimate of $\zeta$ times the
gradient of the regularised objective $L(x) + \frac\delta2\|x\|^2$ (SPEC §2), so each step
carries the ridge term $\gamma_k\zeta\delta x_k$ — the same per-step term as the plain
finite-data simulator (`hsgd._simulate.finite_sgd`). Its mean is
$\zeta(A^\top A + \delta)(x - x_{\rm opt})$
with $x_{\rm opt}$ the ridge solution, and the noise is the batch noise of the unregularised
loss alone.

**Per mode.** With $e_j = v_j^\top(x - x_{\rm opt})$, $\mu_j = \lambda_j + \delta$ and
$c_j = 1 + \Delta - \gamma_k\zeta\mu_j$, the mean obeys the deterministic heavy-ball recursion
$m_{k+1} = c_j m_k - \Delta m_{k-1}$ and the second moments of the fluctuation around it,
$(V_k, C_k, Q_k) = (\operatorname{Var}e_k, \operatorname{Cov}(e_k, e_{k-1}),
\operatorname{Var}e_{k-1})$, obey SPEC §3's recursion

$$V_{k+1} = c_j^2V_k - 2c_j\Delta C_k + \Delta^2Q_k
+ \gamma_k^2\zeta(1-\zeta)\lambda_j\frac{2\psi_k}{n},\quad C_{k+1} = c_jV_k - \Delta C_k,
\quad Q_{k+1} = V_k,$$

started at zero. ($E e^2 = m^2 + V$ obeys the same recursion as $V$ plus the noise term, which
is SPEC §3 verbatim; splitting off the mean is what gives the population risk.) The noise
covariance of a without-replacement batch is $\zeta(1-\zeta)\sum_i a_ia_i^\top r_i^2$ up to
$O(1/n)$, homogenized to $\zeta(1-\zeta)\frac{2L}{n}A^\top A$. The training loss and the
population risk are

$$\psi_k = L(x_{\rm opt} + m_k) + \tfrac12\sum_j\nu_j\lambda_jV_k^{(j)},\qquad
R_k = R(x_{\rm opt} + m_k) + \tfrac12\sum_j\nu_j(S_v)_{jj}V_k^{(j)}$$

(modes are uncorrelated given $\psi$, SPEC §2), with $L(x_{\rm opt} + m)$ and
$R(x_{\rm opt} + m)$ from [`FiniteProblem.loss_at`][] and [`FiniteProblem.risk_at`][].
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._blowup import after_first, nan_where
from .._checks import (
    LEARNING_RATE_FIX,
    LEARNING_RATE_MESSAGE,
    check,
    check_iterations,
    check_learning_rate,
    is_traced,
    plain_errors,
    probe_times,
)
from .._optimizer import HeavyBall
from .._problem import FiniteProblem
from .._registry import register
from .._results import Solution
from .momentum_scan import momentum_scan

# ---------------------------------------------------------------------- the recursion


@register("ode", FiniteProblem, HeavyBall)
def ode(problem: FiniteProblem, optimizer: HeavyBall, iterations, *,
        blowup: float = 1e6) -> Solution:
    r"""The cell [`FiniteProblem`][] × [`HeavyBall`][] of [`hsgd.ode`][]: the per-mode
    second-moment recursion of mini-batch SGD with heavy-ball momentum (SPEC §3), as one
    `lax.scan` over iterations — `jit`, `vmap` and `grad` go through it.

    **Arguments:**

    - `problem`: a [`FiniteProblem`][] (any constructor; no data needed).
    - `optimizer`: a [`HeavyBall`][]: the stepsize $\gamma_k$ as a function of the
      **iteration** $k$, `momentum` $\Delta\in[0, 1)$, and `batch` $\beta\in[1, n]$ or
      `batch_fraction` $\zeta = \beta/n\in(0, 1]$ (continuous, e.g. for `vmap` over $\zeta$).
      Steps are $x_{k+1} = x_k - \gamma_k\big(\sum_{i\in\mathcal B_k}\nabla f_i(x_k) +
      \zeta\delta x_k\big) + \Delta(x_k - x_{k-1})$ — the batch gradient is *summed*.
    - `iterations`: non-decreasing integers $k$ to record (the scan runs to the last one).
    - `blowup`: divergence is reported once $\psi_k$ exceeds `blowup`$\,\times(1 + \psi_0)$.

    $\gamma_k$ must be finite and $\ge 0$ (0 allowed): checked eagerly on `iterations` and
    1025 points of $[0, k_{\rm final}]$ when the schedule is concrete, else on every iteration
    inside the solve.

    **Returns:** a [`Solution`][] with `ts` the iterations (see its heavy-ball fields). Cost
    $O(J)$ per iteration for $J$ modes (plus $O(J^2)$ per recorded iteration for a non-diagonal
    population risk).

    With $\beta = 1$, $\Delta = 0$ this is Euler's method for the finite-data ODE of SPEC §2 at
    $t = k/n$ (difference $O(\gamma\lambda/n)$); with $\zeta = 1$ it is full-batch heavy ball,
    noiseless.

    ```python
    prob = hsgd.FiniteProblem.gaussian(3000, 1500, noise_std=0.3)
    sol = hsgd.ode(prob, hsgd.HeavyBall(0.02, momentum=0.9, batch=300),
                   jnp.arange(0, 2001, 100))
    ```
    """
    schedule = optimizer.schedule
    zeta = optimizer.fraction(problem.n)
    momentum = optimizer.momentum
    ks = check_iterations(iterations)
    dtype = problem.eigenvalues.dtype
    num_steps = int(ks[-1])
    unique, position = np.unique(ks, return_inverse=True)
    slot = np.full(num_steps + 1, unique.size, dtype=np.int32)  # unique.size: not recorded
    slot[unique] = np.arange(unique.size)
    if not is_traced(schedule):
        check_learning_rate(schedule, probe_times(ks).astype(dtype), time_name="k")
    with plain_errors():  # a traced bad value: the message first, not equinox's stack
        return _recursion(problem, schedule, jnp.asarray(momentum, dtype),
                          jnp.asarray(zeta, dtype), jnp.asarray(ks), jnp.asarray(slot),
                          jnp.asarray(position), unique.size, float(blowup))


def heavy_ball_coefficient(problem: FiniteProblem, gamma, momentum, batch_fraction):
    r"""$c_j = 1 + \Delta - \gamma\zeta\mu_j$ per mode ($\mu_j = \lambda_j + \delta$): the
    mean obeys $m_{k+1} = c_jm_k - \Delta m_{k-1}$."""
    return 1.0 + momentum - gamma * batch_fraction * (problem.eigenvalues + problem.ridge)


@eqx.filter_jit
def _recursion(problem, schedule, momentum, zeta, ks, slot, position, num_saved, blowup):
    momentum = eqx.error_if(momentum, ~((momentum >= 0) & (momentum < 1)),
                            "momentum must be in [0, 1)")
    zeta = eqx.error_if(zeta, ~((zeta > 0) & (zeta <= 1)), "batch_fraction must be in (0, 1]")
    lam = problem.eigenvalues
    dtype = lam.dtype
    e0 = problem.init_error
    # With a diagonal (or no) population Hessian the risk costs O(J): it is an output at every
    # iteration. A full J x J Hessian costs O(J^2) per evaluation, so (m, V) are written to a
    # buffer at the recorded iterations only (slot = num_saved, past the buffer, elsewhere).
    per_iteration = problem.risk_hessian is None or problem.risk_hessian.ndim == 1
    saved0 = None if per_iteration else jnp.zeros((num_saved, 2, lam.shape[0]), dtype)
    # psi = L_min - delta sum nu c m + 1/2 sum nu lam (m^2 + V) and, with a diagonal S_v,
    # R = R_min + sum nu g m + 1/2 sum nu S (m^2 + V): two dot products for both.
    rows_q = [0.5 * problem.counts * lam]
    rows_m = [-problem.ridge * problem.counts * problem.x_opt_coords]
    consts = [problem.loss_min]
    if per_iteration and problem.has_population:
        rows_q.append(0.5 * problem.counts * problem.risk_hessian)
        rows_m.append(problem.counts * problem.risk_gradient)
        consts.append(problem.risk_min)
    coef = (lam + problem.ridge, 2.0 * lam / problem.n, jnp.stack(rows_q), jnp.stack(rows_m),
            jnp.stack([jnp.asarray(c, dtype) for c in consts]))
    psi0 = problem.loss_at(e0)
    bound = blowup * (1.0 + jnp.abs(psi0))
    # The schedule on every iteration at once, outside the scan: vectorised forward, and in
    # reverse mode one vectorised pullback instead of one per iteration.
    num_steps = slot.shape[0]
    gammas = jax.vmap(schedule)(jnp.arange(num_steps).astype(dtype)).astype(dtype)
    gammas = check(gammas, ~(jnp.isfinite(gammas) & (gammas >= 0)), LEARNING_RATE_MESSAGE,
                   fix=LEARNING_RATE_FIX)
    # c = 1 + Delta - (gamma zeta) mu and the noise gamma^2 zeta (1 - zeta) (2 lam / n) psi;
    # momentum_scan's hand-written adjoint makes a gradient cost ~4 forward solves.
    values, saved = momentum_scan(coef, momentum, e0, gammas * zeta,
                                  gammas**2 * zeta * (1.0 - zeta), slot, saved0)
    path = values[:, 0]
    if not per_iteration:
        risk = jax.vmap(lambda mv: _risk(problem, mv[0], mv[1]))(saved[position])
    elif problem.has_population:
        risk = values[ks, 1]
    else:
        risk = jnp.full(ks.shape, jnp.nan, dtype)
    loss = path[ks]
    bad_path = ~(path < bound)
    # A recorded iteration is bad if the path went bad at or before it.
    bad = jnp.cumsum(bad_path)[ks] > 0
    mask, diverged, when = after_first(ks.astype(dtype), bad)
    return Solution(ts=ks.astype(dtype), iterations=ks, epochs=ks.astype(dtype) * zeta,
                    loss=nan_where(mask, loss), risk=nan_where(mask, risk),
                    gamma=gammas[ks], batch_fraction=zeta, momentum=momentum,
                    loss_path=jnp.where(jnp.cumsum(bad_path) > 0, jnp.nan, path),
                    diverged=diverged, divergence_time=when, num_steps=num_steps)


def _risk(problem: FiniteProblem, mean, var):
    if not problem.has_population:
        return jnp.full((), jnp.nan, mean.dtype)
    return problem.risk_at(mean) + 0.5 * jnp.sum(problem.counts * problem.risk_diagonal * var)


def momentum_recursion(problem: FiniteProblem, schedule, iterations, *, batch=None,
                       batch_fraction=None, momentum=0.0, blowup: float = 1e6) -> Solution:
    """The spelling before optimizers were values, kept as an alias: exactly
    `hsgd.ode(problem, HeavyBall(schedule, momentum, batch, batch_fraction), iterations,
    blowup=blowup)`."""
    return ode(problem, HeavyBall(schedule, momentum, batch=batch,
                                  batch_fraction=batch_fraction), iterations, blowup=blowup)
