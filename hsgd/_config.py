"""`hsgd run` configuration: a TOML file (read with `tomllib`), validated key by key.

Every section has a fixed set of keys; an unknown key or a bad value raises [`ConfigError`][]
naming it (`problem.spectrum.alpha must be >= 0, got -1`). The README documents the format with
one example per loss.

The `[optimizer]` table maps one-to-one onto an optimizer module: `name` is a registered
optimizer name ([`register_optimizer`][]: `"sgd"`, `"heavy_ball"`, or any a user registers;
`"sgd_momentum"` is the old name of `"heavy_ball"`) or `"package.module:Class"` (imported, so
its cells register), the other keys are the module's fields
(`schedule` as the `[optimizer.schedule]` table), plus `stepsize_unit` where the pair has a
stability limit. Which methods `run.methods` may name comes from the registry: those with a
cell for the (problem, optimizer) pair. [`Conventions`][hsgd._config.Conventions] holds what
the built-in pairs present differently (heavy ball counts iterations; stability limits); a new
optimizer needs no entry.
"""

import copy
import dataclasses
import importlib
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from ._checks import is_traced
from ._loss import AbstractLoss, CustomLoss, LeastSquares, Logistic, PhaseRetrieval, Softmax
from ._noise import BernoulliTeacher, GaussianNoise, NoNoise, StudentTNoise
from ._optimizer import SGD, AbstractOptimizer, HeavyBall
from ._problem import FiniteProblem, Problem
from ._problem.finite import read_npz
from ._registry import lookup, optimizer_types, supported
from ._schedule import (
    AbstractSchedule,
    Constant,
    Cosine,
    ExponentialDecay,
    FunctionSchedule,
    PiecewiseLinear,
    StepDecay,
    WarmupDecay,
)
from ._spectrum import Spectrum
from ._sweep import grid, ode_outcomes, sweep_parameters
from ._tune import BASELINES, FAMILIES, OBJECTIVES
from ._tune.recipes import recipe_for
from .scaling import default_eta
from .theory import (
    gamma_max,
    limit_loss,
    limit_risk,
    momentum_limit_loss,
    momentum_limit_risk,
    momentum_stepsize_limit,
)


class ConfigError(ValueError):
    """A configuration key is unknown, missing or has a bad value."""


DEFAULT = {
    "problem": {
        "loss": "logistic",
        "d": 2000,
        "target_norm": 2.0,
        "init_norm": 0.0,
        "target_weight": 0.0,
        "seed": 0,
        "spectrum": {"kind": "power_law", "alpha": 0.5, "normalize": "mean"},
    },
    "optimizer": {"name": "sgd", "batch": 1, "schedule": {"kind": "constant", "value": 1.0}},
    "run": {
        "horizon": 10.0,
        "num_times": 21,
        "time_grid": "linear",
        "sgd_runs": 8,
        "sde_paths": 8,
        "seed": 1,
        "ode_bins": 0,
    },
}

_PROBLEM_KEYS = {"kind", "loss", "d", "target_norm", "init_norm", "target_weight", "overlap",
                 "cosine", "seed", "spectrum", "noise_std", "num_classes", "m", "m_star", "noise",
                 "noise_nu", "noise_scale"}
_SPECTRUM_KEYS = {
    "power_law": {"kind", "alpha", "normalize"},
    "uniform": {"kind", "low", "high"},
    "eigenvalues": {"kind", "values", "file"},
}
_SCHEDULE_KEYS = {
    "constant": {"kind", "value"},
    "piecewise_linear": {"kind", "times", "values"},
    "exponential": {"kind", "initial", "rate"},
    "step": {"kind", "initial", "factor", "interval"},
    "cosine": {"kind", "peak", "horizon", "final"},
    "warmup": {"kind", "peak", "warmup", "horizon", "final", "decay", "initial",
               "stable"},
}
_RUN_KEYS = {"horizon", "num_times", "time_grid", "methods", "sgd_runs", "sde_paths", "seed",
             "ode_bins"}
_LOSSES = ("least_squares", "logistic", "phase_retrieval", "softmax")

# Finite data (problem.kind = "finite"): the keys each data source takes, with defaults.
_FINITE_DATA = {
    "gaussian": {"n": 2000, "d": 1000, "noise_std": 0.3, "ridge": 0.0, "seed": 0,
                 "target_norm": None},
    "marchenko_pastur": {"n": 2000, "d": 1000, "noise_std": 0.3, "ridge": 0.0,
                         "num_points": 256},
    "digits": {"n": 1000, "features": 500, "activation": "relu", "ridge": 0.0, "seed": 0},
    "mnist": {"n": 2000, "features": 1000, "activation": "relu", "ridge": 0.0, "seed": 0,
              "task": "even_odd"},
    "file": {"file": None, "ridge": 0.0, "features": None, "activation": "relu", "seed": 0},
}
PROBLEM_KINDS = {Problem: "streaming", FiniteProblem: "finite"}
# problem.kind = "plrf" (SPEC §13): power-law random features, a streaming least-squares
# problem; the default stepsize is hsgd.scaling.default_eta per iteration (gamma = eta * d) and
# the default run 1e5 iterations (horizon t = k/d = 200 at d = 500) on a log time grid.
PLRF_DEFAULT = {"kind": "plrf", "alpha": 1.0, "beta": 0.7, "v": 2000, "d": 500, "seed": 0,
                "deterministic": False, "num_modes": 2048}
_KIND_NAMES = {t.__name__: k for t, k in PROBLEM_KINDS.items()}


# ------------------------------------------------------------------- pair conventions


def _unchanged(optimizer):
    return optimizer


