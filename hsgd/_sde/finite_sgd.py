r"""Homogenized SGD for multi-pass least squares on finite data (SPEC §2).

$$dX_t = -\gamma_t\nabla f(X_t)\,dt + \gamma_t\sqrt{\tfrac{2}{n}L(X_t)\,A^\top A}\;d\mathcal B_t,
\qquad f = L + \tfrac\delta2\|x\|^2,$$

posed in the eigenbasis of $A^\top A$: with $e = V^\top(X - x_{\rm opt})$ every mode moves
independently given the scalar loss,

$$de_j = -\gamma_t(\lambda_j + \delta)\,e_j\,dt + \gamma_t\sqrt{2L(e)\lambda_j/n}\;d\mathcal B_j,
\qquad L(e) = L_{\min} - \delta\sum_jc_je_j + \tfrac12\sum_j\lambda_je_j^2,$$

so a step costs $O(d)$; time is in epochs ($t = k/n$). Its mean loss follows the per-mode ODE
/ Volterra equation and its paths fluctuate like SGD's.
"""

import diffrax
import equinox as eqx
import jax.numpy as jnp
import lineax as lx
import numpy as np

from .._blowup import after_first, nan_where
from .._custom_types import PRNGKey
from .._optimizer import SGD
from .._problem import FiniteProblem
from .._registry import register
from .._results import Runs
from .common import prepare, sample_paths


@register("sde", FiniteProblem, SGD)
def sde(problem: FiniteProblem, optimizer: SGD, ts, key: PRNGKey, *, num_paths: int = 8,
        dt=None, solver: diffrax.AbstractSolver | None = None, coupled: bool = False,
        blowup: float = 1e6) -> Runs:
    r"""Sample `num_paths` paths of the finite-data homogenized SGD above at epochs `ts`: the
    cell [`FiniteProblem`][] × [`SGD`][] of [`hsgd.sde`][]. The options are those of the
    streaming cell ([`hsgd._sde.streaming_sgd.sde`][]); the problem needs one mode per
    eigen-direction (counts all 1) and the optimizer batch 1 (the summed mini-batch gradient
    gives the same diffusion in epochs).

    **Returns:** [`Runs`][] (`loss`, `risk`).
    """
    if not np.all(np.asarray(problem.counts) == 1):
        raise ValueError("sde on a FiniteProblem needs one mode per eigen-direction (counts all "
                         "1): build it from data or from an explicit spectrum, not "
                         "marchenko_pastur")
    if float(optimizer.batch) != 1:
        raise ValueError(f"batch is not a parameter of the finite-data SDE (the summed mini-batch "
                         f"gradient gives the same diffusion in epochs); got "
                         f"batch={optimizer.batch}")
    schedule = optimizer.schedule
    ts_np, grid, num_paths = prepare(problem, schedule, ts, num_paths, dt, coupled, blowup,
                                     "epoch")
    solver = diffrax.Euler() if solver is None else solver
    dtype = problem.eigenvalues.dtype
    return _solve(problem, schedule, jnp.asarray(ts_np, dtype), jnp.asarray(grid, dtype), key,
                  num_paths, solver, bool(coupled), float(blowup))


@eqx.filter_jit
def _solve(problem, schedule, ts, grid, key, num_paths, solver, coupled, blowup):
    lam = problem.eigenvalues
    mu = lam + problem.ridge
    root_lam = jnp.sqrt(lam)

    def drift(t, e, args):
        return -schedule(t).astype(e.dtype) * mu * e

    def diffusion(t, e, args):
        loss = jnp.maximum(problem.loss_at(e), 0.0)
        scale = schedule(t).astype(e.dtype) * jnp.sqrt(2.0 * loss / problem.n) * root_lam
        return lx.DiagonalLinearOperator(scale)

    bound = blowup * (1.0 + problem.loss_at(problem.init_error))

    def blew_up(t, e, args, **kwargs):
        return ~(problem.loss_at(e) < bound)

    def save(t, e, args):
        return problem.loss_at(e), problem.risk_at(e)

    (loss, risk), unsaved = sample_paths(problem.init_error, drift, diffusion, blew_up, save, ts,
                                         grid, key, num_paths, solver, coupled)
    mask, diverged, time = after_first(ts, unsaved | ~(loss < bound))
    return Runs(ts=ts, loss=nan_where(mask, loss), risk=nan_where(mask, risk),
                diverged=diverged, divergence_time=time)
