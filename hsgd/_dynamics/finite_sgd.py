r"""The deterministic equivalent of multi-pass SGD on least squares (SPEC §2), two ways.

Time is in epochs, $t = k/n$; $\Gamma(t) = \int_0^t\gamma_s\,ds$; $\mu_j = \lambda_j + \delta$.
Per mode the variance of $e_j$ around the gradient-flow path
$E e_j(t) = e^{-\mu_j\Gamma(t)}e_j(0)$ solves

$$\frac{d}{dt}\operatorname{Var}e_j = -2\gamma_t\mu_j\operatorname{Var}e_j
+ \frac{2\gamma_t^2\lambda_j}{n}\psi(t),\qquad \operatorname{Var}e_j(0) = 0,$$

$$\psi(t) = L(x^{\rm gf}_{\Gamma(t)}) + \tfrac12\sum_j\nu_j\lambda_j\operatorname{Var}e_j(t),$$

which is SPEC §2's ODE for $E e_j^2 = (E e_j)^2 + \operatorname{Var}e_j$ written so that the
population risk $R(t) = R(x^{\rm gf}_{\Gamma(t)}) + \tfrac12\sum_j\nu_j(S_v)_{jj}
\operatorname{Var}e_j(t)$ comes out too. Integrating the variance equation gives the Volterra
equation $\psi = F + \mathcal K * \psi$ with $F(t) = L(x^{\rm gf}_{\Gamma(t)})$ and kernel
$\mathcal K(t, s) = \frac{\gamma_s^2}{n}\sum_j\nu_j\lambda_j^2e^{-2\mu_j(\Gamma(t) - \Gamma(s))}$.

* [`ode`][hsgd.ode] integrates the per-mode ODE with diffrax. The system is stiff (rates
  $2\gamma\mu_j$ spanning the spectrum) but *linear* in the variances with a
  diagonal-plus-rank-one matrix, so the default solver is the L-stable ESDIRK method of Kværnø
  (order 5, the `diffrax.Kvaerno5` tableau) whose stage equations are solved exactly by the
  Sherman–Morrison formula in $O(J)$ — no Newton iteration, no $J\times J$ Jacobian.
* [`volterra`][] solves the integral equation by product integration: the kernel is a sum of
  exponentials, so the convolution is carried by one running sum per mode (memory $O(J)$, not
  $O(T^2)$), each updated with the exact exponential weights of $\gamma\psi$ interpolated
  linearly in $\Gamma$ (second order, unconditionally stable for stiff modes), and the
  trapezoidal equation for $\psi$ at the new time is scalar and solved in closed form.
"""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._blowup import after_first, nan_where
from .._checks import check_times, is_traced
from .._optimizer import SGD
from .._problem import FiniteProblem
from .._registry import register
from .._results import Solution
from ..theory.finite import gamma_max
from .structured import KV5_A, KV5_B, KV5_BERR, KV5_C, KV5_DIAG, AbstractKvaerno5Solver


def _rates(problem: FiniteProblem):
    lam = problem.eigenvalues
    return lam, lam + problem.ridge, 2.0 * lam / problem.n, 0.5 * problem.counts * lam


def _variance_field(problem, gamma, Gamma, var):
    lam, mu, u, _ = _rates(problem)
    psi = problem.loss_from_variance(Gamma, var)
    return -2.0 * gamma * mu * var + gamma**2 * u * psi


def _blowup_bound(problem, blowup):
    return blowup * (1.0 + jnp.abs(problem.gradient_flow_loss(0.0)))


def _finish(problem, ts, loss, risk, gamma, Gamma, bad, num_steps):
    bad = bad | ~jnp.isfinite(loss)
    mask, diverged, time = after_first(ts, bad)
    return Solution(ts=ts, loss=nan_where(mask, loss), risk=nan_where(mask, risk),
                    gamma=gamma, Gamma=Gamma, diverged=diverged, divergence_time=time,
                    num_steps=num_steps)


