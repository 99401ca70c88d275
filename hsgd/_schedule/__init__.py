"""Learning-rate schedules $\\gamma(t)$ (SPEC §4): `eqx.Module`s with float array parameters."""

from .base import AbstractSchedule as AbstractSchedule
from .constant import Constant as Constant
from .cosine import Cosine as Cosine
from .decay import ExponentialDecay as ExponentialDecay, StepDecay as StepDecay
from .function import FunctionSchedule as FunctionSchedule, as_schedule as as_schedule
from .piecewise_linear import PiecewiseLinear as PiecewiseLinear
from .warmup import WarmupDecay as WarmupDecay
