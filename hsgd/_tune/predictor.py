r"""What `tune` differentiates: a *predictor* maps (schedule, scalar hyperparameters) to the
predicted risk on a fixed time grid ending at the horizon (SPEC §4).

One implementation serves every (problem, optimizer) pair whose `ode` is differentiable:
[`Predictor`][hsgd.Predictor] holds a template optimizer and predicts
`hsgd.ode(problem, optimizer.replace(schedule=schedule, **hyperparameters), ts)`; the tunable
hyperparameters are the optimizer's continuous fields, declared by the optimizer
([`AbstractOptimizer.tunable`][hsgd.AbstractOptimizer.tunable]). How the ODE is solved for a
pair (solver, tolerances, a reduced ODE, integer iterations) is its recipe
(`hsgd._tune.recipes`); a new optimizer uses the generic one. [`StreamingPredictor`][],
[`FinitePredictor`][] and [`MomentumPredictor`][] are the spellings from before optimizers were
values: the same class, built from their keyword arguments.
"""

import abc
import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .._methods import simulate
from .._optimizer import SGD, AbstractOptimizer, HeavyBall, as_optimizer
from .._problem import FiniteProblem, Problem
from .._registry import lookup
from .._schedule import AbstractSchedule
from .recipes import (
    SETTINGS,
    checkpoint_count as checkpoint_count,
    noise_floor,
    recipe_for,
    resolve_target,
)


class AbstractPredictor(eqx.Module):
    r"""Predicted risk of an optimiser as a differentiable function of its schedule.

    - `ts`: the output times, increasing, `ts[-1]` = the horizon (the budget).
    - `__call__(schedule, hyperparameters)`: the predicted risk on `ts`, shape `(T,)`, NaN from
      the first time the dynamics blew up; differentiable in the schedule's array leaves and
      the hyperparameter values (a dict name → scalar).
    - `bounds()`: name → (low, high) of the scalar hyperparameters that may be tuned jointly.
    - `simulate(schedule, hyperparameters, key, num_runs)`: the real optimiser's risk on `ts`,
      shape `(num_runs, T)` (NumPy).
    - `critical(factors, ts)`: risk and learning rate on the times `ts`, shape `(C, T)` each, of the
      feedback schedule $\gamma_t = c\,\gamma_{\rm crit}(t)$ for each $c$ in `factors`; raises
      `NotImplementedError` where the dynamics have no critical rate.
    - `floor()`: the noise floor of the risk (the risk at the optimum), NaN if unknown.
    """

    ts: eqx.AbstractVar[Float[Array, " T"]]

    @abc.abstractmethod
    def __call__(self, schedule, hyperparameters: dict) -> Float[Array, " T"]:
        ...

    @abc.abstractmethod
    def bounds(self) -> dict[str, tuple[float, float]]:
        ...

    @abc.abstractmethod
    def simulate(self, schedule, hyperparameters: dict, key, num_runs: int) -> np.ndarray:
        ...

    @abc.abstractmethod
    def critical(self, factors, ts) -> tuple[Array, Array]:
        ...

    @abc.abstractmethod
    def floor(self) -> float:
        ...


def _dtype(problem):
    """The floating dtype of `problem`: its `dtype`, else that of its first floating array."""
    dtype = getattr(problem, "dtype", None)
    if dtype is not None:
        return dtype
    if isinstance(problem, FiniteProblem):
        return problem.eigenvalues.dtype
    leaves = jax.tree_util.tree_leaves(eqx.filter(problem, eqx.is_inexact_array))
    return leaves[0].dtype if leaves else jnp.zeros(()).dtype


def _field_names(optimizer) -> list[str]:
    return [f.name for f in dataclasses.fields(optimizer) if f.name != "schedule"]


def schedule_fields(optimizer) -> list[str]:
    r"""The optimizer's fields that hold a schedule other than its `schedule` (e.g. the
    momentum family's $\bar\gamma_1, \bar\gamma_3, \delta$): what [`tune`][] may tune jointly
    as `coefficients`."""
    own = getattr(optimizer, "schedule", None)
    return [name for name in _field_names(optimizer)
            if isinstance(getattr(optimizer, name), AbstractSchedule)
            and getattr(optimizer, name) is not own]