# ---------------------------------------------------------------------- the per-mode ODE

_C, _A, _DIAG, _B, _BERR = KV5_C, KV5_A, KV5_DIAG, KV5_B, KV5_BERR


class LinearKvaerno5(AbstractKvaerno5Solver):
    r"""Kværnø's L-stable ESDIRK 5(4) method specialised to the finite-data variance ODE.

    The state is $(\Gamma, \operatorname{Var}e)$; $\Gamma' = \gamma_t$ is explicit and the
    variance equation is linear, $v' = -a\circ v + u\,(F(\Gamma) + w^\top v)$ with
    $a = 2\gamma\mu$, $u = 2\gamma^2\lambda/n$, $w = \nu\lambda/2$, so each implicit stage
    $(I + h\alpha\,\mathrm{diag}(a) - h\alpha\,uw^\top)k = r$ is solved exactly by
    Sherman–Morrison. Unconditionally stable in the stiff modes; the rank-one coupling is
    well-posed as long as the kernel norm stays below one (SPEC §2 stability). Only for use
    with [`ode`][hsgd.ode] on a [`FiniteProblem`][] (it reads the problem and schedule from `args`).
    """

    def init(self, terms, t0, t1, y0, args):
        return None

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        problem, schedule = args
        lam, mu, u0, w = _rates(problem)
        G0, v0 = y0
        h = jnp.asarray(t1 - t0).astype(v0.dtype)
        kG, kv = [], []
        for i in range(len(_C)):
            ti = t0 + _C[i] * (t1 - t0)
            zG = G0 + h * sum(_A[i - 1][j] * kG[j] for j in range(i)) if i else G0
            zv = v0 + h * sum(_A[i - 1][j] * kv[j] for j in range(i)) if i else v0
            g = schedule(ti).astype(v0.dtype)
            if i == 0:
                kG.append(g)
                kv.append(_variance_field(problem, g, G0, v0))
                continue
            ha = h * _DIAG[i]
            Gi = zG + ha * g
            kG.append(g)
            a, u = 2.0 * g * mu, g**2 * u0
            r = -a * zv + u * problem.loss_from_variance(Gi, zv)
            D = 1.0 + ha * a
            Dr, Du = r / D, u / D
            s = ha * jnp.dot(w, Dr) / (1.0 - ha * jnp.dot(w, Du))
            kv.append(Dr + Du * s)
        y1 = (G0 + h * sum(b * k for b, k in zip(_B, kG)),
              v0 + h * sum(b * k for b, k in zip(_B, kv)))
        err = (h * sum(b * k for b, k in zip(_BERR, kG)),
               h * sum(b * k for b, k in zip(_BERR, kv)))
        return y1, err, dict(y0=y0, y1=y1), None, diffrax.RESULTS.successful



def _batch_one(optimizer: SGD, what: str):
    if is_traced(optimizer.batch) or float(optimizer.batch) != 1:
        raise ValueError(f"the finite-data {what} is for batch 1 (SPEC §2), got "
                         f"batch={optimizer.batch!r}; for mini-batches use "
                         f"HeavyBall(schedule, momentum=0.0, batch=...) (SPEC §3)")
    return optimizer.schedule


