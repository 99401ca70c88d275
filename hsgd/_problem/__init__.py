"""Problems: what the data and the loss are (one axis of the problems × optimizers table)."""

from .base import AbstractProblem as AbstractProblem
from .finite import Data as Data, FiniteProblem as FiniteProblem, Population as Population
from .plrf import PLRF as PLRF
from .streaming import Problem as Problem
