"""`hsgd run` configuration: a TOML file (read with `tomllib`), validated key by key.

Every section has a fixed set of keys; an unknown key or a bad value raises [`ConfigError`][]
naming it (`problem.spectrum.alpha must be >= 0, got -1`). The README documents the format with
one example per loss.
"""

import copy
import importlib
import tomllib
from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np

from ._loss import AbstractLoss, CustomLoss, LeastSquares, Logistic, PhaseRetrieval, Softmax
from ._noise import BernoulliTeacher, GaussianNoise, NoNoise
from ._problem import FiniteProblem, Problem
from ._problem.finite import read_npz
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
from .theory import gamma_max, momentum_stepsize_limit


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
        "methods": ["ode", "sgd"],
        "sgd_runs": 8,
        "sde_paths": 8,
        "seed": 1,
        "ode_bins": 0,
    },
}

_PROBLEM_KEYS = {"kind", "loss", "d", "target_norm", "init_norm", "target_weight", "overlap",
                 "cosine", "seed", "spectrum", "noise_std", "num_classes", "m", "m_star", "noise"}
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
    "warmup": {"kind", "peak", "warmup", "horizon", "final", "decay", "initial"},
}
_RUN_KEYS = {"horizon", "num_times", "time_grid", "methods", "sgd_runs", "sde_paths", "seed",
             "ode_bins"}
_OPTIMIZER_KEYS = {"name", "batch", "schedule", "momentum", "stepsize_unit"}
_LOSSES = ("least_squares", "logistic", "phase_retrieval", "softmax")
METHODS = ("ode", "sgd", "sde")

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
FINITE_METHODS = {"sgd": ("ode", "volterra", "sgd", "sde"),
                  "sgd_momentum": ("recursion", "sgd")}