def _check_bounds(optimizer, declared: dict, given: dict | None) -> dict:
    bounds = {k: tuple(map(float, v)) for k, v in declared.items()}
    fields = _field_names(optimizer)
    for name, value in (given or {}).items():
        if name not in fields:
            raise ValueError(f"bounds names {name!r}, which is not a field of "
                             f"{type(optimizer).__name__}; its fields: {fields}")
        try:
            low, high = map(float, value)
        except (TypeError, ValueError):
            raise ValueError(f"bounds[{name!r}] must be a pair (low, high), got {value!r}") \
                from None
        if not (np.isfinite(low) and np.isfinite(high) and low < high):
            raise ValueError(f"bounds[{name!r}] must be finite with low < high, got "
                             f"{value!r}")
        bounds[name] = (low, high)
    return bounds


class Predictor(AbstractPredictor):
    r"""The prediction of any registered (problem, optimizer) pair whose `ode` is
    differentiable: `hsgd.ode(problem, optimizer.replace(schedule=schedule,
    **hyperparameters), ts)` and its `target` curve; the SGD check runs `hsgd.simulate` with
    the same optimizer ([`AbstractOptimizer.for_simulation`][hsgd.AbstractOptimizer.for_simulation]:
    continuous stand-ins rounded, e.g. a tuned batch).

    **Arguments:**

    - `problem`: any problem (with an instance or data for the SGD check).
    - `ts`: output times in the pair's clock (streaming $t = k/d$; finite-data SGD epochs;
      heavy ball iterations, rounded to integers); `ts[-1]` is the horizon.
    - `optimizer`: the template (default `SGD(1.0)`; a float or schedule means SGD of it). Its
      schedule is replaced by the one being tuned; its other fields are kept unless tuned.
    - `target`: `"risk"` (default when the problem has a population risk) or `"loss"` (the
      training loss $\tfrac12\|Ax - b\|^2$ of a [`FiniteProblem`][]).
    - `bounds`: name → (low, high) for fields tuned jointly, on top of (or narrowing) what
      [`AbstractOptimizer.tunable`][hsgd.AbstractOptimizer.tunable] declares; any field of the
      optimizer in which its ODE is differentiable may be named.
    - `ode_bins`: coarsen the spectrum to this many bins for the ODE (problems with
      `coarsen`, i.e. streaming).
    - `rtol`, `atol`, `max_steps`, `checkpoints` (of diffrax's `RecursiveCheckpointAdjoint`),
      `reduced`: solver settings (None: the pair's recipe default; the generic recipe passes
      only those set); `ode_options`: further keywords for `hsgd.ode`.
    """

    problem: object
    ode_problem: object
    optimizer: AbstractOptimizer
    ts: Float[Array, " T"]
    ode_options: dict
    times: tuple = eqx.field(static=True)
    target: str = eqx.field(static=True)
    hyper_bounds: dict = eqx.field(static=True)
    rtol: float | None = eqx.field(static=True)
    atol: float | None = eqx.field(static=True)
    max_steps: int | None = eqx.field(static=True)
    checkpoints: int | None = eqx.field(static=True)
    reduced: bool = eqx.field(static=True)
    recipe: object = eqx.field(static=True)

    def __init__(self, problem, ts, optimizer=None, *, target: str | None = None,
                 bounds: dict | None = None, ode_bins: int | None = None, rtol=None,
                 atol=None, max_steps=None, checkpoints=None, reduced: bool = True,
                 ode_options: dict | None = None):
        optimizer = as_optimizer(SGD(1.0) if optimizer is None else optimizer)
        lookup("ode", problem, optimizer)  # an UnsupportedError naming the pair, early
        recipe = recipe_for(problem, optimizer)
        recipe.check(problem, optimizer)
        given = {"rtol": rtol, "atol": atol, "max_steps": max_steps, "checkpoints": checkpoints}
        extra = sorted(k for k, v in given.items() if v is not None and k not in recipe.settings)
        if extra:
            raise ValueError(f"{extra} do not apply to the prediction of "
                             f"{recipe.name(problem, optimizer)}; it takes "
                             f"{[s for s in SETTINGS if s in recipe.settings]}")
        self.problem = problem
        if ode_bins is not None and not hasattr(problem, "coarsen"):
            raise ValueError(f"ode_bins applies to streaming problems (hsgd.Problem), not to a "
                             f"{type(problem).__name__}; got ode_bins={ode_bins!r}")
        self.ode_problem = problem.coarsen(int(ode_bins)) if ode_bins else problem
        self.optimizer = optimizer
        grid = recipe.grid(ts)
        self.times = tuple(grid.tolist())
        self.ts = jnp.asarray(grid, dtype=_dtype(problem))
        self.target = resolve_target(problem, target)
        self.hyper_bounds = _check_bounds(optimizer, optimizer.tunable(problem), bounds)
        self.reduced = recipe.reduced(problem, reduced)
        settings = recipe.resolve(given, self.ode_problem, self.reduced)
        self.rtol = None if settings.get("rtol") is None else float(settings["rtol"])
        self.atol = None if settings.get("atol") is None else float(settings["atol"])
        self.max_steps = None if settings.get("max_steps") is None else \
            int(settings["max_steps"])
        self.checkpoints = None if settings.get("checkpoints") is None else \
            int(settings["checkpoints"])
        self.ode_options = dict(ode_options or {})
        self.recipe = recipe

    def configure(self, schedule, hyperparameters: dict | None = None) -> AbstractOptimizer:
        """The template with `schedule` and the hyperparameter values in."""
        hyperparameters = dict(hyperparameters or {})
        unknown = sorted(set(hyperparameters) - set(self.hyper_bounds)
                         - set(schedule_fields(self.optimizer)))
        if unknown:
            raise ValueError(f"unknown hyperparameters {unknown}; tunable: "
                             f"{sorted(self.hyper_bounds)}, and as schedules "
                             f"{schedule_fields(self.optimizer)}")
        return self.optimizer.replace(schedule=schedule, **hyperparameters)

    def __call__(self, schedule, hyperparameters: dict) -> Float[Array, " T"]:
        return self.recipe.predict(self, self.configure(schedule, hyperparameters))

    def bounds(self) -> dict[str, tuple[float, float]]:
        return dict(self.hyper_bounds)

    def simulate(self, schedule, hyperparameters: dict, key, num_runs: int) -> np.ndarray:
        if isinstance(self.problem, Problem) and self.problem.X_star is None:
            raise ValueError("the SGD check needs a problem with an instance (X_star, X0): "
                             "build it with Problem.random or Problem.from_arrays")
        optimizer = self.configure(schedule, hyperparameters).for_simulation(self.problem)
        res = simulate(self.problem, optimizer, self.recipe.simulation_times(self), key,
                       num_runs=num_runs)
        return np.asarray(res.risk if self.target == "risk" else res.loss)

    def critical(self, factors, ts) -> tuple[Array, Array]:
        return self.recipe.critical(self, factors, ts)

    def floor(self) -> float:
        return noise_floor(self.ode_problem, self.target)


