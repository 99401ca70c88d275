"""Finite data: multi-pass SGD on least squares (SPEC §2) — problem, deterministic equivalents
(per-mode ODE and Volterra equation), theory helpers and the SGD simulator over rows."""

from .dynamics import (
    FiniteSolution as FiniteSolution,
    LinearKvaerno5 as LinearKvaerno5,
    ode as ode,
    volterra as volterra,
    volterra_grid as volterra_grid,
)
from .momentum import (
    MomentumSolution as MomentumSolution,
    heavy_ball_coefficient as heavy_ball_coefficient,
    momentum_recursion as momentum_recursion,
)
from .momentum_sgd import simulate_momentum as simulate_momentum
from .momentum_theory import (
    Conditioning as Conditioning,
    MomentumParameters as MomentumParameters,
    conditioning as conditioning,
    gdm_rate as gdm_rate,
    heavy_ball_roots as heavy_ball_roots,
    momentum_converges as momentum_converges,
    momentum_kernel_norm as momentum_kernel_norm,
    momentum_limit_loss as momentum_limit_loss,
    momentum_limit_risk as momentum_limit_risk,
    momentum_noise_rate as momentum_noise_rate,
    momentum_rate as momentum_rate,
    momentum_stepsize_limit as momentum_stepsize_limit,
    near_optimal_parameters as near_optimal_parameters,
    optimize_momentum as optimize_momentum,
)
from .problem import Data as Data, FiniteProblem as FiniteProblem, Population as Population
from .saturation import (
    Saturation as Saturation,
    batch_saturation as batch_saturation,
    rate_map as rate_map,
    rate_maps as rate_maps,
)
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
