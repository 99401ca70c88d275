r"""Schedule tuning by differentiating through the deterministic dynamics (SPEC §4).

minimise $\;R(T)\;$ or $\;\frac1T\int_0^T R(t)\,dt\;$ over a parametrised schedule $\gamma_\theta$
(and optionally scalar hyperparameters), the horizon $T$ fixed, with an optax optimiser and
$\nabla_\theta$ from `jax.grad` through the ODE solve.
"""

import sys
import time
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from .._problem import Problem
from .._schedule import (
    AbstractTunableSchedule,
    TunableConstant,
    TunableKnots,
    TunableModulated,
    TunableSoftplus,
    TunableWarmupDecay,
)
from .baselines import best_constant
from .common import (
    OBJECTIVES as OBJECTIVES,
    TuneResult,
    check_horizon,
    check_objective as check_objective,
    objective_value,
    time_grid,
)
from .predictor import predictor_for, schedule_fields

FAMILIES = ("knots", "linear_knots", "softplus", "cosine", "exponential", "polynomial",
            "constant", "modulated")


def make_family(family, horizon: float, gamma: float, *, num_knots: int = 12
                ) -> AbstractTunableSchedule:
    """A tunable schedule of the named family started at the level `gamma`."""
    if isinstance(family, AbstractTunableSchedule):
        return family
    if family == "knots":
        return TunableKnots.init(horizon, num_knots, "log", gamma)
    if family == "linear_knots":
        return TunableKnots.init(horizon, num_knots, "linear", gamma)
    if family == "softplus":
        return TunableSoftplus.init(horizon, num_knots, "log", gamma)
    if family in ("cosine", "exponential", "polynomial"):
        return TunableWarmupDecay(horizon, gamma, decay=family)
    if family == "constant":
        return TunableConstant(gamma)
    if family == "modulated":
        raise ValueError('family="modulated" modulates the optimizer\'s own schedule: it is '
                         'made by tune(..., optimizer=...), not from a level gamma')
    raise ValueError(f"family must be one of {FAMILIES} or an AbstractTunableSchedule, got "
                     f"{family!r}")


class Hyperparameters(eqx.Module):
    r"""Scalar hyperparameters tuned jointly: value $= l + (h - l)\,\sigma(\theta)$ in the
    predictor's bounds $(l, h)$, so every raw $\theta$ is admissible."""

    raw: dict
    bounds: dict = eqx.field(static=True)

    def __init__(self, initial: dict, bounds: dict):
        self.bounds = {k: tuple(map(float, v)) for k, v in bounds.items() if k in initial}
        raw = {}
        for name, value in initial.items():
            if name not in bounds:
                raise ValueError(f"hyperparameter {name!r} cannot be tuned here; tunable: "
                                 f"{sorted(bounds)}")
            low, high = bounds[name]
            value = float(value)
            if not low < value < high:
                raise ValueError(f"hyperparameter {name} must be in ({low}, {high}), got "
                                 f"{value}")
            u = (value - low) / (high - low)
            raw[name] = jnp.log(u) - jnp.log1p(-u)
        self.raw = raw

    def values(self) -> dict:
        return {k: self.bounds[k][0] + (self.bounds[k][1] - self.bounds[k][0])
                * jax.nn.sigmoid(v) for k, v in self.raw.items()}


@eqx.filter_jit
def _value_and_grad(params, static, hyper0, predictor, objective):
    # Module level, with everything as arguments: calls with the same structure (problem
    # size, family, grid) reuse one compilation. The predicted curve comes back as auxiliary
    # output, so `tune` never compiles a separate forward solve for it.
    def f(params):
        # params[0]: the schedule's raw leaves, or a dict with the further coefficients'
        sched, scheds = _split(eqx.combine(params[0], static))
        hyper = eqx.tree_at(lambda h: h.raw, hyper0, params[1]).values()
        risk = predictor(sched, {**hyper, **scheds})
        return objective_value(objective, risk, predictor.ts), risk

    (value, risk), grads = eqx.filter_value_and_grad(f, has_aux=True)(params)
    return value, grads, risk