# ---------------------------------------------------------------------------------- aliases
# The spellings from before optimizers were values: Predictor built from keyword arguments.


class StreamingPredictor(Predictor):
    r"""One-pass SGD on any loss (SPEC §1): [`Predictor`][hsgd.Predictor] for
    [`Problem`][] × [`SGD`][]`(·, batch)`.

    The ODE is integrated with `diffrax.Kvaerno5` (L-stable, implicit) and a PID controller,
    whose solution is a smooth function of the schedule, so central differences can check its
    gradient. With the explicit default of `hsgd.ode` (Tsit5) on stiff spectra
    ($\gamma\lambda_{\max}\gg 1$) the adaptive solver runs at its stability limit and the
    accepted steps change discontinuously with the parameters: the *central differences* of the
    Tsit5 solution are then wrong (measured, power law $\alpha = 1$, $\gamma_0\lambda_{\max} =
    196$: off by up to a factor 25, wrong signs), while reverse mode through Tsit5 (step sizes
    frozen by diffrax's `stop_gradient`) stays within 0.4% of the Kvaerno5 gradient.

    **Arguments:**

    - `problem`: a [`Problem`][] with an instance (for the SGD check).
    - `ts`: output times; the horizon is `ts[-1]` ($t = k/d$, an iteration budget).
    - `batch`: mini-batch size $\beta$ (a float in the ODE; rounded for SGD).
    - `ode_bins`: coarsen the spectrum to this many bins for the ODE (None: exact modes).
    - `max_batch`: upper bound when the batch is tuned jointly. At a fixed iteration budget the
      ODE's noise term $\gamma^2/\beta$ falls with $\beta$, so a tuned batch goes to this bound;
      at a fixed *sample* budget the ODE depends on $\gamma/\beta$ only (substitute
      $s = \beta t$), so batch and stepsize cannot be tuned separately there.
    - `rtol`, `atol`, `max_steps`: for the ODE solver (default rtol 1e-6: the ODE's error is
      then far below the $O(d^{-1/2})$ fluctuations of SGD it predicts).
    - `checkpoints`: of diffrax's `RecursiveCheckpointAdjoint` for the gradient. Default
      [`checkpoint_count`][]: as many as a budget of $2^{21}$ state-sized copies allows (up to
      `max_steps`), so reverse mode re-runs each step once; diffrax's default,
      $\approx\sqrt{2\,\text{max\_steps}}$ checkpoints placed online, re-runs some twice.
      (On the reduced least-squares path the default is diffrax's: its steps are cheap.)
    - `reduced`: for a `LeastSquares` loss, integrate the equivalent per-mode variance ODE
      ([`least_squares_as_finite`][]: same risk, to the solver's tolerance) with
      [`LinearKvaerno5`][], whose stages are solved exactly (default True; False: Kvaerno5 on
      the full ODE, as for every other loss).
    """

    def __init__(self, problem: Problem, ts, *, batch=1.0, ode_bins: int | None = None,
                 max_batch=256.0, rtol=1e-6, atol=1e-9, max_steps=16384,
                 checkpoints: int | None = None, reduced: bool = True):
        if not isinstance(problem, Problem):
            raise TypeError(f"StreamingPredictor needs a hsgd.Problem, got "
                            f"{type(problem).__name__}")
        if not float(batch) >= 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        super().__init__(problem, ts, SGD(1.0, batch=float(batch)),
                         bounds={"batch": (1.0, float(max_batch))}, ode_bins=ode_bins,
                         rtol=rtol, atol=atol, max_steps=max_steps, checkpoints=checkpoints,
                         reduced=reduced)

    @property
    def batch(self) -> float:
        return float(self.optimizer.batch)


