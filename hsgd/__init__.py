"""hsgd: deterministic equivalents of SGD in high dimension — the ODE, homogenized SGD and SGD.

See SPEC.md for the equations; every public name has a docstring with the one it implements.
"""

from ._expectations import (
    GaussianRule as GaussianRule,
    default_rule as default_rule,
    psd_factor as psd_factor,
)
from ._finite import (
    Conditioning as Conditioning,
    FiniteProblem as FiniteProblem,
    FiniteSGDResult as FiniteSGDResult,
    FiniteSolution as FiniteSolution,
    LinearKvaerno5 as LinearKvaerno5,
    MomentumParameters as MomentumParameters,
    MomentumSolution as MomentumSolution,
    Saturation as Saturation,
    asymptotic_rate as asymptotic_rate,
    batch_saturation as batch_saturation,
    conditioning as conditioning,
    gamma_max as gamma_max,
    gdm_rate as gdm_rate,
    heavy_ball_roots as heavy_ball_roots,
    kernel_norm as kernel_norm,
    limit_loss as limit_loss,
    limit_risk as limit_risk,
    malthusian_root as malthusian_root,
    marchenko_pastur_edge as marchenko_pastur_edge,
    momentum_converges as momentum_converges,
    momentum_kernel_norm as momentum_kernel_norm,
    momentum_limit_loss as momentum_limit_loss,
    momentum_limit_risk as momentum_limit_risk,
    momentum_noise_rate as momentum_noise_rate,
    momentum_rate as momentum_rate,
    momentum_recursion as momentum_recursion,
    momentum_stepsize_limit as momentum_stepsize_limit,
    near_optimal_parameters as near_optimal_parameters,
    optimize_momentum as optimize_momentum,
    phase_transition_stepsize as phase_transition_stepsize,
    rate_map as rate_map,
    rate_maps as rate_maps,
    simulate_momentum as simulate_momentum,
    volterra as volterra,
)
from ._loss import (
    AbstractLoss as AbstractLoss,
    CustomLoss as CustomLoss,
    LeastSquares as LeastSquares,
    Logistic as Logistic,
    Moments as Moments,
    PhaseRetrieval as PhaseRetrieval,
    Softmax as Softmax,
)
from ._noise import (
    AbstractNoise as AbstractNoise,
    BernoulliTeacher as BernoulliTeacher,
    CategoricalTeacher as CategoricalTeacher,
    GaussianNoise as GaussianNoise,
    NoNoise as NoNoise,
)
from ._ode import (
    SGDModes as SGDModes,
    Solution as Solution,
    Statistic as Statistic,
    least_squares_as_finite as least_squares_as_finite,
    ode as ode,
)
from ._plot import rate_map_figure as rate_map_figure, saturation_figure as saturation_figure
from ._problem import Problem as Problem
from ._refinement import CoarseningError as CoarseningError, coarsening_error as coarsening_error
from ._schedule import (
    AbstractSchedule as AbstractSchedule,
    AbstractTunableSchedule as AbstractTunableSchedule,
    Constant as Constant,
    Cosine as Cosine,
    ExponentialDecay as ExponentialDecay,
    FunctionSchedule as FunctionSchedule,
    PiecewiseLinear as PiecewiseLinear,
    StepDecay as StepDecay,
    TunableConstant as TunableConstant,
    TunableKnots as TunableKnots,
    TunableSoftplus as TunableSoftplus,
    TunableWarmupDecay as TunableWarmupDecay,
    WarmupDecay as WarmupDecay,
    as_schedule as as_schedule,
)
from ._sde import sde as sde
from ._sgd import SGDResult as SGDResult, simulate as simulate
from ._spectrum import Spectrum as Spectrum
from ._structured import (
    AbstractModeDynamics as AbstractModeDynamics,
    ModeSystem as ModeSystem,
    StructuredKvaerno5 as StructuredKvaerno5,
)
from ._sweep import grid as grid, ode_outcomes as ode_outcomes, sweep as sweep
from ._tune import (
    AbstractPredictor as AbstractPredictor,
    Candidate as Candidate,
    FinitePredictor as FinitePredictor,
    MomentumPredictor as MomentumPredictor,
    StreamingPredictor as StreamingPredictor,
    TuneResult as TuneResult,
    baselines as baselines,
    compare as compare,
    format_comparison as format_comparison,
    tune as tune,
)

__version__ = "0.1.0"
