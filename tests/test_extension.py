"""The extension point (issue 13): an optimizer defined and registered in this file — SGD with
its learning rate multiplied by a fixed `multiplier` — becomes usable by `hsgd.tune`,
`hsgd.sweep` / `hsgd.ode_outcomes` and a config file run through the CLI, without touching any
library file.

The toy optimizer's cells delegate to the SGD cells with the scaled schedule, so the reference
for every number is SGD itself: ScaledSGD(gamma, multiplier=m) is SGD(m * gamma). One tiny
streaming least-squares problem (d = 64, uniform spectrum) keeps the file fast."""

import csv
import json
import tomllib

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hsgd
from hsgd._checks import is_traced
from hsgd._cli import main
from hsgd._config import ConfigError, build
from hsgd._tune import predictor_for
from hsgd._tune.tune import Hyperparameters, _value_and_grad, time_grid


class Scaled(hsgd.AbstractSchedule):
    """`factor * base(t)`; a module, so `factor` stays a leaf (a closure would freeze it)."""

    base: hsgd.AbstractSchedule
    factor: object

    def __call__(self, t):
        return self.factor * self.base(t)


class ScaledSGD(hsgd.AbstractOptimizer):
    """SGD with the stepsize `multiplier * schedule(t)`."""

    schedule: hsgd.AbstractSchedule
    batch: object = 1
    multiplier: object = 1.0

    def __init__(self, schedule, batch=1, multiplier=1.0):
        self.schedule = hsgd.as_schedule(schedule)
        self.batch = batch
        if not is_traced(multiplier) and not float(multiplier) > 0:
            raise ValueError(f"multiplier must be > 0, got multiplier={multiplier!r}")
        self.multiplier = multiplier

    def tunable(self, problem):
        return {"multiplier": (0.1, 10.0)}

    def as_sgd(self) -> hsgd.SGD:
        return hsgd.SGD(Scaled(self.schedule, self.multiplier), batch=self.batch)


def _ode(problem, optimizer, ts, **options):
    return hsgd.ode(problem, optimizer.as_sgd(), ts, **options)


def _simulate(problem, optimizer, ts, key, **options):
    return hsgd.simulate(problem, optimizer.for_simulation(problem).as_sgd(), ts, key,
                         **options)


@pytest.fixture(scope="module", autouse=True)
def registered():
    """Register the toy optimizer with the public API for this module's tests; take it out
    again afterwards so that tests parametrised over the registry elsewhere see only the
    library's cells."""
    from hsgd import _registry

    hsgd.register("ode", hsgd.Problem, ScaledSGD)(_ode)
    hsgd.register("simulate", hsgd.Problem, ScaledSGD)(_simulate)
    hsgd.register_optimizer("scaled_sgd", ScaledSGD)
    yield
    for method in ("ode", "simulate"):
        _registry._CELLS.pop((method, hsgd.Problem, ScaledSGD), None)
    _registry._OPTIMIZERS.pop("scaled_sgd", None)


@pytest.fixture(scope="module")
def problem():
    return hsgd.Problem.random(hsgd.LeastSquares(0.3), hsgd.Spectrum.uniform(64, 0.5, 1.5),
                               jax.random.PRNGKey(0), target_norm=1.0)


TS = np.linspace(0.0, 2.0, 5)


def test_ode_and_simulate_equal_sgd_at_the_scaled_rate(problem):
    # Reference: the SGD cell at 2 gamma. Same equation, same solver: the schedules agree
    # exactly (2 * 0.3 is exact in binary floating point), so the adaptive solves take the
    # same steps and agree to rounding; 1e-12 relative is far below the ODE's rtol 1e-7.
    got = hsgd.ode(problem, ScaledSGD(0.3, multiplier=2.0), TS)
    ref = hsgd.ode(problem, hsgd.SGD(0.6), TS)
    np.testing.assert_allclose(got.risk, ref.risk, rtol=1e-12)
    # ... and the check is not vacuous: the unscaled rate predicts another curve
    assert np.max(np.abs(np.asarray(hsgd.ode(problem, hsgd.SGD(0.3), TS).risk)
                         - np.asarray(ref.risk))) > 1e-3
    # Simulation: the same SGD steps on the same samples (same key) -> equal to rounding.
    key = jax.random.PRNGKey(5)
    runs = hsgd.simulate(problem, ScaledSGD(0.3, multiplier=2.0), TS, key, num_runs=2)
    ref_runs = hsgd.simulate(problem, hsgd.SGD(0.6), TS, key, num_runs=2)
    np.testing.assert_allclose(runs.risk, ref_runs.risk, rtol=1e-12)
    assert ("ode", "Problem", "ScaledSGD") in hsgd.supported()