@register("ode", FiniteProblem, SGD)
def ode(problem: FiniteProblem, optimizer: SGD, ts, *,
        solver: diffrax.AbstractSolver | None = None, rtol: float | None = None,
        atol: float | None = None, adjoint: diffrax.AbstractAdjoint | None = None,
        max_steps: int = 100_000, blowup: float = 1e6) -> Solution:
    r"""The per-mode ODE of multi-pass SGD on least squares (SPEC §2), integrated by diffrax:
    the cell [`FiniteProblem`][] × [`SGD`][] of [`hsgd.ode`][].

    **Arguments:**

    - `problem`: a [`FiniteProblem`][].
    - `optimizer`: [`SGD`][] with batch 1: the learning rate $\gamma(t)$ per epoch; SGD
      steps are $x \leftarrow x - \gamma\,a_i(a_i^\top x - b_i) - \frac{\gamma}{n}\delta x$.
    - `ts`: increasing output epochs $t = k/n$ (the solve starts at 0 and steps onto each).
    - `solver`: default [`LinearKvaerno5`][] (stiff-stable, $O(J)$ per stage); any diffrax
      ODE solver also works (e.g. `diffrax.Tsit5()` for a non-stiff spectrum).
    - `rtol`, `atol`: PID tolerances, default $10^{-9}$ and $10^{-3}\,$rtol$\cdot\psi(0)/n$
      ($10^{-5}$ in float32).
    - `adjoint`: default `RecursiveCheckpointAdjoint()`, so `jax.grad` goes through.
    - `blowup`: divergence is reported once $\psi$ exceeds `blowup`$\,\times(1 + \psi(0))$.

    **Returns:** a [`Solution`][] (`loss`, `risk`, `Gamma`).

    ```python
    prob = hsgd.FiniteProblem.gaussian(n=4000, d=2000, noise_std=0.3)
    sol = hsgd.ode(prob, 0.6 * hsgd.theory.gamma_max(prob), jnp.linspace(0, 20, 41))
    ```
    """
    schedule = _batch_one(optimizer, "ODE")
    dtype = problem.eigenvalues.dtype
    ts = jnp.asarray(check_times(ts), dtype)
    single = dtype == jnp.float32
    rtol = (1e-5 if single else 1e-9) if rtol is None else float(rtol)
    if atol is None:
        scale = jnp.maximum(problem.gradient_flow_loss(0.0), problem.loss_min) / problem.n
        atol = 1e-3 * rtol * scale
    solver = LinearKvaerno5() if solver is None else solver
    adjoint = diffrax.RecursiveCheckpointAdjoint() if adjoint is None else adjoint
    return _ode_solve(problem, schedule, ts, solver, rtol, atol, adjoint, max_steps, blowup)


@eqx.filter_jit
def _ode_solve(problem, schedule, ts, solver, rtol, atol, adjoint, max_steps, blowup):
    gammas = jax.vmap(schedule)(ts)
    ts = eqx.error_if(ts, ~jnp.all(gammas > 0),
                      "the learning rate must be positive (and finite) at every output time")

    def field(t, y, args):
        prob, sched = args
        G, var = y
        g = sched(t).astype(var.dtype)
        return g, _variance_field(prob, g, G, var)

    bound = _blowup_bound(problem, blowup)

    def blew_up(t, y, args, **kwargs):
        return ~(args[0].loss_from_variance(*y) < bound)

    def save(t, y, args):
        prob, _ = args
        G, var = y
        return dict(loss=prob.loss_from_variance(G, var), risk=prob.risk_from_variance(G, var),
                    Gamma=G)

    y0 = (jnp.zeros((), ts.dtype), jnp.zeros_like(problem.eigenvalues))
    controller = diffrax.ClipStepSizeController(
        diffrax.PIDController(rtol=rtol, atol=atol, dtmin=1e-10 * jnp.maximum(ts[-1], 1.0)),
        step_ts=ts)
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(field), solver, t0=0.0, t1=ts[-1], dt0=None, y0=y0,
        args=(problem, schedule), saveat=diffrax.SaveAt(ts=ts, fn=save),
        stepsize_controller=controller, adjoint=adjoint, event=diffrax.Event(blew_up),
        max_steps=max_steps, throw=False)
    ok = (sol.result == diffrax.RESULTS.successful) | (sol.result == diffrax.RESULTS.event_occurred)
    loss = eqx.error_if(sol.ys["loss"], ~ok, "the finite-data ODE solver failed (max_steps "
                        "reached or step size collapsed); pass a larger max_steps")
    bad = ~(loss < bound) | (jnp.arange(ts.shape[0]) >= jnp.sum(jnp.isfinite(sol.ts)))
    return _finish(problem, ts, loss, sol.ys["risk"], gammas, sol.ys["Gamma"], bad,
                   sol.stats["num_accepted_steps"])


