r"""Batch-size saturation of SGD with momentum (SPEC §3, 2206.01029): the best achievable rate
as the batch fraction $\zeta$ grows, and maps of the exact rate over $(\Delta, \gamma)$.

The theory (the talk's near-optimal parameters, SPEC §3): for small batches the optimised
exponent $-\log(\text{rate})$ grows like $2\zeta/\bar\kappa$ per iteration — SGD+M is no better
than SGD and the rate per *epoch* does not depend on the batch — until it meets the full-batch
heavy-ball rate, $O(1/\sqrt\kappa)$; the line meets the plateau at the knee
$\zeta\approx\bar\kappa/\sqrt\kappa$ = ICR (with the talk's formulas exactly where
$\zeta/(1-\zeta)$ = ICR). Beyond it a larger batch no longer buys a faster rate per iteration.
The knee measured on the exact optimised rates is of the order of ICR, not equal to it: the
exact full-batch optimum $((\sqrt\kappa-1)/(\sqrt\kappa+1))^2$ decays like $4/\sqrt\kappa$,
twice the guide's plateau, and the small-batch slope differs from $2/\bar\kappa$ by the
spectrum's shape (measured: 2.3 ICR on Gaussian data $n = 3000$, $d = 300$; 1.1 ICR on
random features of scikit-learn's digits; `benchmarks/momentum.py`, `notebooks/momentum.ipynb`).
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .._dynamics.finite_heavy_ball import ode
from .._optimizer import HeavyBall
from .._problem import FiniteProblem
from .momentum import (
    Conditioning,
    conditioning,
    momentum_limit_loss,
    momentum_rate,
    momentum_stepsize_limit,
    optimize_momentum,
)


class Saturation(eqx.Module):
    r"""Output of [`batch_saturation`][], arrays over the batch fractions `Z`.

    - `batch_fraction` $\zeta$; `rate`, `gamma`, `momentum`: the optimised SGD+M rate per
      iteration and its parameters ([`optimize_momentum`][]); `sgd_rate`, `sgd_gamma`: the best
      plain SGD ($\Delta = 0$);
    - `epoch_rate` $=$ `rate`$^{1/\zeta}$: the rate per pass over the data;
    - `heavy_ball_rate`: $((\sqrt\kappa-1)/(\sqrt\kappa+1))^2$, full-batch heavy ball's optimum;
    - `loss_iterations` $(Z,)$: $\psi_K$ after `iterations` $= K$ steps at the optimised
      parameters; `loss_epochs` $(Z,)$: $\psi$ after `epochs` passes
      ($\operatorname{round}(E/\zeta)$ steps); `limit_loss` $(Z,)$: $\psi_\infty$ there (NaN when
      not asked);
    - `conditioning` ($\bar\kappa$, $\kappa$, ICR); `knee`: the measured knee, where the
      small-batch line through the smallest $\zeta$ ($-\log$ rate $\propto\zeta$) reaches the
      exponent of the largest $\zeta$ (the plateau); the talk's guides (slope $2/\bar\kappa$,
      plateau $2/\sqrt\kappa$) put it at ICR, the exact rates at the order of ICR (module
      docstring).
    """

    batch_fraction: Float[Array, " Z"]
    rate: Float[Array, " Z"]
    gamma: Float[Array, " Z"]
    momentum: Float[Array, " Z"]
    sgd_rate: Float[Array, " Z"]
    sgd_gamma: Float[Array, " Z"]
    epoch_rate: Float[Array, " Z"]
    heavy_ball_rate: Float[Array, ""]
    loss_iterations: Float[Array, " Z"]
    loss_epochs: Float[Array, " Z"]
    limit_loss: Float[Array, " Z"]
    iterations: int | None = eqx.field(static=True)
    epochs: float | None = eqx.field(static=True)
    conditioning: Conditioning | None = None
    knee: Float[Array, ""] | None = None


def batch_saturation(problem: FiniteProblem, batch_fractions, *, iterations: int | None = None,
                     epochs: float | None = None, **optimizer_options) -> Saturation:
    r"""The batch-saturation study: for each batch fraction $\zeta$, the best SGD+M rate per
    iteration over $(\gamma, \Delta)$ (and the best plain SGD rate), and optionally the loss
    after a fixed number of `iterations` or of `epochs` at those parameters (from
    [`hsgd.ode`][] on [`HeavyBall`][]).

    **Arguments:** `problem`; `batch_fractions`: increasing values in $(0, 1]$; `iterations`,
    `epochs`: horizons for the losses (optional); `optimizer_options` go to
    [`optimize_momentum`][]. The optimisation is vmapped over $\zeta$.

    **Returns:** a [`Saturation`][] with the measured knee next to the ICR.

    ```python
    prob = hsgd.FiniteProblem.gaussian(3000, 300, noise_std=0.3)
    sat = hsgd.theory.batch_saturation(prob, np.geomspace(0.005, 0.95, 16), iterations=200)
    print(sat.knee, sat.conditioning.icr)
    ```
    """
    zs = np.asarray(batch_fractions, dtype=float)
    if zs.ndim != 1 or zs.size == 0 or np.any(zs <= 0) or np.any(zs > 1) or \
            np.any(np.diff(zs) <= 0):
        raise ValueError(f"batch_fractions must be an increasing 1-D array in (0, 1], got {zs}")
    dtype = problem.eigenvalues.dtype
    z = jnp.asarray(zs, dtype)
    best = jax.vmap(lambda z: optimize_momentum(problem, z, **optimizer_options))(z)
    sgd = jax.vmap(lambda z: optimize_momentum(problem, z, momentum=0.0,
                                               **optimizer_options))(z)
    cond = conditioning(problem)
    hb = ((jnp.sqrt(cond.classic) - 1) / (jnp.sqrt(cond.classic) + 1)) ** 2
    nan = jnp.full(z.shape, jnp.nan, dtype)
    loss_k = loss_e = nan
    if iterations is not None or epochs is not None:
        steps = [] if iterations is None else [int(iterations)]
        per_z = (np.zeros(zs.size, dtype=np.int64) if epochs is None
                 else np.rint(float(epochs) / zs).astype(np.int64))
        horizon = int(max(steps + [int(per_z.max())]))

        def path(g, d, z):
            return ode(problem, HeavyBall(g, d, batch_fraction=z), [horizon]).loss_path

        paths = jax.vmap(path)(best.gamma, best.momentum, z)
        if iterations is not None:
            loss_k = paths[:, int(iterations)]
        if epochs is not None:
            loss_e = paths[jnp.arange(zs.size), jnp.asarray(per_z)]
    exponent = -jnp.log(best.rate)
    knee = exponent[-1] / (exponent[0] / z[0])
    return Saturation(batch_fraction=z, rate=best.rate, gamma=best.gamma,
                      momentum=best.momentum, sgd_rate=sgd.rate, sgd_gamma=sgd.gamma,
                      epoch_rate=best.rate ** (1.0 / z), heavy_ball_rate=hb,
                      loss_iterations=loss_k, loss_epochs=loss_e,
                      limit_loss=jax.vmap(lambda g, d, z: momentum_limit_loss(
                          problem, g, d, z))(best.gamma, best.momentum, z),
                      iterations=None if iterations is None else int(iterations),
                      epochs=None if epochs is None else float(epochs), conditioning=cond,
                      knee=knee)


def rate_map(problem: FiniteProblem, batch_fraction, gammas, momenta):
    r"""The exact rate [`momentum_rate`][] on the grid `momenta` $\times$ `gammas` (shape
    $(M, G)$) at one batch fraction — the heat map of the paper's figure. Values $\ge 1$:
    no convergence."""
    g = jnp.asarray(gammas, problem.eigenvalues.dtype)
    d = jnp.asarray(momenta, problem.eigenvalues.dtype)
    return _rate_map(problem, jnp.asarray(batch_fraction, g.dtype), g, d)


@eqx.filter_jit
def _rate_map(problem, zeta, gammas, momenta):
    return jax.vmap(lambda d: jax.vmap(lambda g: momentum_rate(problem, g, d, zeta))(gammas))(
        momenta)


def rate_maps(problem: FiniteProblem, batch_fractions, *, num_gammas: int = 60,
              num_momenta: int = 60, **optimizer_options) -> dict:
    r"""Heat maps of the exact rate over $(\Delta, \gamma)$ for several batch fractions, on a
    shared grid: $\Delta\in[0, 0.98]$ and $\gamma$ up to the largest convergence limit over
    the grid ([`momentum_stepsize_limit`][]). Returns a dict with `batch_fractions`, `gammas`
    $(G,)$, `momenta` $(M,)$, `rates` $(Z, M, G)$, and per $\zeta$ the optimum
    (`best_gamma`, `best_momentum`, `best_rate`, from [`optimize_momentum`][]) and the
    stepsize limit curve `limits` $(Z, M)$; `optimizer_options` go to
    [`optimize_momentum`][]."""
    dtype = problem.eigenvalues.dtype
    momenta = jnp.linspace(0.0, 0.98, num_momenta, dtype=dtype)
    zs = jnp.asarray(np.asarray(batch_fractions, dtype=float), dtype)
    limits = jax.vmap(lambda z: jax.vmap(lambda d: momentum_stepsize_limit(problem, d, z))(
        momenta))(zs)
    gammas = jnp.linspace(0.0, 1.05 * jnp.max(limits), num_gammas + 1, dtype=dtype)[1:]
    rates = jnp.stack([rate_map(problem, z, gammas, momenta) for z in zs])
    best = jax.vmap(lambda z: optimize_momentum(problem, z, **optimizer_options))(zs)
    return dict(batch_fractions=np.asarray(zs), gammas=np.asarray(gammas),
                momenta=np.asarray(momenta), rates=np.asarray(rates), limits=np.asarray(limits),
                best_gamma=np.asarray(best.gamma), best_momentum=np.asarray(best.momentum),
                best_rate=np.asarray(best.rate))