@dataclass(frozen=True)
class Conventions:
    r"""What `hsgd run` / `sweep` / `tune` present differently for one (problem, optimizer)
    pair; every field has a default, so a new optimizer needs no entry.

    - `ode_label`: the name of `hsgd.ode` in `run.methods` and curves.csv (`"recursion"` where
      the deterministic equivalent is an exact recursion).
    - `iterations`, `epochs`: for a cell whose clock is the iteration $k$ while the config
      speaks epochs (finite data): epochs → iterations (rounded) and back; None: same clock.
    - `epochs_per_iteration`: $\zeta$ with $\gamma_k = \gamma(k\zeta)$ for the schedule.
    - `deterministic`: the optimizer `ode`/`volterra`/`sde` are called with (finite-data SGD:
      batch 1, the ODE in epochs does not depend on it).
    - `limit` (with `limit_name`, `limit_label`), `limit_loss`, `limit_risk`: the stability
      limit and $\psi(\infty)$, $R(\infty)$ at a constant $\gamma$ (None: unknown, and
      `stepsize_unit = "limit"` is an error); `single_row_note`: warn when $\gamma$ passes
      $2/\max_i\|a_i\|^2$.
    - `simulation_label`: the simulated optimiser in tables and plots (None: the optimizer's
      `label`, e.g. "SGD", "signSGD", "SGD+M").
    """

    ode_label: str = "ode"
    iterations: Callable | None = None
    epochs: Callable | None = None
    epochs_per_iteration: Callable | None = None
    deterministic: Callable = _unchanged
    limit: Callable | None = None
    limit_name: str = "stepsize_limit"
    limit_label: str = "stability limit"
    limit_loss: Callable | None = None
    limit_risk: Callable | None = None
    single_row_note: bool = False
    simulation_label: str | None = None

    def simulated(self, optimizer) -> str:
        """The simulated optimiser's name: `simulation_label`, else `optimizer.label`."""
        return self.simulation_label or optimizer.label


def _beta(problem, optimizer):
    return optimizer.for_simulation(problem).batch


def _zeta(problem, optimizer):
    return optimizer.fraction(problem.n)


CONVENTIONS = {
    (FiniteProblem, SGD): Conventions(
        deterministic=lambda o: o.replace(batch=1),
        limit=lambda p, o: gamma_max(p), limit_name="gamma_max",
        limit_label="gamma_max = 2n/tr(AᵀA)", limit_loss=lambda p, o, g: limit_loss(p, g),
        limit_risk=lambda p, o, g: limit_risk(p, g), single_row_note=True),
    (FiniteProblem, HeavyBall): Conventions(
        ode_label="recursion",
        iterations=lambda p, o, ts: np.rint(ts * p.n / _beta(p, o)).astype(np.int64),
        epochs=lambda p, o, ks: ks * _beta(p, o) / p.n,
        epochs_per_iteration=_zeta,
        limit=lambda p, o: momentum_stepsize_limit(p, o.momentum, _zeta(p, o)),
        limit_label="SGD+M",
        limit_loss=lambda p, o, g: momentum_limit_loss(p, g, o.momentum, _zeta(p, o)),
        limit_risk=lambda p, o, g: momentum_limit_risk(p, g, o.momentum, _zeta(p, o))),
}
_DEFAULT_CONVENTIONS = Conventions()


def conventions_for(problem, optimizer) -> Conventions:
    """The [`Conventions`][hsgd._config.Conventions] of the pair (problem types by inheritance,
    optimizer types exactly, as in the registry); the defaults for every other pair."""
    for p in type(problem).__mro__:
        found = CONVENTIONS.get((p, type(optimizer)))
        if found is not None:
            return found
    return _DEFAULT_CONVENTIONS


# Config names of the methods → the registry's.
RUN_METHODS = {"ode": "ode", "recursion": "ode", "volterra": "volterra", "sgd": "simulate",
               "sde": "sde"}


def run_methods(problem, optimizer) -> list[str]:
    """The `run.methods` names the pair supports, from the registry: the deterministic
    equivalent (`ode`, or its [`Conventions`][hsgd._config.Conventions] label), `volterra`,
    `sgd` (the simulator) and `sde` where a cell exists."""
    label = conventions_for(problem, optimizer).ode_label
    names = []
    for name, method in ((label, "ode"), ("volterra", "volterra"), ("sgd", "simulate"),
                         ("sde", "sde")):
        if _has_cell(method, problem, optimizer):
            names.append(name)
    return names


def _has_cell(method, problem, optimizer) -> bool:
    try:
        lookup(method, problem, optimizer)
    except TypeError:
        return False
    return True


# ------------------------------------------------------------------- the [optimizer] table

OPTIMIZER_ALIASES = {"sgd_momentum": "heavy_ball"}  # names from before optimizers were modules


def optimizer_fields(optimizer_type) -> list[str]:
    """The constructor fields of an optimizer module (the `[optimizer]` keys besides `name`)."""
    return [f.name for f in dataclasses.fields(optimizer_type) if f.init]


def _optimizer_type(name):
    """The module a config `optimizer.name` means: a registered name, an old name, or
    `"package.module:Class"` (imported, so that the module registers its cells — how a
    user's optimizer reaches `hsgd run` from the shell, like a user's loss)."""
    if isinstance(name, str) and ":" in name:
        module, _, attr = name.partition(":")
        try:
            cls = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as e:
            raise ConfigError(f"optimizer.name {name!r} could not be imported: {e}") from None
        if not (isinstance(cls, type) and issubclass(cls, AbstractOptimizer)):
            raise ConfigError(f"optimizer.name {name!r} is not an hsgd.AbstractOptimizer "
                              f"subclass, got {cls!r}")
        return cls
    types = optimizer_types()
    names = sorted(types) + sorted(OPTIMIZER_ALIASES)
    key = OPTIMIZER_ALIASES.get(name, name) if isinstance(name, str) else None
    if key not in types:
        raise ConfigError(f"optimizer.name must be one of {names} (registered optimizers; "
                          f"hsgd.register_optimizer adds one) or 'module:Class', got {name!r}")
    return types[key]


def _field_value(cfg: dict, key: str, optimizer_type, where: str):
    """A TOML scalar for a module field: numbers finite (an integer where the field's default
    is a float becomes a float), strings and booleans as they are."""
    value = cfg[key]
    if isinstance(value, bool | str):
        return value
    if not _is_number(value):
        raise ConfigError(f"{where}.{key} must be a number, a string or a boolean, got "
                          f"{value!r}")
    if not np.isfinite(value):
        raise ConfigError(f"{where}.{key} must be finite, got {value!r}")
    default = {f.name: f.default for f in dataclasses.fields(optimizer_type)}.get(key)
    return float(value) if isinstance(default, float) and isinstance(value, int) else value


def _named_key(message: str, keys) -> str | None:
    """The key an error message names first (as a whole word), if any."""
    found = [(m.start(), k) for k in keys if (m := re.search(rf"\b{re.escape(k)}\b", message))]
    return min(found)[1] if found else None