# ---------------------------------------------------------------------- the Volterra equation


def volterra_grid(problem: FiniteProblem, ts, resolution: float = 1e-3,
                  gamma_scale: float | None = None) -> np.ndarray:
    r"""The time grid of [`volterra`][]: steps of `resolution`$\,\cdot\,t_0$ up to
    $t_0 = 1/(\gamma\,(\lambda_{\max} + \delta))$ (the fastest mode's time scale, with
    $\gamma$ = `gamma_scale`, default the divergence threshold), then geometric steps
    $t_{k+1} = (1 + \text{resolution})\,t_k$, merged with the output times `ts`."""
    ts = np.asarray(ts, dtype=float)
    lam_max = float(np.max(np.asarray(problem.eigenvalues))) + float(problem.ridge)
    g = float(gamma_max(problem)) if gamma_scale is None else float(gamma_scale)
    t0 = 1.0 / max(g * lam_max, 1e-300)
    T = float(ts[-1])
    r = float(resolution)
    if not 0 < r < 1:
        raise ValueError(f"resolution must be in (0, 1), got {r}")
    early = np.arange(0.0, min(t0, T), r * t0)
    late = t0 * (1 + r) ** np.arange(0, max(np.log(max(T / t0, 1.0)) / np.log1p(r), 0) + 1)
    grid = np.union1d(np.concatenate([early, late[late < T], [0.0, T]]), ts)
    return grid


@register("volterra", FiniteProblem, SGD)
def volterra(problem: FiniteProblem, optimizer: SGD, ts, *, resolution: float = 1e-3,
             grid=None, blowup: float = 1e6) -> Solution:
    r"""Solve the Volterra equation $\psi = F + \mathcal K * \psi$ of multi-pass SGD on least
    squares (SPEC §2) by product integration on a graded grid; also returns the population
    risk. The cell [`FiniteProblem`][] × [`SGD`][] (batch 1) of [`hsgd.volterra`][].

    On a grid $t_k$ with $\Delta\Gamma_k$ from Simpson's rule, the running sums
    $\operatorname{Var}e_j$ are advanced exactly for $\gamma\psi$ linear in $\Gamma$ over the
    step,

    $$\operatorname{Var}_j^{k+1} = e^{-x_j}\operatorname{Var}_j^k
    + \frac{2\lambda_j}{n}\big(w^0_j\gamma_k\psi_k + w^1_j\gamma_{k+1}\psi_{k+1}\big),
    \quad x_j = 2\mu_j\Delta\Gamma_k,$$

    with $w^0 = \Delta\Gamma\,(1 - e^{-x} - xe^{-x})/x^2$ and
    $w^1 = \Delta\Gamma\,(1 - e^{-x})/x - w^0$, and
    $\psi_{k+1} = F(\Gamma_{k+1}) + \tfrac12\sum_j\nu_j\lambda_j\operatorname{Var}_j^{k+1}$ is
    linear in $\psi_{k+1}$. Cost $O(J)$ per step and memory $O(J)$. Second order in the step;
    the default grid (`resolution` $10^{-3}$, see `volterra_grid`) gives about 7 digits.

    **Arguments:** `problem`, `optimizer`, `ts` as in [`ode`][hsgd.ode]; `resolution`: relative step
    of the graded grid; `grid`: your own increasing grid (must contain 0 and every `ts`);
    `blowup` as in [`ode`][hsgd.ode].

    **Returns:** a [`Solution`][] (`loss`, `risk`, `Gamma`).
    """
    schedule = _batch_one(optimizer, "Volterra equation")
    dtype = problem.eigenvalues.dtype
    ts = jnp.asarray(check_times(ts), dtype)
    ts_np = np.asarray(ts, dtype=float)
    grid = volterra_grid(problem, ts_np, resolution) if grid is None else np.asarray(grid, float)
    if grid[0] != 0 or np.any(np.diff(grid) <= 0):
        raise ValueError("grid must start at 0 and be strictly increasing")
    index = np.searchsorted(grid, ts_np)
    if np.any(index >= grid.size) or not np.allclose(grid[np.minimum(index, grid.size - 1)],
                                                     ts_np, rtol=0, atol=0):
        raise ValueError("grid must contain every output time in ts")
    return _volterra_solve(problem, schedule, ts, jnp.asarray(grid, dtype),
                           jnp.asarray(index), blowup)