def _finite(problem, name):
    if not isinstance(problem, FiniteProblem):
        raise TypeError(f"{name} needs a hsgd.FiniteProblem, got {type(problem).__name__}")


class FinitePredictor(Predictor):
    r"""Multi-pass SGD on finite least squares (SPEC §2):
    [`Predictor`][hsgd.Predictor] for [`FiniteProblem`][] × [`SGD`][]`(·,
    batch)` — the per-mode ODE ([`LinearKvaerno5`][], stage equations solved exactly) predicts,
    the SGD simulator over the rows of $A$ checks.

    Time is in **epochs** ($t = k\beta/n$); the horizon `ts[-1]` is a budget in passes over the
    data. The ODE does not depend on the batch size $\beta$ (with the summed batch gradient of
    `hsgd._simulate.finite_sgd`, $n/\beta$ steps per epoch carry the same drift and noise as $n$
    single-row steps), so no scalar is tunable: `bounds()` is empty and `batch` only sets the
    SGD check.

    **Arguments:**

    - `problem`: a [`FiniteProblem`][] (with data for the SGD check).
    - `ts`: output epochs, increasing, from 0; `target`: `"risk"` or `"loss"` (default: the
      population risk when the problem has one, else the training loss).
    - `batch`: rows per SGD step for the check.
    - `rtol`, `atol`, `max_steps`: of the ODE (default rtol $10^{-8}$: far below SGD's
      fluctuations); `checkpoints`: of diffrax's `RecursiveCheckpointAdjoint` for the
      gradient (default None: diffrax's $\approx\sqrt{2\,\text{max\_steps}}$. Unlike the
      streaming predictor, more does not pay here: a [`LinearKvaerno5`][] step is cheap, and
      2095 checkpoints made the gradient 5.3x a forward solve against 3.4x with the default,
      `benchmarks/tune.py`).
    """

    def __init__(self, problem: FiniteProblem, ts, *, target: str | None = None, batch=1,
                 rtol=1e-8, atol=None, max_steps: int = 4096, checkpoints: int | None = None,
                 ode_bins=None):
        _finite(problem, "FinitePredictor")
        super().__init__(problem, ts, SGD(1.0, batch=batch), target=target, ode_bins=ode_bins,
                         rtol=rtol, atol=atol, max_steps=max_steps, checkpoints=checkpoints)

    @property
    def batch(self) -> int:
        return int(round(float(self.optimizer.batch)))


