r"""Homogenized SGD: the SDE with the drift and the noise covariance of one-pass SGD (SPEC §1).

In the eigenbasis of $K = \operatorname{diag}(\lambda)$, with $W = [X \mid X^*]$ and
$B = W^\top K W$,

$$dX_t = -\gamma_t\, K W_t J(B_t)^\top\, dt
+ \gamma_t \sqrt{\tfrac{1}{\beta}\,\tfrac{K}{d} \otimes I(B_t)}\; d\mathcal{B}_t,
\qquad X_0 = X_0,$$

with $\mathcal{B}_t$ a $d\times m$ Brownian motion and $J$, $I$ from the loss's Gaussian moments.
Row $j$ of the noise increment is $\gamma_t\sqrt{\lambda_j/(d\beta)}\, L(B_t)\,\Delta\xi_j$ with
$L L^\top = I(B)$ ([`psd_factor`][]), so a step costs $O(d\,m)$ plus one quadrature for the
moments: no $d\times d$ matrix is ever formed.
"""

import math

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np

from ._checks import check_learning_rate, probe_times
from ._custom_types import PRNGKey
from ._expectations import psd_factor
from ._finite.problem import FiniteProblem
from ._problem import Problem
from ._risk import DEFAULT_RISK_SAMPLES
from ._schedule import as_schedule
from ._sgd import SGDResult, observe, risks_of

# Default Euler–Maruyama step: min(_DT_CAP, _DT_SCALE / (gamma_max * lambda_max)); see default_dt.
_DT_CAP = 0.05
_DT_SCALE = 0.01


def default_dt(problem: Problem, gamma_max: float) -> float:
    r"""The default Euler–Maruyama step $\min\big(0.05,\ 0.01/(\gamma_{\max}\lambda_{\max})\big)$.

    Why: with $a_j = \gamma\lambda_j$ the linear rate of mode $j$ (for least squares
    exactly; for other losses times $J$, usually $\le 1$), Euler–Maruyama contracts a second
    moment by $(1 - a_j\Delta t)^2$ per step instead of $e^{-2a_j\Delta t}$, an excess of
    $a_j^2\Delta t^2$ per step, i.e. a relative bias $\approx a_j^2 \Delta t\, t$ while the mode
    decays, and its stationary noise level is too large by the factor
    $1/(1 - a_j\Delta t/2)$. With $\gamma_{\max}\lambda_{\max}\Delta t \le 0.01$ the risk is
    biased by at most $\approx 0.5\%$ (measured: least squares, uniform spectrum $[0.2, 1.8]$,
    $\gamma = 1$, 256 paths; the step $0.05/(\gamma_{\max}\lambda_{\max})$ is off by up to
    $\approx 2.4\%$, $0.2/(\gamma_{\max}\lambda_{\max})$ by $\approx 8\%$), below the $O(d^{-1/2})$
    path-to-path spread at the dimensions where one simulates. The cap $0.05$ keeps a
    time-varying schedule resolved when $\gamma\lambda$ is small. The bias is $O(\Delta t)$:
    pass a smaller `dt` for tighter agreement with [`ode`][], or a larger one with
    `solver=diffrax.Heun()` (see [`sde`][]).
    """
    lam_max = (float(jnp.max(problem.eigenvalues) + problem.ridge)
               if isinstance(problem, FiniteProblem)
               else float(jnp.max(problem.spectrum.eigenvalues)))
    rate = abs(float(gamma_max)) * lam_max
    return _DT_CAP if rate == 0.0 else min(_DT_CAP, _DT_SCALE / rate)