def _optimizer_section(opt_cfg: dict, problem, *, schedule=None, where="optimizer",
                       extra_keys=()) -> tuple[str, AbstractOptimizer]:
    """(`name` as written, the optimizer module) of an `[optimizer]` table: every key but
    `name` (and `extra_keys`, handled by the caller) is a field of the named module; `schedule`
    (if given) replaces the table's schedule (hsgd tune: the tuned family sets it)."""
    name = opt_cfg.get("name", "sgd")
    cls = _optimizer_type(name)
    fields = optimizer_fields(cls)
    allowed = set(fields) | {"name", *extra_keys}
    if schedule is not None:
        allowed.discard("schedule")
    for key in opt_cfg:
        if key in allowed:
            continue
        if key == "schedule" and "schedule" in fields:
            raise ConfigError(f"{where}.schedule does not apply here: tune.family sets the "
                              f"schedule")
        others = sorted(n for n, t in optimizer_types().items()
                        if t is not cls and key in optimizer_fields(t))
        if others:
            raise ConfigError(f"{where}.{key} applies only to optimizer.name = "
                              f"{' | '.join(map(repr, others))}; optimizer {name!r} "
                              f"({cls.__name__}) takes {sorted(allowed)}")
        raise ConfigError(f"unknown config key '{where}.{key}' (optimizer {name!r} "
                          f"({cls.__name__}) takes {sorted(allowed)})")
    kwargs = {}
    for key in fields:
        if key == "schedule":
            kwargs[key] = schedule if schedule is not None else _schedule(opt_cfg["schedule"])
        elif key == "batch" and key in opt_cfg:  # every optimizer's batch: samples per step
            kwargs[key] = _int(opt_cfg, "batch", where, minimum=1)
        elif key in opt_cfg:
            kwargs[key] = _field_value(opt_cfg, key, cls, where)
    try:
        optimizer = cls(**kwargs)
    except (TypeError, ValueError) as e:
        key = _named_key(str(e), [k for k in kwargs if k != "schedule"])
        raise ConfigError(f"{where}.{key}: {e}" if key else f"{where} ({name}): {e}") from None
    if not any(_has_cell(m, problem, optimizer) for m in RUN_METHODS.values()):
        kinds = sorted({_KIND_NAMES.get(p, p) for p in _problem_types(cls)})
        kind = PROBLEM_KINDS.get(type(problem), type(problem).__name__)
        raise ConfigError(f"optimizer.name = {name!r} ({cls.__name__}) has no cell for a "
                          f"{kind} problem; it runs on "
                          + (" or ".join(f"problem.kind = {k!r}" for k in kinds) or "nothing"))
    return name, optimizer


def _problem_types(optimizer_type) -> set:
    """The names of the problem types `optimizer_type` has a cell for."""
    return {p for (_, p, o) in supported() if o == optimizer_type.__name__}


def _batch_default(raw_optimizer: dict, cfg_optimizer: dict):
    """`batch_fraction` given without `batch`: the default `batch = 1` does not apply."""
    if "batch_fraction" in raw_optimizer and "batch" not in raw_optimizer:
        cfg_optimizer.pop("batch", None)


def _cell_schedule(schedule, opt_cfg, problem, optimizer, conv: Conventions):
    r"""The schedule in the cell's clock: scaled by the pair's stability limit when
    `stepsize_unit = "limit"`, and $\gamma_k = \gamma(k\zeta)$ for a cell counting
    iterations (the config's times are epochs)."""
    unit = opt_cfg.get("stepsize_unit", "absolute")
    if unit not in ("absolute", "limit"):
        raise ConfigError(f"optimizer.stepsize_unit must be 'absolute' or 'limit', got {unit!r}")
    scale = 1.0
    if unit == "limit":
        scale = float(conv.limit(problem, optimizer))
    if conv.epochs_per_iteration is None:
        return schedule if scale == 1.0 else FunctionSchedule(lambda t: scale * schedule(t))
    zeta = conv.epochs_per_iteration(problem, optimizer)
    return FunctionSchedule(lambda k: scale * schedule(k * zeta))


@dataclass
class Job:
    """Everything `hsgd run` needs, built from a validated config."""

    config: dict
    problem: Problem | FiniteProblem
    optimizer: AbstractOptimizer  # its schedule in the cell's clock
    name: str  # the optimizer's config name, as written
    ts: np.ndarray  # the config's times (t = k/d, or epochs for finite data)
    methods: tuple[str, ...]
    sgd_runs: int
    sgd_seed: int
    sde_paths: int
    ode_bins: int

    @property
    def schedule(self) -> AbstractSchedule:
        return self.optimizer.schedule

    @property
    def batch(self):
        return self.optimizer.batch

    @property
    def conventions(self) -> Conventions:
        return conventions_for(self.problem, self.optimizer)


def load(path: str | Path | None) -> Job:
    """Read a TOML config (or the built-in default when `path` is None) and build the job."""
    if path is None:
        return build({})
    path = Path(path)
    return build(_read_toml(path), base=path.parent)


