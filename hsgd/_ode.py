r"""The deterministic equivalent of one-pass SGD (SPEC §1): a per-mode ODE integrated by diffrax.

Per eigen-direction $j$ of $K$ the $p\times p$ matrix $V_j$ solves

$$\frac{dV_j}{dt} = -\gamma_t\lambda_j\,(G V_j + V_j G^\top) + \frac{\gamma_t^2\lambda_j}{\beta}E_m,
\qquad B(t) = \sum_j \omega_j\lambda_j V_j(t),$$

with $G = \begin{pmatrix}J(B)\\0\end{pmatrix}$, $E_m = \operatorname{blockdiag}(I(B), 0)$, time
$t = k/d$ ($k$ SGD iterations, step $\gamma_k/d$, mini-batch $\beta$). The risk is $h(B(t))$, any
statistic $g(W^\top q(K) W)$ is $g(\sum_j \omega_j q(\lambda_j) V_j(t))$, and the critical
learning rate is
$\gamma_{\rm crit} = 2\beta A(B)/((\operatorname{tr}K/d)\, \operatorname{tr} I(B))$.
"""

from collections.abc import Callable

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float

from . import _finite as finite
from ._blowup import after_first, nan_where
from ._custom_types import Times
from ._finite import FiniteProblem
from ._loss.least_squares import LeastSquares
from ._problem import Problem
from ._schedule import as_schedule


class Statistic(eqx.Module):
    r"""A statistic $\varphi(X) = g(W^\top q(K) W)$ with deterministic equivalent
    $g\big(\sum_j \omega_j q(\lambda_j) V_j(t)\big)$ (SPEC §1).

    **Arguments:**

    - `g`: function of the $p\times p$ matrix, returning a scalar (or any array).
    - `q`: function of the eigenvalue (vectorised), default $q \equiv 1$.

    Example — the squared norm of the student, $\|X\|^2$ for $m = 1$:
    `Statistic(lambda S: S[0, 0])`; the cosine with the target in the $K$-geometry is
    available directly from `Solution.B`.
    """

    g: Callable = eqx.field(static=True)
    q: Callable = eqx.field(static=True, default=jnp.ones_like)

    def __call__(self, eigenvalues, weights, V):
        return self.g(jnp.tensordot(weights * self.q(eigenvalues), V, axes=1))


class Solution(eqx.Module):
    r"""The output of [`ode`][] on the requested times `ts`.

    - `ts` $(T,)$; `risk` $(T,)$ = $h(B(t))$; `B` $(T, p, p)$ = $W^\top K W$;
    - `distance` $(T,)$: $\|X - X^*\|^2$ (when $m = m^*$, else NaN);
    - `gamma` $(T,)$: the schedule; `gamma_crit` $(T,)$: the critical learning rate (NaN when
      $m \ne m^*$);
    - `statistics`: dict name → array $(T, \dots)$ of the requested [`Statistic`][]s;
    - `diverged`: whether the solution blew up (risk non-finite or $\max|B|$ past the blow-up
      bound) before `ts[-1]`; `divergence_time`: the first saved time at which it had (inf if
      it did not); values after divergence are NaN;
    - `num_steps`: accepted solver steps.
    """

    ts: Times
    risk: Float[Array, " T"]
    B: Float[Array, "T p p"]
    distance: Float[Array, " T"]
    gamma: Float[Array, " T"]
    gamma_crit: Float[Array, " T"]
    statistics: dict
    diverged: Bool[Array, ""]
    divergence_time: Float[Array, ""]
    num_steps: Array

    def cosine(self) -> Float[Array, " T"]:
        r"""The cosine with the target in the $K$-geometry ($m = m^* = 1$):
        $\langle X, X^*\rangle_K / (\|X\|_K\|X^*\|_K) = B_{12}/\sqrt{B_{11}B_{22}}$."""
        return self.B[:, 0, 1] / jnp.sqrt(self.B[:, 0, 0] * self.B[:, 1, 1])


