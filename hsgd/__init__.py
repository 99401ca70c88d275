"""hsgd: deterministic equivalents of SGD in high dimension — the ODE, homogenized SGD and SGD.

See SPEC.md for the equations; every public name has a docstring with the one it implements.
"""

from . import (
    _cells as _cells,  # registers the built-in cells of the table
    scaling as scaling,
    theory as theory,
)
from ._dynamics.finite_heavy_ball import momentum_recursion as momentum_recursion
from ._dynamics.finite_sgd import LinearKvaerno5 as LinearKvaerno5
from ._dynamics.refinement import (
    CoarseningError as CoarseningError,
    coarsening_error as coarsening_error,
)
from ._dynamics.streaming_sgd import (
    SGDModes as SGDModes,
    Statistic as Statistic,
    least_squares_as_finite as least_squares_as_finite,
)
from ._dynamics.structured import (
    AbstractModeDynamics as AbstractModeDynamics,
    ModeSystem as ModeSystem,
    StructuredKvaerno5 as StructuredKvaerno5,
)
from ._expectations import (
    ExpectationAccuracyWarning as ExpectationAccuracyWarning,
    GaussianRule as GaussianRule,
    default_rule as default_rule,
    psd_factor as psd_factor,
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
from ._methods import ode as ode, sde as sde, simulate as simulate, volterra as volterra
from ._noise import (
    AbstractNoise as AbstractNoise,
    BernoulliTeacher as BernoulliTeacher,
    CategoricalTeacher as CategoricalTeacher,
    DensityNoise as DensityNoise,
    GaussianNoise as GaussianNoise,
    NoNoise as NoNoise,
    SampledNoise as SampledNoise,
    StudentTNoise as StudentTNoise,
)
from ._optimizer import (
    SGD as SGD,
    AbstractFeedback as AbstractFeedback,
    AbstractOptimizer as AbstractOptimizer,
    AdaGradNorm as AdaGradNorm,
    DANAConstant as DANAConstant,
    DANADecaying as DANADecaying,
    FeedbackSchedule as FeedbackSchedule,
    FeedbackState as FeedbackState,
    HeavyBall as HeavyBall,
    LinearMomentum as LinearMomentum,
    LineSearch as LineSearch,
    Polyak as Polyak,
    SignSGD as SignSGD,
)
from ._plot import rate_map_figure as rate_map_figure, saturation_figure as saturation_figure
from ._problem import (
    PLRF as PLRF,
    AbstractProblem as AbstractProblem,
    FiniteProblem as FiniteProblem,
    Problem as Problem,
)
from ._registry import (
    UnsupportedError as UnsupportedError,
    register as register,
    register_optimizer as register_optimizer,
    supported as supported,
)
from ._results import Runs as Runs, Solution as Solution
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
    TunableModulated as TunableModulated,
    TunableSoftplus as TunableSoftplus,
    TunableWarmupDecay as TunableWarmupDecay,
    WarmupDecay as WarmupDecay,
    as_schedule as as_schedule,
)
from ._simulate.finite_heavy_ball import simulate_momentum as simulate_momentum
from ._spectrum import Spectrum as Spectrum
from ._sweep import grid as grid, ode_outcomes as ode_outcomes, sweep as sweep
from ._tune import (
    AbstractPredictor as AbstractPredictor,
    Candidate as Candidate,
    FinitePredictor as FinitePredictor,
    MomentumPredictor as MomentumPredictor,
    Predictor as Predictor,
    StreamingPredictor as StreamingPredictor,
    TuneResult as TuneResult,
    baselines as baselines,
    compare as compare,
    format_comparison as format_comparison,
    tune as tune,
)

__version__ = "0.1.0"