def _read_toml(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None


def merge(raw: dict) -> dict:
    """The default config overlaid with `raw` (sections merged key by key). For
    `problem.kind = "finite"` the [problem] defaults are those of its data source. The default
    `run.methods` depend on the (problem, optimizer) pair and are filled in by [`build`][]."""
    _check_keys(raw, {"problem", "optimizer", "run"}, "")
    cfg = copy.deepcopy(DEFAULT)
    prob_raw = raw.get("problem", {})
    kind = prob_raw.get("kind", "streaming") if isinstance(prob_raw, dict) else "streaming"
    if kind not in ("streaming", "finite", "plrf"):
        raise ConfigError(f"problem.kind must be 'streaming', 'finite' or 'plrf', got {kind!r}")
    if kind == "plrf":
        cfg["problem"] = dict(PLRF_DEFAULT)
        cfg["run"].update(horizon=200.0, time_grid="log")
    if kind == "finite":
        data = prob_raw.get("data", "gaussian")
        if data not in _FINITE_DATA:
            raise ConfigError(f"problem.data must be one of {list(_FINITE_DATA)}, got {data!r}")
        cfg["problem"] = {"kind": "finite", "data": data,
                          **{k: v for k, v in _FINITE_DATA[data].items() if v is not None}}
    for section, values in raw.items():
        if not isinstance(values, dict):
            raise ConfigError(f"[{section}] must be a table, got {values!r}")
        for key, value in values.items():
            if isinstance(value, dict) and key in ("spectrum", "schedule"):
                cfg[section][key] = dict(value)  # a new spectrum/schedule replaces the default
            else:
                cfg[section][key] = value
    _batch_default(raw.get("optimizer", {}), cfg["optimizer"])
    _schedule_default(raw.get("optimizer", {}), cfg["optimizer"])
    if kind == "plrf" and "schedule" in cfg["optimizer"] and \
            "schedule" not in raw.get("optimizer", {}):
        cfg["optimizer"]["schedule"] = {"kind": "constant", "value": _plrf_gamma(cfg)}
    return cfg


def _plrf_gamma(cfg: dict) -> float:
    """The default constant stepsize of a PLRF config: $\\gamma = \\eta d$ with $\\eta$ =
    [`default_eta`][hsgd.scaling.default_eta] per iteration (1.0 when a value it needs is bad:
    that value's own error is raised where the section is read; an error for alpha <= 1/2,
    where there is no d-independent default)."""
    prob, opt = cfg["problem"], cfg["optimizer"]
    try:
        alpha, batch, d = float(prob["alpha"]), float(opt.get("batch") or 1), float(prob["d"])
    except (TypeError, ValueError):
        return 1.0
    if 0 < alpha <= 0.5:
        raise ConfigError(f"problem.alpha = {alpha} <= 1/2 has no default PLRF stepsize (tr K "
                          f"grows with v): give [optimizer.schedule] (gamma = eta * d)")
    if alpha > 0.5 and batch >= 1 and d >= 1:
        return float(default_eta(alpha, batch)) * d
    return 1.0


def _schedule_default(raw_optimizer: dict, cfg_optimizer: dict):
    """Drop the default `[optimizer.schedule]` for a module without a `schedule` field (its
    base rate is a field of its own, e.g. AdaGrad-Norm's `eta`), unless the config gave one."""
    if "schedule" in raw_optimizer:
        return
    try:
        cls = _optimizer_type(cfg_optimizer.get("name", "sgd"))
    except ConfigError:
        return  # reported where the table is read
    if "schedule" not in optimizer_fields(cls):
        cfg_optimizer.pop("schedule", None)


def build(raw: dict, base: Path | None = None) -> Job:
    cfg = merge(raw)
    prob_cfg, opt_cfg, run_cfg = cfg["problem"], cfg["optimizer"], cfg["run"]
    finite = prob_cfg.get("kind") == "finite"
    problem = _problem_section(prob_cfg, base)
    name, optimizer = _optimizer_section(opt_cfg, problem, extra_keys=("stepsize_unit",))
    _check_keys(run_cfg, _RUN_KEYS | {"methods"}, "run")
    conv = conventions_for(problem, optimizer)
    if "stepsize_unit" in opt_cfg and conv.limit is None:
        raise ConfigError(f"optimizer.stepsize_unit applies only where hsgd knows a stability "
                          f"limit (finite problems with sgd or heavy_ball); not to optimizer "
                          f"{name!r} on a {PROBLEM_KINDS.get(type(problem), 'this')} problem")
    batch = optimizer.batch
    if finite and batch is not None and not is_traced(batch) and batch > problem.n:
        raise ConfigError(f"optimizer.batch must be <= n = {problem.n} (the number of "
                          f"samples), got {batch}")
    schedule = _cell_schedule(optimizer.schedule, opt_cfg, problem, optimizer, conv)
    optimizer = optimizer.replace(schedule=schedule)

    horizon = _float(run_cfg, "horizon", "run", minimum=0.0, strict=True)
    num = _int(run_cfg, "num_times", "run", minimum=2)
    time_grid = run_cfg["time_grid"]
    if time_grid == "linear":
        ts = np.linspace(0.0, horizon, num)
    elif time_grid == "log":
        ts = np.concatenate([[0.0], np.geomspace(horizon * 1e-3, horizon, num - 1)])
    else:
        raise ConfigError(f"run.time_grid must be 'linear' or 'log', got {time_grid!r}")
    allowed = run_methods(problem, optimizer)
    has_data = problem.data is not None if finite else \
        not (prob_cfg.get("kind") == "plrf" and prob_cfg.get("deterministic"))
    if "methods" not in run_cfg:  # the deterministic equivalent, and the simulator if data
        run_cfg["methods"] = [m for m in allowed if m == conv.ode_label
                              or (m == "sgd" and has_data)]
    methods = run_cfg["methods"]
    if (not isinstance(methods, list) or not methods
            or any(m not in allowed for m in methods)):
        raise ConfigError(f"run.methods must be a non-empty list drawn from {allowed} "
                          f"(optimizer {name!r}), got {methods!r}")
    if not has_data and any(m in ("sgd", "sde") for m in methods):
        what = (f"problem.data = {prob_cfg['data']!r} is a spectrum only (no data matrix)"
                if finite else "problem.deterministic = true has no sampled instance")
        raise ConfigError(f"{what}: run.methods cannot include 'sgd' or 'sde'")
    if finite and run_cfg.get("ode_bins", 0):
        raise ConfigError("run.ode_bins applies only to streaming problems")
    return Job(config=cfg, problem=problem, optimizer=optimizer, name=name, ts=ts,
               methods=tuple(methods), sgd_runs=_int(run_cfg, "sgd_runs", "run", minimum=1),
               sgd_seed=_int(run_cfg, "seed", "run", minimum=0),
               sde_paths=_int(run_cfg, "sde_paths", "run", minimum=1),
               ode_bins=_int(run_cfg, "ode_bins", "run", minimum=0))


def _problem_section(prob_cfg: dict, base: Path | None) -> Problem | FiniteProblem:
    """The problem of a merged [problem] section, streaming or finite, keys checked."""
    if prob_cfg.get("kind") == "finite":
        _check_keys(prob_cfg, {"kind", "data", *_FINITE_DATA[prob_cfg["data"]]}, "problem")
        return _finite_problem(prob_cfg, base)
    if prob_cfg.get("kind") == "plrf":
        _check_keys(prob_cfg, set(PLRF_DEFAULT), "problem")
        return _plrf_problem(prob_cfg)
    _check_keys(prob_cfg, _PROBLEM_KEYS, "problem")
    return _problem(prob_cfg, base)


def _finite_problem(cfg: dict, base: Path | None):
    """The [`FiniteProblem`][] of a `problem.kind = "finite"` section."""
    data, where = cfg["data"], "problem"
    ridge = _float(cfg, "ridge", where, minimum=0.0)
    if data in ("gaussian", "marchenko_pastur"):
        n = _int(cfg, "n", where, minimum=1)
        d = _int(cfg, "d", where, minimum=1)
        noise = _float(cfg, "noise_std", where, minimum=0.0)
        if data == "marchenko_pastur":
            return _wrap(where, lambda: FiniteProblem.marchenko_pastur(
                n, d, noise_std=noise, ridge=ridge,
                num_points=_int(cfg, "num_points", where, minimum=2)))
        norm = cfg.get("target_norm")
        norm = None if norm is None else _float(cfg, "target_norm", where, minimum=0.0)
        return _wrap(where, lambda: FiniteProblem.gaussian(
            n, d, _int(cfg, "seed", where, minimum=0), noise_std=noise, target_norm=norm,
            ridge=ridge))
    activation = cfg["activation"]
    if not isinstance(activation, str):
        raise ConfigError(f"problem.activation must be a string, got {activation!r}")
    seed = _int(cfg, "seed", where, minimum=0)
    if data in ("digits", "mnist"):
        images = dict(key=seed, activation=activation, ridge=ridge)
        if data == "mnist":
            task = cfg["task"]
            if not (task == "even_odd" or isinstance(task, list) and len(task) == 2
                    and all(type(c) is int and 0 <= c <= 9 for c in task)
                    and task[0] != task[1]):
                raise ConfigError("problem.task must be \"even_odd\" or two different digits "
                                  f"[a, b] in 0..9 (a: target +1, b: -1), got {task!r}")
            images["task"] = task if isinstance(task, str) else tuple(task)
        return _wrap(where, lambda: getattr(FiniteProblem, data)(
            _int(cfg, "n", where, minimum=1), _int(cfg, "features", where, minimum=1),
            **images))
    if "file" not in cfg or not isinstance(cfg["file"], str):
        raise ConfigError("problem.data = 'file' needs problem.file, the path of an .npz file "
                          f"with arrays A and b, got {cfg.get('file')!r}")
    path = Path(cfg["file"])
    path = path if path.is_absolute() or base is None else base / path
    if not path.is_file():
        raise ConfigError(f"problem.file {str(path)!r} does not exist")
    if "features" not in cfg:
        return _wrap(f"problem.file {str(path)!r}",
                     lambda: FiniteProblem.from_npz(path, ridge=ridge))
    features = _int(cfg, "features", where, minimum=1)
    # random features of the file's inputs: A (and A_test) are the inputs Z
    arrays = _wrap(f"problem.file {str(path)!r}", lambda: read_npz(path))
    test = (arrays["A_test"], arrays["b_test"]) if "A_test" in arrays else None
    return _wrap(f"problem.file {str(path)!r}", lambda: FiniteProblem.random_features(
        arrays["A"], arrays["b"], num_features=features, key=seed, activation=activation,
        ridge=ridge, test=test))


def _plrf_problem(cfg: dict) -> Problem:
    """The streaming problem of a `problem.kind = "plrf"` section (SPEC §13): a sampled W
    (`seed`), or the deterministic equivalent (`deterministic = true`: theory only)."""
    where = "problem"
    alpha = _float(cfg, "alpha", where, minimum=0.0, strict=True)
    beta = _float(cfg, "beta", where, minimum=0.0, strict=True)
    v, d = _int(cfg, "v", where, minimum=2), _int(cfg, "d", where, minimum=1)
    if not d < v:
        raise ConfigError(f"problem.d must be < problem.v (K-hat invertible), got d = {d}, "
                          f"v = {v}")
    deterministic = cfg.get("deterministic", False)
    if not isinstance(deterministic, bool):
        raise ConfigError(f"problem.deterministic must be true or false, got {deterministic!r}")
    if deterministic:
        return _wrap(where, lambda: Problem.plrf(
            alpha, beta, v, d, deterministic=True,
            num_modes=_int(cfg, "num_modes", where, minimum=16)))
    key = jax.random.PRNGKey(_int(cfg, "seed", where, minimum=0))
    return _wrap(where, lambda: Problem.plrf(alpha, beta, v, d, key))


def _problem(prob_cfg: dict, base: Path | None) -> Problem:
    d = _int(prob_cfg, "d", "problem", minimum=1)
    loss = _loss(prob_cfg)
    spectrum = _spectrum(prob_cfg["spectrum"], d, base)
    # X0 = target_weight X* + noise (old name: overlap), or X0 at a given initial cosine
    weight = _float(prob_cfg, "target_weight", "problem")
    if "overlap" in prob_cfg:
        if weight != 0.0:
            raise ConfigError("give problem.target_weight or its old name problem.overlap, "
                              "not both")
        weight = _float(prob_cfg, "overlap", "problem")
    cosine = None
    if "cosine" in prob_cfg:
        cosine = _float(prob_cfg, "cosine", "problem")
        if not -1.0 <= cosine <= 1.0:
            raise ConfigError(f"problem.cosine must be in [-1, 1], got {cosine}")
    return _wrap("problem", lambda: Problem.random(
        loss, spectrum, jax.random.PRNGKey(_int(prob_cfg, "seed", "problem", minimum=0)),
        target_norm=_float(prob_cfg, "target_norm", "problem", minimum=0.0),
        init_norm=_float(prob_cfg, "init_norm", "problem", minimum=0.0),
        target_weight=weight, cosine=cosine))


_SWEEP_SETTINGS = {"chunk_size", "horizon", "num_times", "target_risk", "ode_bins"}
SWEEP_DEFAULT = {"chunk_size": 256, "horizon": 10.0, "num_times": 21, "ode_bins": 64}
SWEEP_GAMMA = {"start": 0.05, "stop": 8.0, "num": 32, "spacing": "log"}


@dataclass
class SweepJob:
    """Everything `hsgd sweep` needs: the points set `optimizer`'s fields (see
    [`ode_outcomes`][])."""

    config: dict
    problem: Problem | FiniteProblem
    points: dict
    ts: np.ndarray
    chunk_size: int
    target_risk: float | None
    optimizer: AbstractOptimizer = dataclasses.field(default_factory=lambda: SGD(1.0))
    name: str = "sgd"


def load_sweep(path: str | Path) -> SweepJob:
    """Read a sweep config: the [problem] section as for `hsgd run`, an optional [optimizer]
    (the template the points change) and a [sweep] section."""
    path = Path(path)
    return build_sweep(_read_toml(path), base=path.parent)


def build_sweep(raw: dict, base: Path | None = None) -> SweepJob:
    r"""A sweep: `[sweep]` holds the settings (`chunk_size`, `horizon`, `num_times`,
    `target_risk`, `ode_bins`) and one axis per swept parameter — `gamma` (a constant learning
    rate; the default axis), any field of the `[optimizer]` module but its schedule (`batch`,
    `momentum`, …) or a parameter of its `[optimizer.schedule]` (then without `gamma`). Times
    are in the pair's clock ($t = k/d$; epochs for finite-data SGD; iterations for heavy
    ball, as for `hsgd tune`)."""
    _check_keys(raw, {"problem", "optimizer", "sweep"}, "")
    for section in ("optimizer", "sweep"):
        if not isinstance(raw.get(section, {}), dict):
            raise ConfigError(f"[{section}] must be a table, got {raw[section]!r}")
    merged = merge({"problem": raw.get("problem", {}), "optimizer": raw.get("optimizer", {})})
    problem = _problem_section(merged["problem"], base)
    name, template = _optimizer_section(merged["optimizer"], problem)
    fields, schedule_fields = sweep_parameters(template)
    given = dict(raw.get("sweep", {}))
    for key in given:
        if key not in _SWEEP_SETTINGS | {"gamma", *fields, *schedule_fields}:
            raise ConfigError(f"unknown config key 'sweep.{key}' (settings: "
                              f"{sorted(_SWEEP_SETTINGS)}; axes: "
                              f"{['gamma', *fields, *schedule_fields]} — gamma, the fields of "
                              f"optimizer {name!r} and of its schedule)")
    on_schedule = [k for k in given if k in schedule_fields]
    if on_schedule and "gamma" in given:
        raise ConfigError(f"sweep.gamma (a constant learning rate) and sweep.{on_schedule[0]} "
                          f"(a parameter of optimizer.schedule) exclude each other")
    sweep_cfg = {**SWEEP_DEFAULT, **({} if on_schedule else {"gamma": SWEEP_GAMMA}), **given}
    cfg = {"problem": merged["problem"], "optimizer": merged["optimizer"], "sweep": sweep_cfg}
    axes = {k: _axis(v, f"sweep.{k}") for k, v in sweep_cfg.items() if k not in _SWEEP_SETTINGS}
    if "batch" in axes and (np.any(axes["batch"] < 1)
                            or np.any(axes["batch"] != np.round(axes["batch"]))):
        raise ConfigError(f"sweep.batch must hold integers >= 1, got {axes['batch'].tolist()}")
    if "ode_bins" in given and not hasattr(problem, "coarsen"):
        raise ConfigError("sweep.ode_bins applies only to streaming problems")
    horizon = _float(sweep_cfg, "horizon", "sweep", minimum=0.0, strict=True)
    num = _int(sweep_cfg, "num_times", "sweep", minimum=2)
    target = sweep_cfg.get("target_risk")
    if target is not None:
        target = _float(sweep_cfg, "target_risk", "sweep", minimum=0.0, strict=True)
    try:
        ts = recipe_for(problem, template).grid(np.linspace(0.0, horizon, num))
    except ValueError as e:
        raise ConfigError(f"sweep.horizon, sweep.num_times: {e}") from None
    points = grid(**axes)
    _check_sweep_axes(problem, template, name, ts, points,
                      [k for k in axes if k in fields and k not in template.tunable(problem)])
    return SweepJob(config=cfg, problem=problem, points=points, ts=ts,
                    chunk_size=_int(sweep_cfg, "chunk_size", "sweep", minimum=1),
                    target_risk=target, optimizer=template, name=name)


def _check_sweep_axes(problem, template, name, ts, points, names):
    """Each axis over a field the optimizer does not declare continuous
    ([`tunable`][hsgd.AbstractOptimizer.tunable]) traced through the pair's `ode` once (a
    sweep point is a traced value): a ConfigError naming the axis where the cell cannot take
    it, e.g. a batch size for finite-data SGD, whose ODE is for batch 1."""
    fn = ode_outcomes(problem, ts, optimizer=template)
    try:
        fn.check_points(points)  # eagerly: names, gamma >= 0, batch >= 1, each field's checks
    except ValueError as e:
        raise ConfigError(f"sweep: {e}") from None
    point = {k: float(v[0]) for k, v in points.items()}
    for key in names:
        try:
            jax.eval_shape(lambda v, key=key: fn({**point, key: v}), jnp.asarray(point[key]))
        except (TypeError, ValueError) as e:
            raise ConfigError(f"sweep.{key} cannot be a sweep axis for optimizer {name!r} on "
                              f"a {PROBLEM_KINDS.get(type(problem), type(problem).__name__)} "
                              f"problem (values {np.unique(points[key]).tolist()}): {e}") from None


_TUNE_KEYS = {"family", "horizon", "objective", "num_steps", "learning_rate", "num_knots",
              "num_times", "ode_bins", "baselines", "sgd_runs", "seed", "target",
              "hyperparameters"}
TUNE_DEFAULT = {"family": "knots", "horizon": 10.0, "objective": "final", "num_steps": 100,
                "learning_rate": 0.05, "num_knots": 12, "num_times": 41, "ode_bins": 64,
                "baselines": ["constant", "step_decay", "cosine", "critical"], "sgd_runs": 16,
                "seed": 1}


@dataclass
class TuneJob:
    """Everything `hsgd tune` needs."""

    config: dict
    problem: Problem | FiniteProblem
    optimizer: AbstractOptimizer  # the template: its schedule is the tuned family's
    family: str
    horizon: float
    objective: str
    num_steps: int
    learning_rate: float
    num_knots: int
    num_times: int
    ode_bins: int
    baselines: tuple[str, ...]
    sgd_runs: int
    seed: int
    name: str = "sgd"
    target: str | None = None
    hyperparameters: dict = dataclasses.field(default_factory=dict)

    @property
    def batch(self):
        return self.optimizer.batch


def load_tune(path: str | Path) -> TuneJob:
    """Read a tune config: [problem] as for `hsgd run`, [optimizer] (a module's fields but its
    schedule), and [tune]."""
    path = Path(path)
    return build_tune(_read_toml(path), base=path.parent)


def build_tune(raw: dict, base: Path | None = None) -> TuneJob:
    _check_keys(raw, {"problem", "optimizer", "tune"}, "")
    for section in ("optimizer", "tune"):
        if not isinstance(raw.get(section, {}), dict):
            raise ConfigError(f"[{section}] must be a table, got {raw[section]!r}")
    tune_cfg = {**TUNE_DEFAULT, **raw.get("tune", {})}
    _check_keys(tune_cfg, _TUNE_KEYS, "tune")
    opt_cfg = {"batch": 1, **raw.get("optimizer", {})}
    _batch_default(raw.get("optimizer", {}), opt_cfg)
    cfg = merge({"problem": raw.get("problem", {})})
    cfg = {"problem": cfg["problem"], "optimizer": opt_cfg, "tune": tune_cfg}
    problem = _problem_section(cfg["problem"], base)
    finite = isinstance(problem, FiniteProblem)
    name, optimizer = _optimizer_section(opt_cfg, problem, schedule=Constant(1.0))
    target = tune_cfg.get("target")
    if target is not None and (not finite or target not in ("risk", "loss")):
        raise ConfigError("tune.target applies to finite problems and must be 'risk' or "
                          f"'loss', got {target!r}")
    if "ode_bins" in raw.get("tune", {}) and not hasattr(problem, "coarsen"):
        raise ConfigError("tune.ode_bins applies only to streaming problems")
    family = tune_cfg["family"]
    if family not in FAMILIES:
        raise ConfigError(f"tune.family must be one of {list(FAMILIES)}, got {family!r}")
    objective = tune_cfg["objective"]
    if objective not in OBJECTIVES:
        raise ConfigError(f"tune.objective must be one of {list(OBJECTIVES)}, got "
                          f"{objective!r}")
    names = tune_cfg["baselines"]
    if not isinstance(names, list) or any(n not in BASELINES for n in names):
        raise ConfigError(f"tune.baselines must be a list drawn from {list(BASELINES)}, got "
                          f"{names!r}")
    sgd_runs = _int(tune_cfg, "sgd_runs", "tune", minimum=0)
    if sgd_runs == 1:
        raise ConfigError("tune.sgd_runs must be 0 (no SGD check) or >= 2, got 1")
    pair = f"({type(problem).__name__}, {type(optimizer).__name__})"
    if not _has_cell("ode", problem, optimizer):
        raise ConfigError(f"optimizer.name = {name!r}: hsgd tune needs an ode cell for {pair}, "
                          f"and there is none")
    if sgd_runs and not _has_cell("simulate", problem, optimizer):
        raise ConfigError(f"tune.sgd_runs = {sgd_runs} needs a simulate cell for {pair}; set "
                          f"tune.sgd_runs = 0 (no SGD check)")
    hyper = _hyperparameters(tune_cfg.get("hyperparameters", {}), problem, optimizer, name)
    return TuneJob(
        config=cfg, problem=problem, optimizer=optimizer, family=family,
        horizon=_float(tune_cfg, "horizon", "tune", minimum=0.0, strict=True),
        objective=objective, num_steps=_int(tune_cfg, "num_steps", "tune", minimum=0),
        learning_rate=_float(tune_cfg, "learning_rate", "tune", minimum=0.0, strict=True),
        num_knots=_int(tune_cfg, "num_knots", "tune", minimum=2),
        num_times=_int(tune_cfg, "num_times", "tune", minimum=2),
        ode_bins=_int(tune_cfg, "ode_bins", "tune", minimum=0) if hasattr(problem, "coarsen")
        else 0, baselines=tuple(names), sgd_runs=sgd_runs,
        seed=_int(tune_cfg, "seed", "tune", minimum=0), name=name, target=target,
        hyperparameters=hyper)


def _hyperparameters(table, problem, optimizer, name) -> dict:
    """`tune.hyperparameters`: field → initial value, each a field the optimizer declares
    tunable on this problem, strictly inside its bounds."""
    where = "tune.hyperparameters"
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table field = initial value, got {table!r}")
    bounds = optimizer.tunable(problem)
    out = {}
    for key in table:
        if key not in bounds:
            raise ConfigError(f"{where}.{key}: not a tunable field of optimizer {name!r} on "
                              f"this problem; tunable: {sorted(bounds)}")
        value = _float(table, key, where)
        low, high = bounds[key]
        if not low < value < high:
            raise ConfigError(f"{where}.{key} must be in ({low:g}, {high:g}), got {value}")
        out[key] = value
    return out


def _axis(value, where: str) -> np.ndarray:
    """A list of numbers, or a table {start, stop, num, spacing = "linear" | "log"}."""
    if isinstance(value, dict):
        _check_keys(value, {"start", "stop", "num", "spacing"}, where)
        start = _float(value, "start", where, minimum=0.0)
        stop = _float(value, "stop", where, minimum=0.0, strict=True)
        num = _int(value, "num", where, minimum=1)
        spacing = value.get("spacing", "linear")
        if spacing not in ("linear", "log"):
            raise ConfigError(f"{where}.spacing must be 'linear' or 'log', got {spacing!r}")
        if spacing == "log" and start == 0:
            raise ConfigError(f"{where}.start must be > 0 with spacing = 'log', got 0 (a zero "
                              "stepsize is allowed with spacing = 'linear' or in a list)")
        return (np.geomspace if spacing == "log" else np.linspace)(start, stop, num)
    if (not isinstance(value, list) or not value
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)):
        raise ConfigError(f"{where} must be a non-empty list of numbers or a table "
                          f"{{start, stop, num, spacing}}, got {value!r}")
    arr = np.asarray(value, dtype=float)
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ConfigError(f"{where} values must be finite and >= 0, got {value!r}")
    return arr