def _identity(lam):
    return lam


def drift(problem: Problem, V, gamma, batch):
    r"""The right-hand side $dV_j/dt$ for all modes (exposed for solvers and tests)."""
    lam = problem.spectrum.eigenvalues
    loss = problem.loss
    m, p = loss.m, loss.p
    B = problem.spectrum.weighted_sum(V, q=_identity)
    mom = loss.moments(B)
    G = jnp.zeros((p, p), V.dtype).at[:m, :].set(mom.J)
    E = jnp.zeros((p, p), V.dtype).at[:m, :m].set(mom.I)
    GV = jnp.einsum("ab,jbc->jac", G, V)
    lin = GV + jnp.swapaxes(GV, -1, -2)
    return -gamma * lam[:, None, None] * lin + (gamma**2 / batch) * lam[:, None, None] * E


def _observe(problem: Problem, V, gamma, batch, statistics):
    return _finish(problem, _snapshot(problem, V, statistics), gamma, batch)


def _snapshot(problem: Problem, V, statistics):
    """The cheap part of an observation (linear in V): B, the unweighted sum S (for the
    distance) and the statistics. `_solve` saves only this at the output times, so the
    quadrature behind the moments runs once per saved time after the solve instead of inside
    the solver's save loop (which, under `vmap`, runs for every point whenever any point of the
    batch crosses an output time)."""
    lam, w = problem.spectrum.eigenvalues, problem.spectrum.weights
    snap = dict(B=problem.spectrum.weighted_sum(V, q=_identity),
                statistics={k: s(lam, w, V) for k, s in statistics.items()})
    if problem.loss.m == problem.loss.m_star:
        snap["S"] = problem.spectrum.weighted_sum(V)
    return snap


def _finish(problem: Problem, snap, gamma, batch):
    """The observation from a snapshot: risk, distance and critical learning rate."""
    B = snap["B"]
    loss = problem.loss
    mom = loss.moments(B)
    m = loss.m
    if loss.m == loss.m_star:
        P = jnp.concatenate([jnp.eye(m), -jnp.eye(m)], axis=1).astype(B.dtype)
        S = snap["S"]
        distance = jnp.trace(P @ S @ P.T)
        gamma_crit = 2 * batch * mom.A / (problem.spectrum.mean() * jnp.trace(mom.I))
    else:
        distance = gamma_crit = jnp.full((), jnp.nan, B.dtype)
    return dict(risk=mom.h, B=B, distance=distance, gamma=gamma, gamma_crit=gamma_crit,
                statistics=snap["statistics"])


def least_squares_as_finite(problem: Problem, batch) -> FiniteProblem:
    r"""One-pass SGD on least squares as the finite-data variance ODE (SPEC §1 → §2).

    For `LeastSquares` ($J(B) = (1, -1)$, $I(B) = 2h$) the ODE above closes on the per-mode
    error second moments $u_j = (V_j)_{11} - 2(V_j)_{12} + (V_j)_{22}$:

    $$u_j' = -2\gamma_t\lambda_ju_j + \frac{\gamma_t^2\lambda_j}{\beta}\Big(\sigma^2
    + \sum_k\omega_k\lambda_ku_k\Big),\qquad h = \tfrac12\Big(\sigma^2 + \sum_k\omega_k\lambda_k
    u_k\Big),$$

    which is the finite-data ODE of `hsgd._finite.ode` (with $E e^2 = m^2 + \operatorname{Var}
    e$) for $n = 1$, counts $\nu_j = \omega_j/\beta$, no ridge, $L_{\min} = \sigma^2/(2\beta)$
    and $e_j(0)^2 = u_j(0)$: its training loss is $\psi = h/\beta$. Diagonal plus rank one, so
    [`LinearKvaerno5`][] solves its stages exactly — much cheaper than a Newton iteration on
    the $J\times p\times p$ system, forward and in reverse mode. `batch` may be traced.
    """
    if not isinstance(problem.loss, LeastSquares):
        raise TypeError(f"least_squares_as_finite needs a LeastSquares loss, got "
                        f"{type(problem.loss).__name__}")
    V0 = problem.V0
    dtype = V0.dtype
    batch = jnp.asarray(batch, dtype)
    u0 = jnp.maximum(V0[:, 0, 0] - 2.0 * V0[:, 0, 1] + V0[:, 1, 1], 0.0)
    lam = problem.spectrum.eigenvalues.astype(dtype)
    sigma = problem.loss.noise.std.astype(dtype)
    return FiniteProblem(eigenvalues=lam, counts=problem.spectrum.weights.astype(dtype) / batch,
                         init_error=jnp.sqrt(u0), x_opt_coords=jnp.zeros_like(lam),
                         loss_min=0.5 * sigma**2 / batch, ridge=jnp.zeros((), dtype), n=1)


