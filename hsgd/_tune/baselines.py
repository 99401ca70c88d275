r"""The honest competitors of a tuned schedule (SPEC §4) and the check by real SGD.

- the best constant stepsize (a vmapped sweep of the predictor over a log grid),
- the best step decay and the best cosine schedule from small grids around it,
- the critical schedule $\gamma_t = c\,\gamma_{\rm crit}(t)$ (SPEC §1) with the best $c$.

[`compare`][] runs the real optimiser with each schedule on the same seeds and puts the final
risks beside the predictions.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .._schedule import (
    AbstractSchedule,
    Constant,
    Cosine,
    PiecewiseLinear,
    StepDecay,
    WarmupDecay,
)
from .._sweep import grid
from .common import TuneResult, check_objective, objective_value, time_grid
from .predictor import AbstractPredictor, predictor_for

BASELINES = ("constant", "step_decay", "cosine", "critical", "wsd")
DEFAULT_BASELINES = BASELINES[:4]  # "wsd" on request (scaling.tune_at_compute asks for it)


class Candidate(eqx.Module):
    """A baseline schedule: `name`, `schedule`, the grid `parameters` it was chosen with,
    `risk` (predicted, on the predictor's times), its `objective` value and the `predictor`
    that made the prediction (so [`compare`][] need not solve again)."""

    name: str = eqx.field(static=True)
    schedule: AbstractSchedule
    parameters: dict
    risk: Float[Array, " T"]
    objective: float
    predictor: AbstractPredictor | None = None


def _grid_search(predictor: AbstractPredictor, objective: str, points: dict, make, name: str
                 ) -> Candidate:
    ts = predictor.ts

    @eqx.filter_jit
    def fn(p):
        def one(q):
            risk = predictor(make(q), {})
            return objective_value(objective, risk, ts), risk

        return jax.vmap(one)(p)

    # One vmapped call (not `hsgd.sweep`: its shard_map does not trace diffrax's implicit
    # solvers, whose Newton iteration is closure-converted).
    table = {k: np.asarray(v) for k, v in points.items()}
    values, curves = fn({k: jnp.asarray(v) for k, v in points.items()})
    values = np.asarray(values)
    values = np.where(np.isfinite(values), values, np.inf)
    if not np.any(np.isfinite(values)):
        raise ValueError(f"every {name} schedule of the grid diverged; lower the stepsizes")
    i = int(np.argmin(values))
    params = {k: float(table[k][i]) for k in points}
    schedule = make({k: jnp.asarray(v) for k, v in params.items()})
    # The curve from the sweep itself (no separate forward solve to compile).
    return Candidate(name=name, schedule=schedule, parameters=params, risk=curves[i],
                     objective=float(values[i]), predictor=predictor)


def best_constant(predictor: AbstractPredictor, *, objective: str = "final",
                  gammas=None) -> Candidate:
    """The best constant stepsize on a log grid (default 40 values in [0.01, 10])."""
    gammas = np.geomspace(0.01, 10.0, 40) if gammas is None else np.asarray(gammas, float)
    return _grid_search(predictor, objective, grid(gamma=gammas),
                        lambda p: Constant(p["gamma"]), "constant")


def best_step_decay(predictor: AbstractPredictor, gamma: float, *, objective: str = "final"
                    ) -> Candidate:
    r"""The best [`StepDecay`][] with initial $\in\gamma\cdot[0.5, 6]$ (8 log values), factor
    $\in\{0.1, 0.25, 0.5\}$, interval $\in T\cdot\{0.1, 0.2, 1/3, 0.5\}$."""
    T = float(predictor.ts[-1])
    points = grid(initial=gamma * np.geomspace(0.5, 6.0, 8), factor=[0.1, 0.25, 0.5],
                  interval=T * np.array([0.1, 0.2, 1 / 3, 0.5]))
    return _grid_search(predictor, objective, points,
                        lambda p: StepDecay(p["initial"], p["factor"], p["interval"]),
                        "step_decay")


def best_cosine(predictor: AbstractPredictor, gamma: float, *, objective: str = "final"
                ) -> Candidate:
    r"""The best [`Cosine`][] over $[0, T]$ with peak $\in\gamma\cdot[0.5, 6]$ (12 log values)
    and final/peak $\in\{10^{-3}, 10^{-2}, 10^{-1}\}$."""
    T = float(predictor.ts[-1])
    points = grid(peak=gamma * np.geomspace(0.5, 6.0, 12), final_fraction=[1e-3, 1e-2, 1e-1])
    return _grid_search(predictor, objective, points,
                        lambda p: Cosine(p["peak"], T, p["peak"] * p["final_fraction"]),
                        "cosine")


def best_wsd(predictor: AbstractPredictor, gamma: float, *, objective: str = "final"
             ) -> Candidate:
    r"""The best warm-up–stable–decay schedule ([`WarmupDecay`][] with `stable`): linear
    warm-up over 1% of the budget, the peak held, then a linear cool-down to 0 over the last
    fraction $\in\{0.1, 0.2, 0.4\}$ of the budget, peak $\in\gamma\cdot[0.5, 6]$ (12 log
    values)."""
    T = float(predictor.ts[-1])
    points = grid(peak=gamma * np.geomspace(0.5, 6.0, 12), cooldown=[0.1, 0.2, 0.4])
    return _grid_search(predictor, objective, points,
                        lambda p: WarmupDecay(p["peak"], 0.01 * T, T, decay="linear",
                                              stable=T * (1.0 - p["cooldown"])), "wsd")


def best_critical(predictor: AbstractPredictor, *, objective: str = "final", factors=None,
                  num_knots: int = 201) -> Candidate:
    r"""The critical schedule $\gamma_t = c\,\gamma_{\rm crit}(t)$ (SPEC §1) with the best $c$
    (default 12 log values in [0.1, 2]).

    $\gamma_{\rm crit}$ depends on the state, so the ODE is solved with the feedback
    $\gamma = c\,\gamma_{\rm crit}(B(t))$ — the public optimizer
    [`FeedbackSchedule`][]`(lambda B, s: c * s.gamma_crit)` of SPEC §10, vmapped over $c$
    (one compiled solve for the grid); the learning rate it produced is
    then frozen into a [`PiecewiseLinear`][] schedule on `num_knots` times — the open-loop
    schedule SGD runs with (in high dimension SGD's $B_k$ concentrates on $B(t)$, so the two
    agree) and whose prediction is reported.
    """
    factors = np.geomspace(0.1, 2.0, 12) if factors is None else np.asarray(factors, float)
    T = float(predictor.ts[-1])
    fine = jnp.linspace(0.0, T, int(num_knots), dtype=predictor.ts.dtype)
    risk, gamma = predictor.critical(factors, fine)
    values = jax.vmap(lambda r: objective_value(objective, r, fine))(risk)
    values = np.where(np.isfinite(np.asarray(values)), np.asarray(values), np.inf)
    if not np.any(np.isfinite(values)):
        raise ValueError("every critical schedule diverged")
    i = int(np.argmin(values))
    g = np.asarray(gamma[i])
    g = np.maximum(g, 1e-12 * np.nanmax(g))
    schedule = PiecewiseLinear(fine, g)
    risk = predictor(schedule, {})
    return Candidate(name="critical", schedule=schedule, parameters={"factor": float(factors[i])},
                     risk=risk, objective=float(objective_value(objective, risk, predictor.ts)),
                     predictor=predictor)


def baselines(problem, horizon=None, *, objective: str = "final", include=DEFAULT_BASELINES,
              gammas=None, **predictor_kwargs) -> dict[str, Candidate]:
    """The baselines named in `include` (any of "constant", "step_decay", "cosine",
    "critical" — the default — and "wsd", [`best_wsd`][hsgd._tune.baselines.best_wsd]) for
    `problem` and budget `horizon`: dict name → [`Candidate`][]. The decaying
    grids are centred on the best constant stepsize. "critical" is skipped where the dynamics
    have no critical rate.

    `predictor_kwargs` (`batch`, `ode_bins`, `num_times`) are as for [`tune`][]; `problem` may
    be the `predictor` of a [`TuneResult`][].
    """
    check_objective(objective)
    bad = set(include) - set(BASELINES)
    if bad:
        raise ValueError(f"unknown baseline {sorted(bad)[0]!r}; choose from {BASELINES}")
    predictor = _predictor(problem, horizon, predictor_kwargs)
    out = {}
    const = best_constant(predictor, objective=objective, gammas=gammas)
    if "constant" in include:
        out["constant"] = const
    gamma = const.parameters["gamma"]
    if "step_decay" in include:
        out["step_decay"] = best_step_decay(predictor, gamma, objective=objective)
    if "cosine" in include:
        out["cosine"] = best_cosine(predictor, gamma, objective=objective)
    if "wsd" in include:
        out["wsd"] = best_wsd(predictor, gamma, objective=objective)
    if "critical" in include:
        try:
            out["critical"] = best_critical(predictor, objective=objective)
        except NotImplementedError:
            pass
    return out


def _predictor(problem, horizon, kwargs) -> AbstractPredictor:
    if isinstance(problem, AbstractPredictor):
        return problem
    num_times = kwargs.pop("num_times", 41)
    return predictor_for(problem, time_grid(horizon, num_times), **kwargs)


def compare(problem, candidates: dict, horizon=None, *, key, num_runs: int = 16,
            **predictor_kwargs) -> dict:
    r"""Run the real optimiser with every schedule, on the same seeds, and report the final
    risks beside the predictions (SPEC §4: a tuned schedule is a result only if SGD confirms).

    **Arguments:**

    - `problem`: a [`Problem`][] with an instance, or a predictor (e.g. `result.predictor`).
    - `candidates`: dict name → [`TuneResult`][], [`Candidate`][] or schedule.
    - `horizon`: the budget (not needed with a predictor); `key`: PRNG key, shared by all
      schedules (common random numbers: differences are less noisy); `num_runs`: SGD runs.

    **Returns:** a dict with `ts`, `floor` (noise floor, NaN if unknown), `num_runs` and
    `results`: name → `predicted` (final predicted risk), `sgd_mean`, `sgd_sem` (standard
    error of the mean over runs), `sgd_runs` (final risk per run), `relative_error`
    (|predicted − SGD mean| / SGD mean), `predicted_curve`, `sgd_curve` (mean over runs) and
    `gamma` (the schedule on `ts`).
    """
    if int(num_runs) < 2:
        raise ValueError(f"num_runs must be >= 2 (for a standard error), got {num_runs}")
    predictor = _predictor(problem, horizon, predictor_kwargs)
    ts = predictor.ts
    results = {}
    for name, c in candidates.items():
        stored = None
        if isinstance(c, TuneResult):
            schedule, hyper = c.schedule, c.hyperparameters
            stored = c.risk if c.predictor is predictor else None
        elif isinstance(c, Candidate):
            schedule, hyper = c.schedule, {}
            stored = c.risk if c.predictor is predictor else None
        elif isinstance(c, AbstractSchedule):
            schedule, hyper = c, {}
        else:
            raise TypeError(f"candidate {name!r} must be a TuneResult, Candidate or schedule, "
                            f"got {type(c).__name__}")
        # The same predictor already predicted this schedule: reuse its curve.
        predicted = np.asarray(predictor(schedule, hyper) if stored is None else stored)
        runs = predictor.simulate(schedule, hyper, key, int(num_runs))
        final = runs[:, -1]
        mean = float(np.mean(final))
        results[name] = {
            "predicted": float(predicted[-1]), "sgd_mean": mean,
            "sgd_sem": float(np.std(final, ddof=1) / np.sqrt(final.size)),
            "sgd_runs": final.tolist(),
            "relative_error": float(abs(predicted[-1] - mean) / abs(mean)),
            "predicted_curve": predicted.tolist(), "sgd_curve": np.mean(runs, 0).tolist(),
            "gamma": np.asarray(jax.vmap(schedule)(ts)).tolist()}
    return {"ts": np.asarray(ts).tolist(), "floor": predictor.floor(),
            "num_runs": int(num_runs), "results": results}


def format_comparison(comparison: dict) -> str:
    """The final risks of [`compare`][] as a text table (excess risk over the floor when the
    floor is known)."""
    floor = comparison["floor"]
    has_floor = np.isfinite(floor)
    head = f"{'schedule':>12} {'predicted':>11} {'SGD mean':>11} {'± s.e.':>9} {'rel err':>8}"
    if has_floor:
        head += f" {'SGD excess':>11}"
    lines = [head, "-" * len(head)]
    for name, r in comparison["results"].items():
        line = (f"{name:>12} {r['predicted']:11.6g} {r['sgd_mean']:11.6g} {r['sgd_sem']:9.2g} "
                f"{r['relative_error']:8.4f}")
        if has_floor:
            line += f" {r['sgd_mean'] - floor:11.5g}"
        lines.append(line)
    if has_floor:
        lines.append(f"noise floor {floor:.6g}; {comparison['num_runs']} SGD runs per schedule, "
                     f"same seeds")
    return "\n".join(lines)