class MomentumPredictor(Predictor):
    r"""Mini-batch SGD with heavy-ball momentum on finite least squares (SPEC §3):
    [`Predictor`][hsgd.Predictor] for [`FiniteProblem`][] × [`HeavyBall`][] —
    the exact per-mode recursion [`hsgd.ode`][] predicts, [`hsgd.simulate`][] checks.

    Time is in **iterations** $k$ (the recursion's own clock, and the schedule is
    $\gamma_k$ on the summed batch gradient): `ts` are iteration counts (rounded to integers)
    and the horizon `ts[-1]` is an iteration budget. Tunable scalars (`bounds()`):
    `momentum` $\Delta\in(0, \Delta_{\max})$ and `batch_fraction` $\zeta\in(1/n, 1)$, each
    through a sigmoid of a raw parameter (every raw value admissible). At a fixed
    *iteration* budget a larger batch only lowers the noise, so a tuned `batch_fraction`
    runs to its upper bound; tune it only with that in mind.

    **Arguments:**

    - `problem`: a [`FiniteProblem`][]; `ts`: output iterations (non-negative, increasing).
    - `target`: `"risk"` or `"loss"` as for [`FinitePredictor`][].
    - `batch` (rows per step, default 1) or `batch_fraction` $\zeta$ (exclusive; the SGD
      check runs $\operatorname{round}(\zeta n)$ rows).
    - `momentum` $\Delta\in[0, 1)$ (default 0); `max_momentum`: upper bound when tuned.
    """

    def __init__(self, problem: FiniteProblem, ts, *, target: str | None = None, batch=None,
                 batch_fraction=None, momentum=0.0, max_momentum=0.99, ode_bins=None):
        _finite(problem, "MomentumPredictor")
        if batch is not None and batch_fraction is not None:
            raise ValueError("pass at most one of batch and batch_fraction")
        if batch_fraction is None:
            b = 1.0 if batch is None else float(batch)
            if b != int(b) or not 1 <= b <= problem.n:
                raise ValueError(f"batch must be an integer in [1, n = {problem.n}], got "
                                 f"{batch!r}")
            batch = int(b)
        elif not 0 < float(batch_fraction) <= 1:
            raise ValueError(f"batch_fraction must be in (0, 1], got {batch_fraction!r}")
        if not 0 <= float(momentum) < 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
        if not 0 < float(max_momentum) < 1:
            raise ValueError(f"max_momentum must be in (0, 1), got {max_momentum!r}")
        optimizer = HeavyBall(1.0, float(momentum), batch=batch,
                              batch_fraction=None if batch_fraction is None
                              else float(batch_fraction))
        super().__init__(problem, ts, optimizer, target=target, ode_bins=ode_bins,
                         bounds={"momentum": (0.0, float(max_momentum))})

    @property
    def batch_fraction(self) -> float:
        return float(self.optimizer.fraction(self.problem.n))

    @property
    def momentum(self) -> float:
        return float(self.optimizer.momentum)

    @property
    def iterations(self) -> tuple:
        return self.times


def predictor_for(problem, ts, *, optimizer=None, dynamics: str | None = None,
                  **kwargs) -> AbstractPredictor:
    """The predictor for `problem` on times `ts` (an [`AbstractPredictor`][] is returned as is).

    With `optimizer` (any registered optimizer, or a float/schedule meaning SGD): a
    [`Predictor`][hsgd.Predictor] for that pair; `kwargs` are its keywords
    (`target`, `bounds`, `ode_bins`, `rtol`, …); `batch=` only with a float or schedule
    (then `SGD(optimizer, batch)`; an optimizer carries its own batch).

    Without (the spellings from before optimizers were values):

    - a [`Problem`][]: [`StreamingPredictor`][] (one-pass SGD, any loss; `ts` in $k/d$);
    - a [`FiniteProblem`][]: [`FinitePredictor`][] (multi-pass SGD, the ODE; `ts` in epochs),
      or with `dynamics="momentum"` [`MomentumPredictor`][] (SGD+M, the recursion; `ts` in
      iterations);
    - any other problem: a `Predictor` for `SGD`.

    `kwargs` go to the predictor.
    """
    if isinstance(problem, AbstractPredictor):
        return problem
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    if optimizer is not None:
        if dynamics not in (None, "ode"):
            raise ValueError(f"dynamics={dynamics!r} is the spelling before optimizers were "
                             f"values; with optimizer= leave it out (got optimizer "
                             f"{type(optimizer).__name__})")
        optimizer = as_optimizer(optimizer, batch=kwargs.pop("batch", None))
        return Predictor(problem, ts, optimizer, **kwargs)
    if isinstance(problem, FiniteProblem):
        if dynamics in (None, "ode"):
            return FinitePredictor(problem, ts, **kwargs)
        if dynamics == "momentum":
            return MomentumPredictor(problem, ts, **kwargs)
        raise ValueError(f"dynamics must be 'ode' or 'momentum' for a FiniteProblem, got "
                         f"{dynamics!r}")
    if dynamics not in (None, "ode"):
        raise ValueError(f"dynamics={dynamics!r} needs a FiniteProblem")
    if isinstance(problem, Problem):
        return StreamingPredictor(problem, ts, **kwargs)
    batch = kwargs.pop("batch", 1)
    return Predictor(problem, ts, SGD(1.0, batch=batch), **kwargs)
