from .base import AbstractLoss as AbstractLoss, Moments as Moments
from .custom import CustomLoss as CustomLoss
from .least_squares import LeastSquares as LeastSquares
from .logistic import Logistic as Logistic
from .phase_retrieval import PhaseRetrieval as PhaseRetrieval
from .softmax import Softmax as Softmax