def _loss(cfg: dict) -> AbstractLoss:
    name = cfg["loss"]
    if not isinstance(name, str):
        raise ConfigError(f"problem.loss must be a string, got {name!r}")
    noise_std = _float(cfg, "noise_std", "problem", minimum=0.0, default=0.0)
    allowed = {"least_squares": {"noise_std", "noise", "noise_nu", "noise_scale"},
               "phase_retrieval": {"noise_std"}, "logistic": set(), "softmax": {"num_classes"}}
    extra = {"noise_std", "num_classes", "m", "m_star", "noise", "noise_nu",
             "noise_scale"} & set(cfg)
    if name in _LOSSES:
        bad = extra - allowed[name]
        if bad:
            raise ConfigError(f"problem.{sorted(bad)[0]} does not apply to loss {name!r}")
        if name == "least_squares":
            noise = _label_noise(cfg)
            return LeastSquares(noise_std) if noise is None else LeastSquares(noise=noise)
        if name == "phase_retrieval":
            return PhaseRetrieval(noise_std)
        if name == "logistic":
            return Logistic()
        return _wrap("problem.num_classes",
                     lambda: Softmax(_int(cfg, "num_classes", "problem", minimum=2, default=3)))
    if ":" not in name:
        raise ConfigError(f"problem.loss must be one of {list(_LOSSES)} or 'module:function' "
                          f"for a user-defined loss, got {name!r}")
    module, _, attr = name.partition(":")
    try:
        fn = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"problem.loss {name!r} could not be imported: {e}") from None
    noise_name = cfg.get("noise", "gaussian" if "noise_std" in cfg else "none")
    noises = {"none": NoNoise(), "gaussian": GaussianNoise(noise_std),
              "bernoulli": BernoulliTeacher()}
    if noise_name not in noises:
        raise ConfigError(f"problem.noise must be one of {list(noises)}, got {noise_name!r}")
    return CustomLoss(fn, m=_int(cfg, "m", "problem", minimum=1, default=1),
                      m_star=_int(cfg, "m_star", "problem", minimum=1, default=1),
                      noise=noises[noise_name])