def tune(problem, family="knots", horizon=None, *, optimizer=None, objective: str = "final",
         batch=None, num_times: int = 41, ode_bins: int | None = None, init_gamma=None,
         num_knots: int = 12, hyperparameters: dict | None = None,
         optax_optimizer: optax.GradientTransformation | None = None,
         learning_rate: float = 0.05, num_steps: int = 100, progress: bool | Callable = False,
         coefficients=None, **predictor_kwargs) -> TuneResult:
    r"""Tune a learning-rate schedule against the predicted risk (SPEC §4).

    Minimises $R(T)$ (`objective="final"`) or $\frac1T\int_0^T R\,dt$ (`"average"`) over the
    raw parameters of a tunable schedule (and optionally scalar hyperparameters of the
    optimizer) with optax, the gradient by `jax.grad` through the ODE solve: the prediction is
    `hsgd.ode(problem, optimizer.replace(schedule=schedule, **hyperparameters), ts)`. A step
    whose prediction is not finite (the schedule blew the dynamics up) is retried at half the
    update until it is; the best iterate is returned.

    **Arguments:**

    - `problem`: any problem with a registered, differentiable `ode` for `optimizer` (a
      [`Problem`][], a [`FiniteProblem`][], …), or an `AbstractPredictor` (see
      [`predictor_for`][]).
    - `family`: `"knots"` (piecewise-linear, log-spaced knots), `"linear_knots"`,
      `"softplus"` (free-form), `"cosine"`, `"exponential"`, `"polynomial"` (warm-up + decay,
      [`TunableWarmupDecay`][]), `"constant"`, `"modulated"` (the optimizer's own schedule
      times a tunable factor on log-spaced knots, [`TunableModulated`][]: tuning starts from
      it exactly), or any `AbstractTunableSchedule` instance.
    - `horizon`: the budget $T > 0$ in the pair's clock ($t = k/d$ for streaming SGD, epochs
      $k\beta/n$ for finite-data SGD, iterations $k$ for heavy ball).
    - `optimizer`: the optimizer whose schedule is tuned — any [`AbstractOptimizer`][] (e.g.
      `hsgd.HeavyBall(1.0, momentum=0.9, batch=8)`; its schedule is replaced, its other
      fields kept unless tuned); default `SGD` (with `batch`). For backward compatibility an
      optax transformation here means `optax_optimizer`.
    - `batch`: the SGD batch when no optimizer is given; `num_times` (grid of the
      prediction), `ode_bins` (coarsen the spectrum; streaming only): for the predictor.
    - `init_gamma`: level of the initial schedule; default: the best constant stepsize of an
      ODE sweep (so tuning starts from the best constant's risk).
    - `num_knots`: knots of the knot families.
    - `hyperparameters`: dict field → initial value of the optimizer's continuous fields tuned
      jointly, within the bounds its [`tunable`][hsgd.AbstractOptimizer.tunable] declares (or
      `bounds=` gives): SGD on streaming data `{"batch": 4.0}`; heavy ball
      `{"momentum": 0.5, "batch_fraction": 0.1}`.
    - `coefficients`: further schedules of the optimizer tuned jointly with its schedule —
      names of its schedule fields (each becomes [`TunableModulated`][]: its own curve times a
      factor on `num_knots` log-spaced knots, started at 1) or a dict name →
      `AbstractTunableSchedule`. E.g. the momentum family's `("gamma3", "delta")` with
      `family="modulated"`: $\bar\gamma_2(t)$, $\bar\gamma_3(t)$, $\delta(t)$ tuned together
      from the template's curves. A preset with a `linear(problem)` form ([`DANADecaying`][],
      [`DANAConstant`][]) is tuned as that [`LinearMomentum`][]. The tuned schedules are
      `res.coefficients` (and in `res.optimizer`).
    - `optax_optimizer`: an optax transformation (default `optax.adam(learning_rate)`),
      applied to the raw (log / logit / softplus⁻¹) parameters.
    - `num_steps`: optimisation steps; `progress`: print one line per step to stderr (or a
      callable `progress(step, objective, result_so_far_schedule)`).
    - `predictor_kwargs`: passed to [`predictor_for`][], e.g. `target="loss"`,
      `bounds={"momentum": (0.0, 0.9)}`, `rtol=1e-7`; the spellings from before optimizers
      were values (`dynamics="momentum"`, `momentum=0.9`) still work without `optimizer`.

    **Returns:** a [`TuneResult`][] (`res.optimizer`: the tuned optimizer).

    Example:

    ```python
    prob = hsgd.Problem.random(hsgd.LeastSquares(0.5), hsgd.Spectrum.power_law(2000, 0.5),
                               jax.random.PRNGKey(0))
    res = hsgd.tune(prob, "knots", 20.0, ode_bins=64, num_steps=60)
    res.loss_history[0], res.loss_history.min()
    ```
    """
    if isinstance(optimizer, optax.GradientTransformation):
        if optax_optimizer is not None:
            raise TypeError("optimizer is an optax transformation and optax_optimizer is given "
                            "too: pass the hsgd optimizer as optimizer= and the optax one as "
                            "optax_optimizer=")
        optimizer, optax_optimizer = None, optimizer
    horizon = check_horizon(horizon)
    check_objective(objective)
    if int(num_steps) < 0:
        raise ValueError(f"num_steps must be >= 0, got {num_steps}")
    if not (np.isfinite(learning_rate) and learning_rate > 0):
        raise ValueError(f"learning_rate must be > 0, got {learning_rate}")
    modulated = isinstance(family, str) and family == "modulated"
    if (coefficients or modulated) and callable(getattr(optimizer, "linear", None)) \
            and isinstance(problem, Problem):
        optimizer = optimizer.linear(problem)  # a preset's coefficients as schedules
    predictor = predictor_for(problem, time_grid(horizon, num_times), optimizer=optimizer,
                              batch=batch, ode_bins=ode_bins, **predictor_kwargs)
    if not np.isclose(float(predictor.ts[-1]), horizon):
        raise ValueError(f"horizon {horizon} differs from the predictor's last time "
                         f"{float(predictor.ts[-1])}")
    template = getattr(predictor, "optimizer", None)
    coefs0 = _coefficient_schedules(template, coefficients, horizon, num_knots,
                                    hyperparameters or {})
    if modulated:
        if template is None:
            raise ValueError('family="modulated" needs a predictor with an optimizer template')
        schedule0 = TunableModulated.init(template.schedule, horizon, num_knots)
    else:
        if init_gamma is None and not isinstance(family, AbstractTunableSchedule):
            init_gamma = best_constant(predictor, objective=objective).parameters["gamma"]
        if init_gamma is not None and not (np.isfinite(init_gamma) and init_gamma > 0):
            raise ValueError(f"init_gamma must be > 0, got {init_gamma}")
        schedule0 = make_family(family, horizon, init_gamma, num_knots=num_knots)
    hyper0 = Hyperparameters(hyperparameters or {}, predictor.bounds())
    optimizer = optax.adam(learning_rate) if optax_optimizer is None else optax_optimizer
    ts = predictor.ts

    schedules0 = dict(schedule=schedule0, **coefs0)
    trainable, static = eqx.partition(schedules0,
                                      {k: v.trainable() for k, v in schedules0.items()})

    def value_and_grad(params):
        return _value_and_grad(params, static, hyper0, predictor, objective)

    def evaluate(params):
        try:
            value, grads, risk = value_and_grad(params)
        except RuntimeError:  # an error raised inside the solve (e.g. max_steps)
            return None, None, None
        finite = np.isfinite(float(value)) and all(
            bool(jnp.all(jnp.isfinite(g))) for g in jax.tree_util.tree_leaves(grads))
        return (value, grads, risk) if finite else (None, None, None)

    start = time.perf_counter()
    # Strongly typed from the start: optax's updates return strong arrays, and a weakly typed
    # first call would compile the value-and-gradient a second time for the same shapes.
    params = jax.tree_util.tree_map(lambda x: jnp.asarray(x, dtype=jnp.result_type(x)),
                                    (trainable, hyper0.raw))
    value, grads, initial_risk = evaluate(params)
    if value is None:
        raise ValueError("the initial schedule's prediction is not finite (it diverges): "
                         "lower init_gamma")
    state = optimizer.init(params)
    history = [float(value)]
    best = (float(value), params, initial_risk)
    scale = 1.0
    for step in range(int(num_steps)):
        updates, new_state = optimizer.update(grads, state, params)
        for _ in range(30):
            candidate = optax.apply_updates(
                params, jax.tree_util.tree_map(lambda u: scale * u, updates))
            new_value, new_grads, new_risk = evaluate(candidate)
            if new_value is not None:
                break
            scale *= 0.5  # the update blew the dynamics up: retry (and keep) half of it
        else:
            break
        params, state, value, grads = candidate, new_state, new_value, new_grads
        history.append(float(value))
        if float(value) < best[0]:
            best = (float(value), params, new_risk)
        if callable(progress):
            progress(step + 1, float(value), _split(eqx.combine(params[0], static))[0])
        elif progress:
            print(f"  tune step {step + 1:4d}/{num_steps}: objective {float(value):.6g} "
                  f"(best {best[0]:.6g}, {time.perf_counter() - start:.1f} s)",
                  file=sys.stderr, flush=True)
    schedule, tuned = _split(eqx.combine(best[1][0], static))
    hyper = eqx.tree_at(lambda h: h.raw, hyper0, best[1][1]).values()
    risk = best[2]  # the prediction for the best iterate, from its own evaluation
    wall = time.perf_counter() - start
    hyper = {k: float(v) for k, v in hyper.items()}
    configure = getattr(predictor, "configure", None)  # a user's AbstractPredictor may lack it
    return TuneResult(schedule=schedule, initial_schedule=schedule0, hyperparameters=hyper,
                      ts=ts, risk=risk, gamma=jax.vmap(schedule)(ts), initial_risk=initial_risk,
                      loss_history=np.asarray(history), objective=objective,
                      num_steps=len(history) - 1, wall_time=wall, predictor=predictor,
                      optimizer=None if configure is None else configure(schedule,
                                                                         {**hyper, **tuned}),
                      coefficients=tuned)