def sde(problem: Problem, schedule, ts, key: PRNGKey, *, num_paths: int = 8, batch=1,
        dt=None, solver: diffrax.AbstractSolver | None = None, coupled: bool = False,
        blowup: float = 1e6, risk_samples: int = DEFAULT_RISK_SAMPLES) -> SGDResult:
    r"""Sample `num_paths` paths of homogenized SGD (SPEC §1) and record them at times `ts`.

    Given a [`FiniteProblem`][] (one mode per direction), samples homogenized SGD for
    multi-pass least squares instead (SPEC §2, `hsgd._finite.sde`, time in epochs) and returns
    a [`FiniteSGDResult`][].

    $$dX_t = -\gamma_t \nabla R(X_t)\,dt
    + \gamma_t\sqrt{\tfrac{K}{d}\otimes \tfrac{I(B_t)}{\beta}}\; d\mathcal{B}_t,\qquad
    \nabla R(X) = K W J(B)^\top,\quad B = W^\top K W,\quad W = [X\mid X^*],$$

    posed in the eigenbasis of $K$, started at `problem.X0`. Its paths have the same mean and
    the same $O(d^{-1/2})$ fluctuations as one-pass SGD ([`simulate`][]) at a cost per unit
    time of $O(d\,m/\Delta t)$ instead of $O(d^2 m)$; their mean follows [`ode`][].

    **Arguments:**

    - `problem`: a [`Problem`][] with an instance (`X_star`, `X0`), e.g. from
      [`Problem.random`][] or [`Problem.from_arrays`][].
    - `schedule`: learning rate $\gamma(t)$ (float, [`AbstractSchedule`][] or callable).
    - `ts`: non-decreasing record times $\ge 0$ (the solve starts at $t = 0$ and steps exactly
      onto every record time).
    - `key`: a JAX PRNG key, split into `num_paths` independent paths (one jitted, vmapped
      solve samples all of them).
    - `batch`: mini-batch size $\beta \ge 1$ (the noise covariance is divided by $\beta$).
    - `dt`: the step; default [`default_dt`][] with $\gamma_{\max}$ the largest $|\gamma|$ on a
      1025-point grid of $[0, t_{\rm final}]$ and the record times. Each interval between
      record times is cut into equal steps no longer than `dt`.
    - `solver`: a diffrax solver; default `diffrax.Euler()` (Euler–Maruyama, weak order 1,
      bias $O(\Delta t)$). `diffrax.Heun()` (two drift and noise evaluations per step) has bias
      $O(\Delta t^2)$ on the linear part of the drift and is accurate to $\approx 0.5\%$ at
      $\Delta t = 0.05/\gamma_{\max}$ on least squares; it converges to the Stratonovich SDE,
      which differs from the Itô one here only by an $O(1/d)$ relative drift (row $j$ of the
      noise depends on $X$ through $B$ alone), the order of the SDE's own error against SGD.
    - `coupled`: `False` (default) draws independent Gaussian increments step by step
      (`diffrax.UnsafeBrownianPath`, the cheapest; each increment is keyed by its step's end
      points in float32, so steps shorter than $10^{-6} t_{\rm final}$ are refused). `True`
      samples each path from a `diffrax.VirtualBrownianTree`, so that solves with different
      `dt` (or solvers) see the same Brownian path — for convergence checks; the noise then
      costs about $2\log_2(4 t_{\rm final}/\Delta t)$ times more.
    - `blowup`: a path counts as diverged once $\max|B|$ exceeds `blowup`$\times(1+\max|B(0)|)$
      or its risk is not finite; its solve stops there.
    - `risk_samples`: Monte-Carlo samples per recorded risk when the loss has no exact risk
      (as for [`simulate`][]).

    The learning rate may be 0 but must be finite and $\ge 0$ (checked at `ts` and on 1025
    points of $[0, t_{\rm final}]$).

    **Returns:** an [`SGDResult`][] (the same type [`simulate`][] returns): `risk` $(P, T)$ is
    the population risk $h(W^\top K W)$ of each path computed as [`simulate`][] does
    (independently of the ODE's rule, SE in `risk_se`; NaN after divergence), `B`,
    `distance` $\|X - X^*\|^2$ (NaN when $m \ne m^*$), `diverged`, `divergence_time`.

    Example:

    ```python
    spec = hsgd.Spectrum.uniform(1000, 0.2, 1.8)
    prob = hsgd.Problem.random(hsgd.LeastSquares(0.5), spec, jax.random.PRNGKey(0))
    ts = jnp.linspace(0, 4, 21)
    res = hsgd.sde(prob, 1.0, ts, jax.random.PRNGKey(1), num_paths=16)
    res.mean(), res.std()          # compare with hsgd.ode(prob, 1.0, ts).risk
    ```
    """
    finite = isinstance(problem, FiniteProblem)
    if finite:
        _check_finite(problem, batch)
    elif problem.X_star is None or problem.X0 is None:
        raise ValueError("sde needs a problem with an instance (X_star, X0): build it with "
                         "Problem.random or Problem.from_arrays, not Problem.isotropic/coarsen")
    if int(num_paths) != num_paths or int(num_paths) < 1:
        raise ValueError(f"num_paths must be an integer >= 1, got {num_paths}")
    num_paths = int(num_paths)
    batch_f = float(batch)
    if not (math.isfinite(batch_f) and batch_f >= 1):
        raise ValueError(f"batch must be >= 1, got {batch}")
    if not (blowup > 0):
        raise ValueError(f"blowup must be > 0, got {blowup}")
    schedule = as_schedule(schedule)
    ts_np = np.asarray(ts, dtype=float)
    if (ts_np.ndim != 1 or ts_np.size == 0 or not np.all(np.isfinite(ts_np))
            or np.any(ts_np < 0) or np.any(np.diff(ts_np) < 0)):
        raise ValueError(f"ts must be a non-empty, non-decreasing 1-D array of finite times "
                         f">= 0, got {ts_np}")
    t_final = float(ts_np[-1])
    gammas = np.asarray(check_learning_rate(schedule, probe_times(ts_np),
                                            time_name="epoch" if finite else "t"))
    if dt is None:
        dt = default_dt(problem, float(np.max(gammas)))
    dt = float(dt)
    if not (math.isfinite(dt) and dt > 0):
        raise ValueError(f"dt must be finite and > 0, got {dt}")
    grid = _step_grid(ts_np, dt)
    if not coupled and grid.size > 1 and np.min(np.diff(grid)) < 1e-6 * max(t_final, 1.0):
        # UnsafeBrownianPath keys each increment by its (t0, t1) rounded to float32
        raise ValueError(f"a step of {np.min(np.diff(grid)):.3g} is too short for independent "
                         f"increments on [0, {t_final:.4g}] (two record times almost equal?); "
                         f"pass coupled=True")
    solver = diffrax.Euler() if solver is None else solver
    if finite:
        from ._finite.sde import solve as finite_solve

        dtype = problem.eigenvalues.dtype
        return finite_solve(problem, schedule, jnp.asarray(ts_np, dtype),
                            jnp.asarray(grid, dtype), key, num_paths, solver, bool(coupled),
                            float(blowup))
    dtype = problem.X0.dtype
    return _solve(problem, schedule, jnp.asarray(ts_np, dtype), jnp.asarray(grid, dtype),
                  key, jnp.asarray(batch_f, dtype), num_paths, solver, bool(coupled),
                  float(blowup), int(risk_samples))