def _label_noise(cfg: dict):
    """Least squares' label noise: `noise = "gaussian"` (the default; `noise_std`; None is
    returned) or `"student_t"` (`noise_nu` > 0 degrees of freedom, `noise_scale` > 0, default
    1)."""
    kind = cfg.get("noise", "gaussian")
    keys = {"gaussian": {"noise_std"}, "student_t": {"noise_nu", "noise_scale"}}
    if kind not in keys:
        raise ConfigError(f"problem.noise must be one of {list(keys)} for least_squares, got "
                          f"{kind!r}")
    bad = ({"noise_std", "noise_nu", "noise_scale"} & set(cfg)) - keys[kind]
    if bad:
        raise ConfigError(f"problem.{sorted(bad)[0]} does not apply to noise {kind!r} (the "
                          f"keys of {kind!r} are {sorted(keys[kind])})")
    if kind == "gaussian":
        return None
    if "noise_nu" not in cfg:
        raise ConfigError("problem.noise = 'student_t' needs problem.noise_nu (the degrees of "
                          "freedom, e.g. 1.5)")
    nu = _float(cfg, "noise_nu", "problem", minimum=0.0)
    scale = _float(cfg, "noise_scale", "problem", minimum=0.0, default=1.0)
    return _wrap("problem.noise_nu", lambda: StudentTNoise(nu, scale))


