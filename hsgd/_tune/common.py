r"""What tuning and its baselines share: the horizon, the time grid, the objective and the
result type (no module of `hsgd._tune` imports one that imports it back)."""

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .._optimizer import AbstractOptimizer
from .._schedule import AbstractSchedule
from .predictor import AbstractPredictor

OBJECTIVES = ("final", "average")


def check_horizon(horizon) -> float:
    """`horizon` as a float, or a ValueError naming the value."""
    try:
        value = float(horizon)
    except (TypeError, ValueError):
        raise ValueError(f"horizon must be a number > 0, got {horizon!r}") from None
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"horizon must be a finite number > 0 (the budget T), got {horizon!r}")
    return value


def time_grid(horizon, num_times: int) -> np.ndarray:
    """`num_times` equispaced times on $[0, T]$ (T checked)."""
    horizon = check_horizon(horizon)
    if int(num_times) < 2:
        raise ValueError(f"num_times must be >= 2, got {num_times}")
    return np.linspace(0.0, horizon, int(num_times))


def objective_value(objective: str, risk, ts):
    """$R(T)$ (`"final"`) or the trapezoidal time average $\\frac1T\\int_0^T R$ (`"average"`)."""
    if objective == "final":
        return risk[-1]
    return jnp.sum(0.5 * (risk[1:] + risk[:-1]) * jnp.diff(ts)) / (ts[-1] - ts[0])


def check_objective(objective: str) -> str:
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    return objective


class TuneResult(eqx.Module):
    r"""The output of [`tune`][].

    - `schedule`: the tuned schedule (the best iterate seen); `initial_schedule`;
    - `hyperparameters`: dict name → tuned value (empty when none were tuned);
    - `ts`, `risk`, `gamma`: the predicted risk and the tuned learning rate on the time grid;
      `initial_risk`: the prediction for the initial schedule;
    - `loss_history`: the objective after each accepted optimisation step (index 0: initial);
    - `optimizer`: the tuned optimizer — the predictor's template with the tuned schedule and
      hyperparameters in (`hsgd.ode(problem, res.optimizer, ts)` gives `risk` to the solver's
      tolerance);
    - `objective`, `num_steps`, `wall_time` (seconds, compilation included), `predictor`;
    - `coefficients`: dict name → tuned schedule of the optimizer's further coefficients
      tuned jointly (`coefficients=` of [`tune`][]; empty when none were).
    """

    schedule: AbstractSchedule
    initial_schedule: AbstractSchedule
    hyperparameters: dict
    ts: Float[Array, " T"]
    risk: Float[Array, " T"]
    gamma: Float[Array, " T"]
    initial_risk: Float[Array, " T"]
    loss_history: np.ndarray
    objective: str = eqx.field(static=True)
    num_steps: int = eqx.field(static=True)
    wall_time: float = eqx.field(static=True)
    predictor: AbstractPredictor
    optimizer: AbstractOptimizer | None = None
    coefficients: dict | None = None