@pytest.mark.slow  # 34 s in the suite (tune's compilation under grad); sweep, ode and CLI stay
def test_tune_tunes_the_multiplier_jointly(problem):
    # The predictor tune builds for the toy pair (the generic recipe: hsgd.ode with the cell's
    # defaults); the gradient check goes through tune's own jitted value-and-gradient with the
    # same structure, so tune below reuses its compilation.
    pred = predictor_for(problem, time_grid(2.0, 5), optimizer=ScaledSGD(1.0))
    assert pred.bounds() == {"multiplier": (0.1, 10.0)}
    sched = hsgd.TunableConstant(0.2)
    params, static = eqx.partition(sched, sched.trainable())
    hyper = Hyperparameters({"multiplier": 1.0}, pred.bounds())
    x = jax.tree_util.tree_map(lambda v: jnp.asarray(v, dtype=jnp.result_type(v)),
                               (params, hyper.raw))
    flat, unravel = jax.flatten_util.ravel_pytree(x)

    def f(v):
        return float(_value_and_grad(unravel(v), static, hyper, pred, "final")[0])

    g = jax.flatten_util.ravel_pytree(_value_and_grad(x, static, hyper, pred, "final")[1])[0]
    # Reference: central differences of the same solve (Tsit5, rtol 1e-7 on this narrow
    # spectrum, reverse mode with the step sizes frozen), h = 1e-3 on the raw parameters:
    # truncation h^2 R''' ~ 1e-7, solver noise ~ 1e-7 R / h ~ 2e-5 -> atol 1e-4 against
    # entries ~ 0.1.
    h = 1e-3
    fd = np.array([(f(flat + h * e) - f(flat - h * e)) / (2 * h) for e in np.eye(flat.size)])
    np.testing.assert_allclose(g, fd, atol=1e-4)
    assert np.all(np.abs(fd) > 1e-2)  # the level and the multiplier both matter
    # R depends on the product gamma * multiplier only, so d/dlog(gamma) = d/dlog(multiplier)
    # (raw multiplier: a logit in (0.1, 10); dm/draw = (m - 0.1)(10 - m)/9.9 at m = 1):
    np.testing.assert_allclose(g[0], g[1] / (0.9 * 9.0 / 9.9), rtol=1e-6)

    res = hsgd.tune(problem, "constant", 2.0, optimizer=ScaledSGD(1.0), num_times=5,
                    init_gamma=0.2, hyperparameters={"multiplier": 1.0}, num_steps=4,
                    learning_rate=0.2)
    assert res.loss_history.min() < res.loss_history[0]  # a larger rate helps at T = 2
    assert isinstance(res.optimizer, ScaledSGD)
    assert res.optimizer.multiplier == pytest.approx(res.hyperparameters["multiplier"])
    # The tuned optimizer reproduces the prediction through the public method: the same solve
    # compiled under grad before -> agreement to the solver's rtol (1e-7).
    np.testing.assert_allclose(hsgd.ode(problem, res.optimizer, res.ts).risk, res.risk,
                               rtol=1e-6)
    # ... and the SGD check runs the real optimiser (the registered simulate cell)
    cmp = hsgd.compare(res.predictor, {"tuned": res}, key=jax.random.PRNGKey(2), num_runs=2)
    assert np.isfinite(cmp["results"]["tuned"]["sgd_mean"])


def test_sweep_over_the_multiplier(problem):
    # Each point's optimizer is ScaledSGD(0.25).replace(multiplier=m); reference: single SGD
    # solves at 0.25 m. Batched (vmap) vs single solves of the same ODE with adaptive steps
    # per point: agreement to rounding (1e-9, as in tests/test_sweep.py).
    ts = jnp.linspace(0.0, 2.0, 5)
    fn = hsgd.ode_outcomes(problem, ts, optimizer=ScaledSGD(0.25))
    table = hsgd.sweep(fn, hsgd.grid(multiplier=[1.0, 2.0, 3.0]), chunk_size=3,
                       progress=False)
    for i, m in enumerate([1.0, 2.0, 3.0]):
        ref = hsgd.ode(problem, hsgd.SGD(0.25 * m), ts).risk[-1]
        np.testing.assert_allclose(table["final_risk"][i], ref, rtol=1e-9)
    with pytest.raises(ValueError, match="multiplier = -1.0 at point 0 is not valid: "
                                         "multiplier must be > 0"):
        hsgd.sweep(fn, hsgd.grid(multiplier=[-1.0, 1.0]), progress=False)