def _spectrum(cfg: dict, d: int, base: Path | None) -> Spectrum:
    kind = cfg.get("kind")
    if kind not in _SPECTRUM_KEYS:
        raise ConfigError(f"problem.spectrum.kind must be one of {list(_SPECTRUM_KEYS)}, "
                          f"got {kind!r}")
    _check_keys(cfg, _SPECTRUM_KEYS[kind], "problem.spectrum")
    where = "problem.spectrum"
    if kind == "power_law":
        return _wrap(where, lambda: Spectrum.power_law(
            d, _float(cfg, "alpha", where, minimum=0.0), cfg.get("normalize", "mean")))
    if kind == "uniform":
        return _wrap(where, lambda: Spectrum.uniform(d, _float(cfg, "low", where, minimum=0.0),
                                                     _float(cfg, "high", where)))
    if ("values" in cfg) == ("file" in cfg):
        raise ConfigError("problem.spectrum with kind 'eigenvalues' needs exactly one of "
                          "'values' (a list) or 'file' (a .npy/.txt file)")
    if "values" in cfg:
        values = np.asarray(_numbers(cfg["values"], "problem.spectrum.values"))
    else:
        path = Path(cfg["file"])
        path = path if path.is_absolute() or base is None else base / path
        try:
            values = np.load(path) if path.suffix == ".npy" else np.loadtxt(path)
        except OSError as e:
            raise ConfigError(f"problem.spectrum.file: {e}") from None
    if values.ndim != 1 or values.shape[0] != d:
        raise ConfigError(f"problem.spectrum has {values.size} eigenvalues but problem.d = {d}")
    return _wrap(where, lambda: Spectrum.from_eigenvalues(values))