def _split(schedules):
    """`(schedule, {name: coefficient schedule})` from what `tune` optimises: a dict with the
    schedule under `"schedule"`, or the schedule alone."""
    if not isinstance(schedules, dict):
        return schedules, {}
    rest = dict(schedules)
    return rest.pop("schedule"), rest


def _coefficient_schedules(template, coefficients, horizon, num_knots, hyperparameters):
    """The initial tunable schedules of the optimizer's further coefficients (`coefficients`
    of [`tune`][]), checked against the template's schedule fields."""
    if not coefficients:
        return {}
    fields = [] if template is None else schedule_fields(template)
    given = coefficients if isinstance(coefficients, dict) else {n: None for n in coefficients}
    out = {}
    for name, value in given.items():
        if template is not None and name != "schedule" and \
                getattr(template, name, None) is getattr(template, "schedule", None):
            raise ValueError(f"coefficients names {name!r}, which is the optimizer's schedule: "
                             f"it is tuned by family= (family='modulated' starts from its own "
                             f"curve)")
        if name not in fields:
            raise ValueError(f"coefficients names {name!r}, which is not a schedule field of "
                             f"{type(template).__name__}; its schedule fields: {fields}")
        if name in hyperparameters:
            raise ValueError(f"{name!r} is given both in coefficients and in hyperparameters")
        if value is None:
            value = TunableModulated.init(getattr(template, name), horizon, num_knots)
        if not isinstance(value, AbstractTunableSchedule):
            raise TypeError(f"coefficients[{name!r}] must be an AbstractTunableSchedule, got "
                            f"{type(value).__name__}")
        out[name] = value
    return out
