"""Optimizers: how the iterate moves (the other axis of the problems × optimizers table)."""

from .._registry import register_optimizer as _register
from .adaptive import (
    AbstractFeedback as AbstractFeedback,
    AdaGradNorm as AdaGradNorm,
    FeedbackSchedule as FeedbackSchedule,
    FeedbackState as FeedbackState,
    LineSearch as LineSearch,
    Polyak as Polyak,
)
from .base import AbstractOptimizer as AbstractOptimizer
from .convert import as_optimizer as as_optimizer
from .heavy_ball import HeavyBall as HeavyBall
from .linear_momentum import (
    DANAConstant as DANAConstant,
    DANADecaying as DANADecaying,
    LinearMomentum as LinearMomentum,
)
from .sgd import SGD as SGD
from .sign_sgd import SignSGD as SignSGD

_register("sgd", SGD)
_register("heavy_ball", HeavyBall)
_register("signsgd", SignSGD)
_register("momentum", LinearMomentum)
_register("dana_constant", DANAConstant)
_register("dana_decaying", DANADecaying)
_register("adagrad_norm", AdaGradNorm)
_register("line_search", LineSearch)
_register("polyak", Polyak)
