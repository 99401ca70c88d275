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

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx

from .._custom_types import PRNGKey
from .._expectations import psd_factor
from .._optimizer import SGD
from .._problem import Problem
from .._registry import register
from .._results import Runs
from .._risk import DEFAULT_RISK_SAMPLES
from .common import streaming_arguments, streaming_runs


@register("sde", Problem, SGD)
def sde(problem: Problem, optimizer: SGD, ts, key: PRNGKey, *, num_paths: int = 8, dt=None,
        solver: diffrax.AbstractSolver | None = None, coupled: bool = False,
        blowup: float = 1e6, risk_samples: int = DEFAULT_RISK_SAMPLES) -> Runs:
    r"""Sample `num_paths` paths of homogenized SGD (SPEC §1) and record them at times `ts`:
    the cell [`Problem`][] × [`SGD`][] of [`hsgd.sde`][].

    $$dX_t = -\gamma_t \nabla R(X_t)\,dt
    + \gamma_t\sqrt{\tfrac{K}{d}\otimes \tfrac{I(B_t)}{\beta}}\; d\mathcal{B}_t,\qquad
    \nabla R(X) = K W J(B)^\top,\quad B = W^\top K W,\quad W = [X\mid X^*],$$

    posed in the eigenbasis of $K$, started at `problem.X0`. Its paths have the same mean and
    the same $O(d^{-1/2})$ fluctuations as one-pass SGD ([`simulate`][]) at a cost per unit
    time of $O(d\,m/\Delta t)$ instead of $O(d^2 m)$; their mean follows [`ode`][].

    **Arguments:**

    - `problem`: a [`Problem`][] with an instance (`X_star`, `X0`), e.g. from
      [`Problem.random`][hsgd.Problem.random] or [`Problem.from_arrays`][hsgd.Problem.from_arrays].
    - `optimizer`: [`SGD`][]: the learning rate $\gamma(t)$ and the mini-batch size
      $\beta \ge 1$ (the noise covariance is divided by $\beta$).
    - `ts`: non-decreasing record times $\ge 0$ (the solve starts at $t = 0$ and steps exactly
      onto every record time).
    - `key`: a JAX PRNG key, split into `num_paths` independent paths (one jitted, vmapped
      solve samples all of them).
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

    **Returns:** [`Runs`][] (the type [`simulate`][] returns too): `risk` $(P, T)$ is
    the population risk $h(W^\top K W)$ of each path computed as [`simulate`][] does
    (independently of the ODE's rule, SE in `risk_se`; NaN after divergence), `B`,
    `distance` $\|X - X^*\|^2$ (NaN when $m \ne m^*$), `diverged`, `divergence_time`.

    Example:

    ```python
    spec = hsgd.Spectrum.uniform(1000, 0.2, 1.8)
    prob = hsgd.Problem.random(hsgd.LeastSquares(0.5), spec, jax.random.PRNGKey(0))
    ts = jnp.linspace(0, 4, 21)
    res = hsgd.sde(prob, hsgd.SGD(1.0), ts, jax.random.PRNGKey(1), num_paths=16)
    res.mean(), res.std()          # compare with hsgd.ode(prob, 1.0, ts).risk
    ```
    """
    schedule, ts, grid, batch, num_paths, solver = streaming_arguments(
        problem, optimizer, ts, num_paths, dt, solver, coupled, blowup)
    return _solve(problem, schedule, ts, grid, key, batch, num_paths, solver, bool(coupled),
                  float(blowup), int(risk_samples))


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

    return streaming_runs(problem, drift, diffusion, ts, grid, key, num_paths, solver, coupled,
                          blowup, risk_samples)