def ode(problem: Problem, schedule, ts, *, batch=1.0, statistics: dict | None = None,
        solver: diffrax.AbstractSolver | None = None,
        stepsize_controller: diffrax.AbstractStepSizeController | None = None,
        dt0=None, adjoint: diffrax.AbstractAdjoint | None = None, max_steps: int = 200_000,
        blowup: float = 1e6) -> Solution:
    r"""Solve the deterministic equivalent of one-pass SGD (SPEC §1) on the times `ts`.

    Given a [`FiniteProblem`][] instead, solves the per-mode ODE of multi-pass SGD on least
    squares (SPEC §2) and returns a [`FiniteSolution`][] (see `hsgd._finite.ode`).

    **Arguments:**

    - `problem`: a [`Problem`][] (loss, spectrum, initial per-mode moments).
    - `schedule`: learning rate $\gamma(t)$ — a float, an [`AbstractSchedule`][] or a callable.
    - `ts`: increasing output times $t = k/d \ge 0$ (the solve starts at 0).
    - `batch`: mini-batch size $\beta$ (SGD averages $\beta$ per-sample gradients).
    - `statistics`: optional dict name → [`Statistic`][].
    - `solver`, `stepsize_controller`, `dt0`, `adjoint`, `max_steps`: passed to
      `diffrax.diffeqsolve`. Defaults: `Tsit5()`, `PIDController(rtol=1e-7, atol=1e-10)`,
      automatic first step (rtol 1e-5, atol 1e-8 in float32),
      `RecursiveCheckpointAdjoint()` (so `jax.grad` works).
    - `blowup`: the solve stops and reports divergence when $\max|B|$ exceeds
      `blowup` $\times (1 + \max|B(0)|)$.

    **Returns:** a [`Solution`][].

    Example:

    ```python
    spec = hsgd.Spectrum.power_law(2000, 0.5)
    prob = hsgd.Problem.isotropic(hsgd.Logistic(), spec, target_norm=2.0)
    sol = hsgd.ode(prob, 1.0, jnp.linspace(0, 10, 50))
    sol.risk
    ```
    """
    if isinstance(problem, FiniteProblem):
        if batch != 1.0 or statistics or stepsize_controller is not None or dt0 is not None:
            raise ValueError("batch, statistics, stepsize_controller and dt0 apply to streaming "
                             "problems; for a FiniteProblem see hsgd._finite.ode (rtol, atol)")
        return finite.ode(problem, schedule, ts, solver=solver, adjoint=adjoint,
                          max_steps=max_steps, blowup=blowup)
    schedule = as_schedule(schedule)
    statistics = {} if statistics is None else dict(statistics)
    ts = jnp.asarray(ts, dtype=problem.V0.dtype)
    if ts.ndim != 1 or ts.shape[0] == 0:
        raise ValueError(f"ts must be a non-empty 1-D array of times, got shape {ts.shape}")
    batch = jnp.asarray(batch, dtype=problem.V0.dtype)
    return _solve(problem, schedule, ts, batch, statistics, solver, stepsize_controller, dt0,
                  adjoint, max_steps, blowup)


