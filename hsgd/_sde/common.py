r"""What every homogenized-SGD cell shares: the default step, the step grid, the argument
checks and the vmapped diffrax sampler."""

import math

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._checks import check_learning_rate, probe_times
from .._problem import FiniteProblem
from .._results import Runs
from .._risk import observe, risks_of

# Default Euler–Maruyama step: min(_DT_CAP, _DT_SCALE / (gamma_max * lambda_max)); see default_dt.
_DT_CAP = 0.05
_DT_SCALE = 0.01


def default_dt(problem, gamma_max: float) -> float:
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


def prepare(problem, schedule, ts, num_paths, dt, coupled, blowup, time_name: str):
    """The checks every cell makes, eagerly: `num_paths`, `blowup`, `ts`, the learning rate on
    the probe times, `dt` (default [`default_dt`][]); returns `(ts_np, grid, num_paths)`."""
    if int(num_paths) != num_paths or int(num_paths) < 1:
        raise ValueError(f"num_paths must be an integer >= 1, got {num_paths}")
    if not (blowup > 0):
        raise ValueError(f"blowup must be > 0, got {blowup}")
    ts_np = np.asarray(ts, dtype=float)
    if (ts_np.ndim != 1 or ts_np.size == 0 or not np.all(np.isfinite(ts_np))
            or np.any(ts_np < 0) or np.any(np.diff(ts_np) < 0)):
        raise ValueError(f"ts must be a non-empty, non-decreasing 1-D array of finite times "
                         f">= 0, got {ts_np}")
    t_final = float(ts_np[-1])
    gammas = np.asarray(check_learning_rate(schedule, probe_times(ts_np), time_name=time_name))
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
    return ts_np, grid, int(num_paths)


def streaming_arguments(problem, optimizer, ts, num_paths, dt, solver, coupled, blowup):
    """The eager part every streaming cell shares: the instance check, [`prepare`][], the default
    solver (Euler–Maruyama), and the arrays in the problem's dtype. Returns `(schedule, ts,
    grid, batch, num_paths, solver)`."""
    if problem.X_star is None or problem.X0 is None:
        raise ValueError("sde needs a problem with an instance (X_star, X0): build it with "
                         "Problem.random or Problem.from_arrays, not Problem.isotropic/coarsen")
    schedule = optimizer.schedule
    ts_np, grid, num_paths = prepare(problem, schedule, ts, num_paths, dt, coupled, blowup, "t")
    dtype = problem.X0.dtype
    return (schedule, jnp.asarray(ts_np, dtype), jnp.asarray(grid, dtype),
            jnp.asarray(optimizer.batch, dtype), num_paths,
            diffrax.Euler() if solver is None else solver)


def streaming_runs(problem, drift, diffusion, ts, grid, key, num_paths, solver, coupled, blowup,
                   risk_samples, y0=None, *, aux0=None, gamma_of=None):
    r"""Sample a streaming cell's paths of $X$ (call inside `jit`): stopped once $\max|B|$
    passes `blowup`$\,\times(1 + \max|B(0)|)$, recording $B = W^\top KW$ and $\|X - X^*\|^2$
    at `ts`, and their risk $h(B)$ by the independent estimator (`hsgd._risk`) on a key stream of
    its own (one key per path and time). Returns [`Runs`][hsgd.Runs].

    `y0`: the initial state when it is more than $X_0$ (default `problem.X0`): a $d\times
    (m + k)$ array whose first $m$ columns are $X$ (e.g. $[X \mid Y]$ for momentum; the
    Brownian motion then has that shape too).

    `aux0`: auxiliary scalars $a$ (e.g. AdaGrad-Norm's accumulator, SPEC §10) started at
    `aux0`: the state is then the pair $(y, a)$ (drift and diffusion take and return pairs; the
    Brownian motion has $y$'s shape and the diffusion maps it to the pair). `gamma_of(t,
    state)`, when given, is recorded as `Runs.gamma` (a feedback stepsize)."""
    lam = problem.spectrum.eigenvalues.astype(ts.dtype)
    bound = blowup * (1 + jnp.max(jnp.abs(problem.B0())))
    m = problem.X0.shape[1]
    y0 = problem.X0 if y0 is None else y0
    noise_like = y0
    if aux0 is not None:
        y0 = (y0, aux0)

    def X_of(y):
        return (y if aux0 is None else y[0])[:, :m]

    def blew_up(t, y, args, **kwargs):
        W = jnp.concatenate([X_of(y), problem.X_star], axis=1)
        B = (W.T * lam) @ W
        return ~(jnp.max(jnp.abs(B)) < bound)

    def save(t, y, args):
        out = observe(problem, X_of(y))
        return out if gamma_of is None else (*out, gamma_of(t, y))

    saved, unsaved = sample_paths(y0, drift, diffusion, blew_up, save, ts, grid, key, num_paths,
                                  solver, coupled, noise_like=noise_like)
    B, dist = saved[:2]
    keys = jax.random.split(jax.random.fold_in(key, 0x7269736B), B.shape[0] * B.shape[1])
    risk, se = risks_of(problem.loss, B, keys.reshape((*B.shape[:2], *keys.shape[1:])),
                        risk_samples)
    return Runs.from_paths(ts, risk, B, dist, bound, failed=unsaved, risk_se=se,
                           gamma=None if gamma_of is None else saved[2])


def _step_grid(ts: np.ndarray, dt: float) -> np.ndarray:
    """0, the distinct record times, and equal steps of at most `dt` in between."""
    knots = np.unique(np.concatenate([[0.0], ts]))
    pieces = [knots[:1]]
    for a, b in zip(knots[:-1], knots[1:]):
        n = max(1, math.ceil((b - a) / dt - 1e-9))
        pieces.append(np.linspace(a, b, n + 1)[1:])
    return np.concatenate(pieces)


def sample_paths(y0, drift, diffusion, blew_up, save, ts, grid, key, num_paths, solver,
                 coupled, noise_like=None):
    r"""Sample `num_paths` solutions of $dy = \text{drift}\,dt + \text{diffusion}\,d\mathcal B$
    from `y0` (one vmapped diffrax solve, stepping exactly onto `grid`), saving `save(t, y)` at
    `ts`. Returns the saved pytree (leading axes: path, time) and a (paths, times) mask of the
    times a path never reached (it stopped at a blow-up event). Call inside `jit`.
    `noise_like`: an array with the Brownian motion's shape and dtype (default `y0`, which may
    then be a pytree)."""
    like = y0 if noise_like is None else noise_like
    shape = jax.ShapeDtypeStruct(like.shape, like.dtype)
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