def _schedule(cfg: dict) -> AbstractSchedule:
    kind = cfg.get("kind")
    if kind not in _SCHEDULE_KEYS:
        raise ConfigError(f"optimizer.schedule.kind must be one of {list(_SCHEDULE_KEYS)}, "
                          f"got {kind!r}")
    _check_keys(cfg, _SCHEDULE_KEYS[kind], "optimizer.schedule")
    cls = {"constant": Constant, "piecewise_linear": PiecewiseLinear,
           "exponential": ExponentialDecay, "step": StepDecay, "cosine": Cosine,
           "warmup": WarmupDecay}[kind]
    kwargs = {k: v for k, v in cfg.items() if k != "kind"}
    for key, value in kwargs.items():  # each value's type, named by its key, before JAX sees it
        if key == "decay":
            if not isinstance(value, str):
                raise ConfigError(f"optimizer.schedule.decay must be a string, got {value!r}")
        elif key in ("times", "values"):
            kwargs[key] = _numbers(value, f"optimizer.schedule.{key}")
        else:
            kwargs[key] = _float(cfg, key, "optimizer.schedule")
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ConfigError(f"optimizer.schedule ({kind}): {e}") from None
    except ValueError as e:
        raise ConfigError(f"optimizer.schedule: {e}") from None


def _check_keys(cfg: dict, allowed: set, where: str):
    for key in cfg:
        if key not in allowed:
            name = f"{where}.{key}" if where else key
            raise ConfigError(f"unknown config key {name!r} (allowed: {sorted(allowed)})")


def _int(cfg, key, where, minimum=None, default=None) -> int:
    value = cfg.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{where}.{key} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{where}.{key} must be >= {minimum}, got {value}")
    return value


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _numbers(value, where: str) -> list[float]:
    """A non-empty TOML list of finite numbers, or a ConfigError naming `where`."""
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{where} must be a non-empty list of numbers, got {value!r}")
    for i, v in enumerate(value):
        if not _is_number(v):
            raise ConfigError(f"{where}[{i}] must be a number, got {v!r}")
        if not np.isfinite(v):
            raise ConfigError(f"{where}[{i}] must be finite, got {v!r}")
    return [float(v) for v in value]


def _float(cfg, key, where, minimum=None, strict=False, default=None) -> float:
    if key not in cfg and default is None:
        raise ConfigError(f"{where}.{key} is required")
    value = cfg.get(key, default)
    if not _is_number(value):
        raise ConfigError(f"{where}.{key} must be a number, got {value!r}")
    if not np.isfinite(value):
        raise ConfigError(f"{where}.{key} must be finite, got {value!r}")
    if minimum is not None and (value < minimum or (strict and value == minimum)):
        raise ConfigError(f"{where}.{key} must be {'>' if strict else '>='} {minimum}, "
                          f"got {value}")
    return float(value)


def _wrap(where, fn):
    """`fn()`, with a bad value or an unreadable file reported as a ConfigError at `where`."""
    try:
        return fn()
    except ConfigError:
        raise
    except (ValueError, OSError) as e:
        raise ConfigError(f"{where}: {e}") from None