@eqx.filter_jit
def _solve(problem, schedule, ts, batch, statistics, solver, stepsize_controller, dt0, adjoint,
           max_steps, blowup):
    ts = eqx.error_if(ts, jnp.any(ts < 0) | jnp.any(jnp.diff(ts) < 0),
                      "ts must be non-negative and non-decreasing")
    batch = eqx.error_if(batch, ~(batch >= 1), "batch must be >= 1")
    gammas = jax.vmap(schedule)(ts)
    ts = eqx.error_if(ts, ~jnp.all(gammas > 0),
                      "the learning rate must be positive (and finite) at every output time")
    solver = diffrax.Tsit5() if solver is None else solver
    if stepsize_controller is None:
        # dtmin: a finite-time blow-up (e.g. phase retrieval past its stable stepsize) would
        # otherwise shrink the step towards zero forever; forced minimal steps run into the
        # blow-up event instead. Genuine stiffness here needs steps ~1e-5 t_final at worst.
        # float32 cannot resolve rtol 1e-7: use 1e-5 there (errors ~1e-5, far below the
        # O(d^{-1/2}) fluctuations of SGD itself).
        single = problem.V0.dtype == jnp.float32
        stepsize_controller = diffrax.PIDController(rtol=1e-5 if single else 1e-7,
                                                    atol=1e-8 if single else 1e-10,
                                                    dtmin=1e-9 * jnp.maximum(ts[-1], 1.0))
    adjoint = diffrax.RecursiveCheckpointAdjoint() if adjoint is None else adjoint

    def vector_field(t, V, args):
        prob, sched, beta = args
        return drift(prob, V, sched(t).astype(V.dtype), beta)

    bound = blowup * (1 + jnp.max(jnp.abs(problem.B0())))

    def blew_up(t, V, args, **kwargs):
        B = args[0].spectrum.weighted_sum(V, q=_identity)
        return ~(jnp.max(jnp.abs(B)) < bound)

    def save(t, V, args):
        return _snapshot(args[0], V, statistics)

    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(vector_field), solver, t0=0.0, t1=ts[-1], dt0=dt0, y0=problem.V0,
        args=(problem, schedule, batch), saveat=diffrax.SaveAt(ts=ts, fn=save),
        stepsize_controller=stepsize_controller, adjoint=adjoint,
        event=diffrax.Event(blew_up), max_steps=max_steps, throw=False)
    # Moments at the saved times, after the solve (unreached times hold inf: NaN below).
    out = jax.vmap(lambda snap, g: _finish(problem, snap, g, batch))(sol.ys, gammas)
    risk = out["risk"]
    bad = ~jnp.isfinite(risk) | ~(jnp.max(jnp.abs(out["B"]), axis=(-1, -2)) < bound)
    bad = bad | (jnp.arange(ts.shape[0]) >= jnp.sum(jnp.isfinite(sol.ts)))
    # The solve failing for any other reason (e.g. max_steps) is not divergence: raise loudly.
    ok = (sol.result == diffrax.RESULTS.successful) | (sol.result == diffrax.RESULTS.event_occurred)
    risk = eqx.error_if(risk, ~ok, "the ODE solver failed (max_steps reached or step size "
                        "collapsed); pass a larger max_steps or a stiff solver")
    bad, diverged, divergence_time = after_first(ts, bad)  # NaN from the first bad time on

    def mask(x):
        return nan_where(bad, x)

    return Solution(
        ts=ts, risk=mask(risk), B=mask(out["B"]), distance=mask(out["distance"]),
        gamma=gammas, gamma_crit=mask(out["gamma_crit"]),
        statistics=jax.tree_util.tree_map(mask, out["statistics"]), diverged=diverged,
        divergence_time=divergence_time, num_steps=sol.stats["num_accepted_steps"])