def _check_finite(problem, batch):
    if not np.all(np.asarray(problem.counts) == 1):
        raise ValueError("sde on a FiniteProblem needs one mode per eigen-direction (counts all "
                         "1): build it from data or from an explicit spectrum, not "
                         "marchenko_pastur")
    if float(batch) != 1:
        raise ValueError(f"batch is not a parameter of the finite-data SDE (the summed mini-batch "
                         f"gradient gives the same diffusion in epochs); got batch={batch}")


def _step_grid(ts: np.ndarray, dt: float) -> np.ndarray:
    """0, the distinct record times, and equal steps of at most `dt` in between."""
    knots = np.unique(np.concatenate([[0.0], ts]))
    pieces = [knots[:1]]
    for a, b in zip(knots[:-1], knots[1:]):
        n = max(1, math.ceil((b - a) / dt - 1e-9))
        pieces.append(np.linspace(a, b, n + 1)[1:])
    return np.concatenate(pieces)


@eqx.filter_jit
def _solve(problem, schedule, ts, grid, key, batch, num_paths, solver, coupled, blowup,
           risk_samples):
    lam = problem.spectrum.eigenvalues.astype(ts.dtype)
    d = lam.shape[0]
    X_star = problem.X_star
    loss = problem.loss
    noise_scale = jnp.sqrt(lam / d)[:, None]
    shape = jax.ShapeDtypeStruct(problem.X0.shape, problem.X0.dtype)

    def moments(X):
        W = jnp.concatenate([X, X_star], axis=1)
        B = (W.T * lam) @ W
        return W, loss.moments(B)

    def drift(t, X, args):
        W, mom = moments(X)
        return -schedule(t).astype(X.dtype) * lam[:, None] * (W @ mom.J.T)

    def diffusion(t, X, args):
        _, mom = moments(X)
        L = psd_factor(mom.I.astype(X.dtype))
        scale = schedule(t).astype(X.dtype) / jnp.sqrt(batch) * noise_scale
        return lx.FunctionLinearOperator(lambda dB: scale * (dB @ L.T), shape)

    bound = blowup * (1 + jnp.max(jnp.abs(problem.B0())))

    def blew_up(t, X, args, **kwargs):
        W = jnp.concatenate([X, X_star], axis=1)
        B = (W.T * lam) @ W
        return ~(jnp.max(jnp.abs(B)) < bound)

    def save(t, X, args):
        return observe(problem, X)

    (B, dist), unsaved = sample_paths(problem.X0, drift, diffusion, blew_up, save, ts, grid, key,
                                      num_paths, solver, coupled)
    # The risk from the saved B, on a stream of its own (one key per path and time).
    keys = jax.random.split(jax.random.fold_in(key, 0x7269736B), B.shape[0] * B.shape[1])
    risk, se = risks_of(loss, B, keys.reshape((*B.shape[:2], *keys.shape[1:])), risk_samples)
    return SGDResult.from_paths(ts, risk, B, dist, bound, failed=unsaved, risk_se=se)


