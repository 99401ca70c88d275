"""Learning-rate schedules $\\gamma(t)$ (SPEC §4): `eqx.Module`s with float array parameters."""

from .base import AbstractSchedule as AbstractSchedule
from .constant import Constant as Constant
from .cosine import Cosine as Cosine
from .decay import ExponentialDecay as ExponentialDecay, StepDecay as StepDecay
from .family import TunableWarmupDecay as TunableWarmupDecay
from .function import FunctionSchedule as FunctionSchedule, as_schedule as as_schedule
from .knots import (
    TunableKnots as TunableKnots,
    TunableModulated as TunableModulated,
    TunableSoftplus as TunableSoftplus,
)
from .piecewise_linear import PiecewiseLinear as PiecewiseLinear
from .tunable import (
    AbstractTunableSchedule as AbstractTunableSchedule,
    TunableConstant as TunableConstant,
)
from .warmup import WarmupDecay as WarmupDecay