@dataclass
class Job:
    """Everything `hsgd run` needs, built from a validated config."""

    config: dict
    problem: Problem | FiniteProblem
    schedule: AbstractSchedule
    batch: int
    ts: np.ndarray
    methods: tuple[str, ...]
    sgd_runs: int
    sgd_seed: int
    sde_paths: int
    ode_bins: int
    optimizer: str = "sgd"
    momentum: float = 0.0


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
    `problem.kind = "finite"` the [problem] defaults are those of its data source and the
    default methods those of its optimizer."""
    _check_keys(raw, {"problem", "optimizer", "run"}, "")
    cfg = copy.deepcopy(DEFAULT)
    prob_raw = raw.get("problem", {})
    kind = prob_raw.get("kind", "streaming") if isinstance(prob_raw, dict) else "streaming"
    if kind not in ("streaming", "finite"):
        raise ConfigError(f"problem.kind must be 'streaming' or 'finite', got {kind!r}")
    if kind == "finite":
        data = prob_raw.get("data", "gaussian")
        if data not in _FINITE_DATA:
            raise ConfigError(f"problem.data must be one of {list(_FINITE_DATA)}, got {data!r}")
        cfg["problem"] = {"kind": "finite", "data": data,
                          **{k: v for k, v in _FINITE_DATA[data].items() if v is not None}}
        opt_raw = raw.get("optimizer", {})
        name = opt_raw.get("name", "sgd") if isinstance(opt_raw, dict) else "sgd"
        cfg["run"]["methods"] = ["recursion" if name == "sgd_momentum" else "ode"]
        if data != "marchenko_pastur":  # a spectrum only: nothing to run SGD on
            cfg["run"]["methods"].append("sgd")
    for section, values in raw.items():
        if not isinstance(values, dict):
            raise ConfigError(f"[{section}] must be a table, got {values!r}")
        for key, value in values.items():
            if isinstance(value, dict) and key in ("spectrum", "schedule"):
                cfg[section][key] = dict(value)  # a new spectrum/schedule replaces the default
            else:
                cfg[section][key] = value
    return cfg


def build(raw: dict, base: Path | None = None) -> Job:
    cfg = merge(raw)
    prob_cfg, opt_cfg, run_cfg = cfg["problem"], cfg["optimizer"], cfg["run"]
    finite = prob_cfg.get("kind") == "finite"
    problem = _problem_section(prob_cfg, base)
    _check_keys(opt_cfg, _OPTIMIZER_KEYS, "optimizer")
    _check_keys(run_cfg, _RUN_KEYS, "run")

    schedule = _schedule(opt_cfg["schedule"])
    batch = _int(opt_cfg, "batch", "optimizer", minimum=1)
    name, momentum = _optimizer(opt_cfg, finite)
    if "stepsize_unit" in opt_cfg and not finite:
        raise ConfigError("optimizer.stepsize_unit applies only to finite problems")
    if finite:
        if batch > problem.n:
            raise ConfigError(f"optimizer.batch must be <= n = {problem.n} (the number of "
                              f"samples), got {batch}")
        schedule = _finite_schedule(schedule, opt_cfg, problem, name, batch, momentum)

    horizon = _float(run_cfg, "horizon", "run", minimum=0.0, strict=True)
    num = _int(run_cfg, "num_times", "run", minimum=2)
    grid = run_cfg["time_grid"]
    if grid == "linear":
        ts = np.linspace(0.0, horizon, num)
    elif grid == "log":
        ts = np.concatenate([[0.0], np.geomspace(horizon * 1e-3, horizon, num - 1)])
    else:
        raise ConfigError(f"run.time_grid must be 'linear' or 'log', got {grid!r}")
    methods = run_cfg["methods"]
    allowed = FINITE_METHODS[name] if finite else METHODS
    if (not isinstance(methods, list) or not methods
            or any(m not in allowed for m in methods)):
        raise ConfigError(f"run.methods must be a non-empty list drawn from {list(allowed)}"
                          + (f" (optimizer {name!r})" if finite else "") + f", got {methods!r}")
    if finite and problem.data is None and any(m in ("sgd", "sde") for m in methods):
        raise ConfigError(f"problem.data = {prob_cfg['data']!r} is a spectrum only (no data "
                          "matrix): run.methods cannot include 'sgd' or 'sde'")
    if finite and run_cfg.get("ode_bins", 0):
        raise ConfigError("run.ode_bins applies only to streaming problems")
    return Job(config=cfg, problem=problem, schedule=schedule, batch=batch, ts=ts,
               methods=tuple(methods), sgd_runs=_int(run_cfg, "sgd_runs", "run", minimum=1),
               sgd_seed=_int(run_cfg, "seed", "run", minimum=0),
               sde_paths=_int(run_cfg, "sde_paths", "run", minimum=1),
               ode_bins=_int(run_cfg, "ode_bins", "run", minimum=0), optimizer=name,
               momentum=momentum)


def _optimizer(opt_cfg: dict, finite: bool) -> tuple[str, float]:
    """`optimizer.name` and `optimizer.momentum`, checked against the problem kind (shared by
    `hsgd run` and `hsgd tune`)."""
    name = opt_cfg.get("name", "sgd")
    allowed = tuple(FINITE_METHODS) if finite else ("sgd",)
    if name not in allowed:
        raise ConfigError(f"optimizer.name must be one of {list(allowed)} for a "
                          f"{'finite' if finite else 'streaming'} problem, got {name!r}"
                          + ("" if finite else " (SGD with momentum: problem.kind = 'finite')"))
    if "momentum" in opt_cfg and name != "sgd_momentum":
        raise ConfigError("optimizer.momentum applies only to optimizer.name = "
                          "'sgd_momentum' (finite problems)")
    momentum = _float(opt_cfg, "momentum", "optimizer", minimum=0.0, default=0.0)
    if momentum >= 1:
        raise ConfigError(f"optimizer.momentum must be in [0, 1), got {momentum}")
    return name, momentum


def _problem_section(prob_cfg: dict, base: Path | None) -> Problem | FiniteProblem:
    """The problem of a merged [problem] section, streaming or finite, keys checked."""
    if prob_cfg.get("kind") == "finite":
        _check_keys(prob_cfg, {"kind", "data", *_FINITE_DATA[prob_cfg["data"]]}, "problem")
        return _finite_problem(prob_cfg, base)
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


def _finite_schedule(schedule, opt_cfg, problem, name, batch, momentum):
    r"""The schedule of a finite run, in epochs for SGD and in iterations $k$ for SGD+M
    ($\gamma_k = \gamma(k\beta/n)$), scaled by the stability limit when
    `stepsize_unit = "limit"` ($\gamma_{\max}$ of SGD, or the SGD+M limit at the batch fraction
    and momentum)."""
    unit = opt_cfg.get("stepsize_unit", "absolute")
    if unit not in ("absolute", "limit"):
        raise ConfigError(f"optimizer.stepsize_unit must be 'absolute' or 'limit', got {unit!r}")
    zeta = batch / problem.n
    scale = 1.0
    if unit == "limit":
        scale = float(gamma_max(problem) if name == "sgd" else
                      momentum_stepsize_limit(problem, momentum, zeta))
    if name == "sgd":
        return schedule if scale == 1.0 else FunctionSchedule(lambda t: scale * schedule(t))
    return FunctionSchedule(lambda k: scale * schedule(k * zeta))


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


_SWEEP_KEYS = {"gamma", "batch", "chunk_size", "horizon", "num_times", "target_risk",
               "ode_bins"}
SWEEP_DEFAULT = {"gamma": {"start": 0.05, "stop": 8.0, "num": 32, "spacing": "log"},
                 "batch": [1], "chunk_size": 256, "horizon": 10.0, "num_times": 21,
                 "ode_bins": 64}


@dataclass
class SweepJob:
    """Everything `hsgd sweep` needs."""

    config: dict
    problem: Problem | FiniteProblem
    points: dict
    ts: np.ndarray
    chunk_size: int
    target_risk: float | None


def load_sweep(path: str | Path) -> SweepJob:
    """Read a sweep config: the [problem] section as for `hsgd run` plus a [sweep] section."""
    path = Path(path)
    return build_sweep(_read_toml(path), base=path.parent)


def build_sweep(raw: dict, base: Path | None = None) -> SweepJob:
    _check_keys(raw, {"problem", "sweep"}, "")
    sweep_cfg = {**SWEEP_DEFAULT, **raw.get("sweep", {})}
    _check_keys(sweep_cfg, _SWEEP_KEYS, "sweep")
    cfg = merge({"problem": raw.get("problem", {})})
    cfg = {"problem": cfg["problem"], "sweep": sweep_cfg}
    problem = _problem_section(cfg["problem"], base)
    gammas = _axis(sweep_cfg["gamma"], "sweep.gamma")
    batches = _axis(sweep_cfg["batch"], "sweep.batch")
    if np.any(batches < 1) or np.any(batches != np.round(batches)):
        raise ConfigError(f"sweep.batch must hold integers >= 1, got {batches.tolist()}")
    finite = isinstance(problem, FiniteProblem)
    if finite and batches.tolist() != [1.0]:
        raise ConfigError("sweep.batch does not apply to a finite problem (its ODE in epochs "
                          f"is the same for every batch size), got {batches.tolist()}")
    if finite and "ode_bins" in raw.get("sweep", {}):
        raise ConfigError("sweep.ode_bins applies only to streaming problems")
    horizon = _float(sweep_cfg, "horizon", "sweep", minimum=0.0, strict=True)
    num = _int(sweep_cfg, "num_times", "sweep", minimum=2)
    target = sweep_cfg.get("target_risk")
    if target is not None:
        target = _float(sweep_cfg, "target_risk", "sweep", minimum=0.0, strict=True)
    from ._sweep import grid

    points = grid(gamma=gammas) if finite else grid(gamma=gammas, batch=batches)
    return SweepJob(config=cfg, problem=problem, points=points,
                    ts=np.linspace(0.0, horizon, num),
                    chunk_size=_int(sweep_cfg, "chunk_size", "sweep", minimum=1),
                    target_risk=target)


_TUNE_KEYS = {"family", "horizon", "objective", "num_steps", "learning_rate", "num_knots",
              "num_times", "ode_bins", "baselines", "sgd_runs", "seed", "target"}
TUNE_DEFAULT = {"family": "knots", "horizon": 10.0, "objective": "final", "num_steps": 100,
                "learning_rate": 0.05, "num_knots": 12, "num_times": 41, "ode_bins": 64,
                "baselines": ["constant", "step_decay", "cosine", "critical"], "sgd_runs": 16,
                "seed": 1}


@dataclass
class TuneJob:
    """Everything `hsgd tune` needs."""

    config: dict
    problem: Problem
    batch: int
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
    optimizer: str = "sgd"
    momentum: float = 0.0
    target: str | None = None


def load_tune(path: str | Path) -> TuneJob:
    """Read a tune config: [problem] as for `hsgd run`, [optimizer] batch, and [tune]."""
    path = Path(path)
    return build_tune(_read_toml(path), base=path.parent)


def build_tune(raw: dict, base: Path | None = None) -> TuneJob:
    from ._tune import BASELINES, FAMILIES
    from ._tune.tune import OBJECTIVES

    _check_keys(raw, {"problem", "optimizer", "tune"}, "")
    for section in ("optimizer", "tune"):
        if not isinstance(raw.get(section, {}), dict):
            raise ConfigError(f"[{section}] must be a table, got {raw[section]!r}")
    tune_cfg = {**TUNE_DEFAULT, **raw.get("tune", {})}
    _check_keys(tune_cfg, _TUNE_KEYS, "tune")
    opt_cfg = {"batch": 1, **raw.get("optimizer", {})}
    cfg = merge({"problem": raw.get("problem", {})})
    cfg = {"problem": cfg["problem"], "optimizer": opt_cfg, "tune": tune_cfg}
    problem = _problem_section(cfg["problem"], base)
    finite = isinstance(problem, FiniteProblem)
    _check_keys(opt_cfg, {"batch", "name", "momentum"} if finite else {"batch"}, "optimizer")
    name, momentum = _optimizer(opt_cfg, finite)
    target = tune_cfg.get("target")
    if target is not None and (not finite or target not in ("risk", "loss")):
        raise ConfigError("tune.target applies to finite problems and must be 'risk' or "
                          f"'loss', got {target!r}")
    if finite and "ode_bins" in raw.get("tune", {}):
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
    return TuneJob(
        config=cfg, problem=problem, batch=_int(opt_cfg, "batch", "optimizer", minimum=1),
        family=family, horizon=_float(tune_cfg, "horizon", "tune", minimum=0.0, strict=True),
        objective=objective, num_steps=_int(tune_cfg, "num_steps", "tune", minimum=0),
        learning_rate=_float(tune_cfg, "learning_rate", "tune", minimum=0.0, strict=True),
        num_knots=_int(tune_cfg, "num_knots", "tune", minimum=2),
        num_times=_int(tune_cfg, "num_times", "tune", minimum=2),
        ode_bins=0 if finite else _int(tune_cfg, "ode_bins", "tune", minimum=0),
        baselines=tuple(names), sgd_runs=sgd_runs, seed=_int(tune_cfg, "seed", "tune", minimum=0),
        optimizer=name, momentum=momentum, target=target)


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
    allowed = {"least_squares": {"noise_std"}, "phase_retrieval": {"noise_std"},
               "logistic": set(), "softmax": {"num_classes"}}
    extra = {"noise_std", "num_classes", "m", "m_star", "noise"} & set(cfg)
    if name in _LOSSES:
        bad = extra - allowed[name]
        if bad:
            raise ConfigError(f"problem.{sorted(bad)[0]} does not apply to loss {name!r}")
        if name == "least_squares":
            return LeastSquares(noise_std)
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