def _exp_weights(x, h):
    """w0, w1 and exp(-x) for the exponential product-trapezoid step (stable for all x >= 0)."""
    small = x < 1e-3
    xs = jnp.where(small, 1.0, x)
    em = jnp.exp(-xs)
    i1 = jnp.where(small, 0.5 - x / 3 + x**2 / 8 - x**3 / 30,
                   (-jnp.expm1(-xs) - xs * em) / xs**2)
    i0 = jnp.where(small, 1 - x / 2 + x**2 / 6 - x**3 / 24, -jnp.expm1(-xs) / xs)
    return h * i1, h * (i0 - i1), jnp.exp(-x)


@eqx.filter_jit
def _volterra_solve(problem, schedule, ts, grid, index, blowup):
    lam, mu, u0, w = _rates(problem)
    g = jax.vmap(schedule)(grid).astype(grid.dtype)
    gmid = jax.vmap(schedule)(0.5 * (grid[1:] + grid[:-1])).astype(grid.dtype)
    dG = (grid[1:] - grid[:-1]) / 6.0 * (g[:-1] + 4 * gmid + g[1:])
    Gamma = jnp.concatenate([jnp.zeros(1, grid.dtype), jnp.cumsum(dG)])
    grid = eqx.error_if(grid, ~jnp.all(g > 0), "the learning rate must be positive (and finite) "
                        "on the whole time grid")
    bound = _blowup_bound(problem, blowup)
    num_out = ts.shape[0]
    slot = jnp.full(grid.shape[0], num_out).at[index].set(jnp.arange(num_out))
    var0 = jnp.zeros_like(lam)
    psi0 = problem.gradient_flow_loss(0.0)
    saved0 = jnp.zeros((num_out + 1, lam.shape[0]), lam.dtype).at[slot[0]].set(var0)

    def step(carry, inp):
        var, psi, gk, saved, bad = carry
        dGk, G1, g1, s1 = inp
        w0, w1, decay = _exp_weights(2.0 * mu * dGk, dGk)
        pred = decay * var + u0 * w0 * gk * psi
        c1 = u0 * w1 * g1
        denom = 1.0 - jnp.dot(w, c1)
        psi1 = problem.loss_from_variance(G1, pred) / denom
        var1 = pred + c1 * psi1
        bad = bad | ~(denom > 0) | ~(psi1 < bound)
        saved = saved.at[s1].set(var1)
        return (var1, psi1, g1, saved, bad), (psi1, bad)

    init = (var0, psi0, g[0], saved0, jnp.zeros((), bool))
    (_, _, _, saved, _), (psis, bads) = jax.lax.scan(step, init, (dG, Gamma[1:], g[1:], slot[1:]))
    psis = jnp.concatenate([psi0[None], psis])
    bads = jnp.concatenate([jnp.zeros(1, bool), bads])
    var_out = saved[:num_out]
    G_out = Gamma[index]
    risk = jax.vmap(problem.risk_from_variance)(G_out, var_out)
    return _finish(problem, ts, psis[index], risk, g[index], G_out, bads[index],
                   jnp.asarray(grid.shape[0] - 1))
