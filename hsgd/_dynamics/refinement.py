r"""How much coarsening a spectrum costs: a refinement estimate (SPEC §5).

Merging modes into bins changes the dynamics by $O(w^2)$ in the bins' (log-)width $w$: the bin's
$\omega$-weighted mean $\lambda_b$ cancels the first-order term (measured on power laws: the risk
error falls by ~16× for every 4× more bins). So the solution on $n$ bins and on $2n$ bins differ
by about $\tfrac34$ of the $n$-bin error, and
$$\widehat{\mathrm{err}}_n(t) = \tfrac43\,\frac{|R_n(t) - R_{2n}(t)|}{|R_{2n}(t)|}$$
estimates it on any problem, at the cost of one more solve on $2n$ bins.
"""

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float

from .._methods import ode
from .._problem import Problem
from .._results import Solution


class CoarseningError(eqx.Module):
    """The result of [`coarsening_error`][]: `solution` on the coarse problem, `finer` on twice
    as many bins, `estimate` $(T,)$ the estimated relative error of `solution.risk` from the
    coarsening alone (the solver's own error is separate: `solution.error_estimate`)."""

    solution: Solution
    finer: Solution
    estimate: Float[Array, " T"]


def coarsening_error(problem: Problem, optimizer, ts, num_bins: int, *, log: bool | None = None,
                     **ode_kwargs) -> CoarseningError:
    r"""Solve on `problem.coarsen(num_bins)` and on `problem.coarsen(2 * num_bins)` and estimate
    the coarsening error of the first as $\tfrac43|R_n - R_{2n}|/|R_{2n}|$ (second-order
    Richardson, see the module docstring). `ode_kwargs` go to [`ode`][] (both solves).

    ```python
    spec = hsgd.Spectrum.power_law(5000, 1.0)
    prob = hsgd.Problem.isotropic(hsgd.LeastSquares(0.5), spec, target_norm=1.0)
    est = hsgd.coarsening_error(prob, 1.0, jnp.linspace(0.0, 5.0, 6), 64)
    float(est.estimate.max())  # ~1e-4: 64 bins are within 1e-4 of the exact modes here
    ```
    """
    coarse = ode(problem.coarsen(num_bins, log=log), optimizer, ts, **ode_kwargs)
    finer = ode(problem.coarsen(2 * num_bins, log=log), optimizer, ts, **ode_kwargs)
    estimate = (4.0 / 3.0) * jnp.abs(coarse.risk - finer.risk) / jnp.abs(finer.risk)
    return CoarseningError(coarse, finer, estimate)
