r"""Homogenized SGD with momentum: the SDE with the drift and the noise covariance of the linear
momentum family (SPEC §9) per unit time $t = k/d$.

In the eigenbasis of $K = \operatorname{diag}(\lambda)$, with $W = [X\mid X^*]$, $B = W^\top KW$
and $\nabla R(X) = KWJ(B)^\top$,

$$dX_t = -\big(\bar\gamma_2\nabla R + \bar\gamma_3Y_t\big)\,dt - \bar\gamma_2\,d\mathcal M_t,
\qquad dY_t = \big(\bar\gamma_1\nabla R - \delta\,Y_t\big)\,dt + \bar\gamma_1\,d\mathcal M_t,$$

$d\mathcal M_t = \sqrt{\tfrac1\beta\tfrac Kd\otimes I(B_t)}\,d\mathcal B_t$ one $d\times m$
Brownian noise shared by both (the same gradient noise $G_k - \nabla R$ enters $x$ with
$-\gamma_2$ and $y$ with $+\gamma_1$): the per-mode second moments of its paths follow
[`ode`][]'s $V_j' = A_jV_j + V_jA_j^\top + (\lambda_j/\beta)\,cc^\top\otimes I(B)$ to leading
order. Row $j$ of $d\mathcal M$ is $\sqrt{\lambda_j/(d\beta)}\,L(B)\,\Delta\xi_j$ with
$LL^\top = I(B)$: $O(dm)$ per step.
"""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx

from .._custom_types import PRNGKey
from .._dynamics.streaming_momentum import heavy_ball_family
from .._expectations import psd_factor
from .._optimizer import HeavyBall
from .._optimizer.linear_momentum import (
    DANAConstant,
    DANADecaying,
    LinearMomentum,
    check_coefficients,
)
from .._problem import Problem
from .._registry import register
from .._results import Runs
from .._risk import DEFAULT_RISK_SAMPLES
from .common import streaming_arguments, streaming_runs


@register("sde", Problem, LinearMomentum)
def sde(problem: Problem, optimizer: LinearMomentum, ts, key: PRNGKey, *, num_paths: int = 8,
        dt=None, solver: diffrax.AbstractSolver | None = None, coupled: bool = False,
        blowup: float = 1e6, risk_samples: int = DEFAULT_RISK_SAMPLES) -> Runs:
    r"""Sample `num_paths` paths of homogenized SGD with momentum (module docstring) and record
    them at `ts`: the cells [`Problem`][] × [`LinearMomentum`][] (and its presets, and
    [`HeavyBall`][] as the family) of [`hsgd.sde`][].

    $$dX = -(\bar\gamma_2\nabla R + \bar\gamma_3Y)\,dt - \bar\gamma_2\,d\mathcal M,\qquad
    dY = (\bar\gamma_1\nabla R - \delta Y)\,dt + \bar\gamma_1\,d\mathcal M,\qquad Y_0 = 0.$$

    **Arguments:** as for SGD's [`sde`][]: a `problem` with an instance, the `optimizer`,
    record times `ts`, a PRNG `key`, `num_paths`, `dt` (default $\min(0.05,\
    0.01/(\max(\bar\gamma_2, \bar\gamma_1\bar\gamma_3/\delta)\lambda_{\max}))$ over the probe
    times, and at most $0.1/\max\delta$: the momentum relaxes at rate $\delta$),
    `solver` (default Euler–Maruyama), `coupled`, `blowup`, `risk_samples`.

    **Returns:** [`Runs`][] (`risk`, `risk_se`, `B`, `distance`, `diverged`,
    `divergence_time`), recorded as [`simulate`][] records the family.
    """
    optimizer = optimizer.linear(problem)
    check_coefficients(optimizer, ts)
    if dt is None:
        dt = _default_dt(problem, optimizer, ts)
    _, ts, grid, batch, num_paths, solver = streaming_arguments(
        problem, optimizer, ts, num_paths, dt, solver, coupled, blowup)
    return _solve(problem, optimizer, ts, grid, key, batch, num_paths, solver, bool(coupled),
                  float(blowup), int(risk_samples))


def _default_dt(problem, optimizer, ts):
    import numpy as np

    from .._checks import probe_times
    from .common import default_dt

    probe = jnp.asarray(probe_times(np.asarray(ts, dtype=float)))
    g1, g2, g3, dl = (np.asarray(jax.vmap(s)(probe)) for s in optimizer.coefficients())
    effective = g2 + g1 * g3 / np.maximum(dl, 1e-300)
    dt = default_dt(problem, float(np.max(np.where(np.isfinite(effective), effective, g2))))
    return min(dt, 0.1 / float(np.max(dl))) if np.max(dl) > 0 else dt


for _preset in (DANAConstant, DANADecaying):
    register("sde", Problem, _preset)(sde)


@register("sde", Problem, HeavyBall)
def sde_heavy_ball(problem: Problem, optimizer: HeavyBall, ts, key: PRNGKey, *,
                   num_paths: int = 8, dt=None, solver: diffrax.AbstractSolver | None = None,
                   coupled: bool = False, blowup: float = 1e6,
                   risk_samples: int = DEFAULT_RISK_SAMPLES) -> Runs:
    r"""Homogenized streaming heavy ball: the family's [`sde`][hsgd._sde.streaming_momentum.sde]
    at [`LinearMomentum.heavy_ball`][hsgd.LinearMomentum.heavy_ball]'s coefficients in the
    problem's dimension."""
    return sde(problem, heavy_ball_family(problem, optimizer), ts, key, num_paths=num_paths,
               dt=dt, solver=solver, coupled=coupled, blowup=blowup, risk_samples=risk_samples)


@eqx.filter_jit
def _solve(problem, optimizer, ts, grid, key, batch, num_paths, solver, coupled, blowup,
           risk_samples):
    lam = problem.spectrum.eigenvalues.astype(ts.dtype)
    d = lam.shape[0]
    X_star = problem.X_star
    loss = problem.loss
    m = problem.X0.shape[1]
    noise_scale = jnp.sqrt(lam / d)[:, None]
    y0 = jnp.concatenate([problem.X0, jnp.zeros_like(problem.X0)], axis=1)
    shape = jax.ShapeDtypeStruct(y0.shape, y0.dtype)

    def moments(Z):
        W = jnp.concatenate([Z[:, :m], X_star], axis=1)
        B = (W.T * lam) @ W
        return W, loss.moments(B)

    def coefficients(t, dtype):
        return (s(t).astype(dtype) for s in optimizer.coefficients())

    def drift(t, Z, args):
        g1, g2, g3, dl = coefficients(t, Z.dtype)
        W, mom = moments(Z)
        grad = lam[:, None] * (W @ mom.J.T)
        Y = Z[:, m:]
        return jnp.concatenate([-g2 * grad - g3 * Y, g1 * grad - dl * Y], axis=1)

    def diffusion(t, Z, args):
        g1, g2, _, _ = coefficients(t, Z.dtype)
        _, mom = moments(Z)
        L = psd_factor(mom.I.astype(Z.dtype))
        scale = noise_scale / jnp.sqrt(batch)

        def apply(dB):
            dM = scale * (dB[:, :m] @ L.T)  # the first m columns drive the shared noise
            return jnp.concatenate([-g2 * dM, g1 * dM], axis=1)

        return lx.FunctionLinearOperator(apply, shape)

    return streaming_runs(problem, drift, diffusion, ts, grid, key, num_paths, solver, coupled,
                          blowup, risk_samples, y0=y0)
