"""Schedule tuning through the deterministic dynamics (SPEC §4): `tune`, baselines, SGD check —
for every (problem, optimizer) pair whose `ode` is differentiable."""

from .baselines import (
    BASELINES as BASELINES,
    Candidate as Candidate,
    baselines as baselines,
    best_constant as best_constant,
    best_cosine as best_cosine,
    best_critical as best_critical,
    best_step_decay as best_step_decay,
    compare as compare,
    format_comparison as format_comparison,
)
from .common import OBJECTIVES as OBJECTIVES, TuneResult as TuneResult
from .predictor import (
    AbstractPredictor as AbstractPredictor,
    FinitePredictor as FinitePredictor,
    MomentumPredictor as MomentumPredictor,
    Predictor as Predictor,
    StreamingPredictor as StreamingPredictor,
    predictor_for as predictor_for,
)
from .tune import FAMILIES as FAMILIES, tune as tune