CONFIG = """
[problem]
loss = "least_squares"
noise_std = 0.3
d = 64
target_norm = 1.0
[problem.spectrum]
kind = "uniform"
low = 0.5
high = 1.5
[optimizer]
name = "scaled_sgd"
multiplier = 2.0
[optimizer.schedule]
kind = "constant"
value = 0.25
[run]
horizon = 2.0
num_times = 5
sgd_runs = 2
"""


def test_config_file_runs_through_the_cli(tmp_path, capsys):
    cfg = tmp_path / "scaled.toml"
    cfg.write_text(CONFIG)
    out = tmp_path / "out"
    assert main(["run", str(cfg), "--out", str(out)]) == 0
    assert "optimizer=scaled_sgd batch=1 multiplier=2" in capsys.readouterr().out
    # methods default to the pair's registered cells: ode and the simulator (sgd)
    rows = list(csv.DictReader((out / "curves.csv").open()))
    assert {r["method"] for r in rows} == {"ode", "sgd"}
    # Reference: the SGD cell at 2 x 0.25 on the same problem (the config's seed); curves.csv
    # holds 10 significant digits -> 1e-9 relative.
    job = build(tomllib.loads(CONFIG))
    assert isinstance(job.optimizer, ScaledSGD) and job.optimizer.multiplier == 2.0
    ref = hsgd.ode(job.problem, hsgd.SGD(0.5), job.ts).risk
    got = [float(r["risk"]) for r in rows if r["method"] == "ode"]
    np.testing.assert_allclose(got, ref, rtol=1e-9)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["optimizer"]["name"] == "scaled_sgd"
    assert summary["max_rel_error"] is not None
    # From the shell a user's optimizer is named by its import path, like a user's loss:
    # importing the module registers its cells (here: this module, already imported).
    by_path = build(tomllib.loads(CONFIG.replace('"scaled_sgd"', f'"{__name__}:ScaledSGD"')))
    assert type(by_path.optimizer) is ScaledSGD and by_path.methods == ("ode", "sgd")
    with pytest.raises(ConfigError, match="is not an hsgd.AbstractOptimizer subclass"):
        build(tomllib.loads(CONFIG.replace('"scaled_sgd"', f'"{__name__}:Scaled"')))


def test_unknown_config_key_names_it_and_lists_the_fields(tmp_path, capsys):
    raw = tomllib.loads(CONFIG.replace("multiplier = 2.0", "multiplierr = 2.0"))
    with pytest.raises(ConfigError, match=r"'optimizer\.multiplierr'.*'multiplier'"):
        build(raw)
    cfg = tmp_path / "bad.toml"
    cfg.write_text(CONFIG.replace("multiplier = 2.0", "multiplierr = 2.0"))
    assert main(["run", str(cfg), "--out", str(tmp_path / "o")]) == 2
    assert "optimizer.multiplierr" in capsys.readouterr().err
    # a value the module rejects is reported at its key
    with pytest.raises(ConfigError, match=r"^optimizer\.multiplier: multiplier must be > 0"):
        build(tomllib.loads(CONFIG.replace("multiplier = 2.0",
                                                         "multiplier = -1.0")))
    # methods the pair has no cell for are refused by name
    with pytest.raises(ConfigError, match=r"run\.methods must be a non-empty list drawn from "
                                          r"\['ode', 'sgd'\]"):
        build({**raw, "optimizer": {"name": "scaled_sgd", "multiplier": 2.0},
               "run": {"methods": ["ode", "sde"]}})


def test_the_toy_optimizer_is_an_equinox_module_with_leaves():
    opt = ScaledSGD(0.3, multiplier=2.0)
    assert isinstance(opt, eqx.Module)
    many = jax.vmap(lambda m: opt.replace(multiplier=m).as_sgd().schedule(1.0))(
        jnp.array([1.0, 2.0]))
    np.testing.assert_allclose(many, [0.3, 0.6], rtol=1e-15)