def sample_paths(y0, drift, diffusion, blew_up, save, ts, grid, key, num_paths, solver,
                 coupled):
    r"""Sample `num_paths` solutions of $dy = \text{drift}\,dt + \text{diffusion}\,d\mathcal B$
    from `y0` (one vmapped diffrax solve, stepping exactly onto `grid`), saving `save(t, y)` at
    `ts`. Returns the saved pytree (leading axes: path, time) and a (paths, times) mask of the
    times a path never reached (it stopped at a blow-up event). Call inside `jit`."""
    shape = jax.ShapeDtypeStruct(y0.shape, y0.dtype)
    t0, t1 = grid[0], grid[-1]
    num_steps = grid.shape[0] - 1

    def one_path(k):
        if coupled:
            tol = jnp.min(jnp.diff(grid)) / 4
            bm = diffrax.VirtualBrownianTree(t0, t1, tol, shape, k)
        else:
            bm = diffrax.UnsafeBrownianPath(shape, k)
        # Forward-only: sampling needs no reverse mode (UnsafeBrownianPath cannot replay it).
        adjoint = diffrax.ForwardMode()
        terms = diffrax.MultiTerm(diffrax.ODETerm(drift), diffrax.ControlTerm(diffusion, bm))
        sol = diffrax.diffeqsolve(
            terms, solver, t0=t0, t1=t1, dt0=None, y0=y0,
            saveat=diffrax.SaveAt(ts=ts, fn=save), stepsize_controller=diffrax.StepTo(grid),
            event=diffrax.Event(blew_up), max_steps=num_steps, adjoint=adjoint, throw=False)
        ok = ((sol.result == diffrax.RESULTS.successful)
              | (sol.result == diffrax.RESULTS.event_occurred))
        return sol.ys, jnp.sum(jnp.isfinite(sol.ts)), ok

    if num_steps == 0:  # every record time is 0: nothing to integrate
        out = jax.vmap(lambda _: jax.vmap(lambda t: save(t, y0, None))(ts))(
            jnp.arange(num_paths))
        saved = jnp.full((num_paths,), ts.shape[0])
        ok = jnp.ones((num_paths,), bool)
    else:
        out, saved, ok = jax.vmap(one_path)(jax.random.split(key, num_paths))
    out = jax.tree_util.tree_map(
        lambda x: eqx.error_if(x, ~jnp.all(ok), "the SDE solve failed (not a divergence); "
                               "check the solver and dt"), out)
    unsaved = jnp.arange(ts.shape[0])[None, :] >= saved[:, None]
    return out, unsaved
