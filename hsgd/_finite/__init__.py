"""Finite data: multi-pass SGD on least squares (SPEC §2) — problem, deterministic equivalents
(per-mode ODE and Volterra equation), theory helpers and the SGD simulator over rows."""

from .dynamics import (
    FiniteSolution as FiniteSolution,
    LinearKvaerno5 as LinearKvaerno5,
    ode as ode,
    volterra as volterra,
    volterra_grid as volterra_grid,
)
from .problem import Data as Data, FiniteProblem as FiniteProblem, Population as Population
from .sgd import FiniteSGDResult as FiniteSGDResult, simulate as simulate
from .theory import (
    asymptotic_rate as asymptotic_rate,
    gamma_max as gamma_max,
    kernel_norm as kernel_norm,
    limit_loss as limit_loss,
    limit_risk as limit_risk,
    malthusian_root as malthusian_root,
    marchenko_pastur_edge as marchenko_pastur_edge,
    phase_transition_stepsize as phase_transition_stepsize,
)
