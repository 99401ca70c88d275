from .base import AbstractSchedule as AbstractSchedule
from .constant import Constant as Constant
from .cosine import Cosine as Cosine
from .decay import ExponentialDecay as ExponentialDecay, StepDecay as StepDecay
from .function import as_schedule as as_schedule, FunctionSchedule as FunctionSchedule
from .piecewise_linear import PiecewiseLinear as PiecewiseLinear
from .warmup import WarmupDecay as WarmupDecay
