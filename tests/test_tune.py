"""Schedule tuning (SPEC §4): gradients of every parametrisation, gradient through the solve
against central differences, positivity under an aggressive optimiser, errors naming bad
values, a small end-to-end tune and the `hsgd tune` CLI.

One tiny problem everywhere (least squares, power law d = 100 in 8 bins, T = 4, 5 output
times, 4 knots) so that the jitted value-and-gradient compiles once for the whole file."""

import json

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import hsgd
from hsgd._cli import main
from hsgd._tune import Predictor, best_constant, best_critical, predictor_for
from hsgd._tune.predictor import StreamingPredictor
from hsgd._tune.tune import Hyperparameters, _value_and_grad

T = 4.0
TS = np.linspace(0.0, T, 5)


@pytest.fixture(scope="module")
def problem():
    return hsgd.Problem.random(hsgd.LeastSquares(0.5), hsgd.Spectrum.power_law(100, 0.5),
                               jax.random.PRNGKey(0), target_norm=1.0)


FAMILIES = {
    "constant": lambda: hsgd.TunableConstant(0.4),
    "knots": lambda: hsgd.TunableKnots([0.0, 0.5, 2.0, 4.0], [0.8, 0.5, 0.3, 0.1]),
    "softplus": lambda: hsgd.TunableSoftplus([0.0, 0.5, 2.0, 4.0], [0.8, 0.5, 0.3, 0.1]),
    "cosine": lambda: hsgd.TunableWarmupDecay(T, 0.8, warmup=0.1, shape=1.3),
    "exponential": lambda: hsgd.TunableWarmupDecay(T, 0.8, warmup=0.1, shape=0.7,
                                                   decay="exponential"),
    "polynomial": lambda: hsgd.TunableWarmupDecay(T, 0.8, warmup=0.1, shape=2.0,
                                                  decay="polynomial"),
}


@pytest.mark.parametrize("name", FAMILIES)
def test_schedule_gradient_matches_central_differences(name):
    # The schedule map alone (no ODE): d/dθ Σ_t w_t γ_θ(t) against central differences. Times
    # avoid the kinks (knots, end of warm-up). Reference: central differences with h = 1e-6,
    # error O(h²) + O(ε/h) ≈ 1e-10 in float64 -> tolerance 1e-6 relative.
    sched = FAMILIES[name]()
    ts = jnp.array([0.03, 0.2, 0.7, 1.3, 2.9, 3.7])
    w = jnp.linspace(1.0, 2.0, ts.size)
    params, static = eqx.partition(sched, sched.trainable())
    flat, unravel = jax.flatten_util.ravel_pytree(params)

    def f(x):
        return jnp.sum(w * jax.vmap(eqx.combine(unravel(x), static))(ts))

    g = jax.grad(f)(flat)
    h = 1e-6
    fd = jnp.array([(f(flat + h * e) - f(flat - h * e)) / (2 * h) for e in jnp.eye(flat.size)])
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-9)
    assert sched.num_parameters() == flat.size
    assert np.all(np.asarray(jax.vmap(sched)(ts)) > 0)


@pytest.mark.parametrize("reduced", [True, False])
def test_grad_through_solve_matches_central_differences(problem, reduced):
    # The quantity tune differentiates: R(T) from the predictor (reduced: the least-squares
    # variance ODE with LinearKvaerno5; not: Kvaerno5 on the full ODE, as for any loss),
    # w.r.t. the raw knot values and the raw batch size. Reference: central differences with
    # h = 1e-4 of the same solve at rtol 1e-10 / atol 1e-12 (the reduced path keeps the finite
    # ODE's own atol, 1e-3 rtol psi(0)): solver noise ~1e-11 / h = 1e-7, truncation
    # O(h^2 f''') ~ 1e-8 -> rtol 1e-4, atol 1e-6 (gradient entries ~1e-3..1e-1).
    pred = StreamingPredictor(problem, TS, ode_bins=8, rtol=1e-10, atol=1e-12, reduced=reduced)
    assert pred.reduced == reduced
    sched = FAMILIES["knots"]()
    static = eqx.partition(sched, sched.trainable())[1]
    hyper = Hyperparameters({"batch": 2.0}, pred.bounds())
    params = (eqx.partition(sched, sched.trainable())[0], hyper.raw)
    flat, unravel = jax.flatten_util.ravel_pytree(params)

    @jax.jit
    def f(x):  # forward only: a gradient per difference quotient would cost ~5x more
        p = unravel(x)
        hyper_values = eqx.tree_at(lambda h: h.raw, hyper, p[1]).values()
        return pred(eqx.combine(p[0], static), hyper_values)[-1]

    g = jax.flatten_util.ravel_pytree(_value_and_grad(params, static, hyper, pred, "final")[1])[0]
    h = 1e-4
    fd = np.array([(f(flat + h * e) - f(flat - h * e)) / (2 * h) for e in np.eye(flat.size)])
    np.testing.assert_allclose(g, fd, rtol=1e-4, atol=1e-6)
    assert np.all(np.abs(fd) > 1e-5)  # every parameter matters: the check is not vacuous


def test_reduced_predictor_float32(problem):
    # GPU users run float32: the reduced least-squares predictor on the same problem cast to
    # float32 against float64. Both solve at rtol 1e-6; float32 round-off over ~100 steps is
    # ~1e-5 relative at most -> 1e-4.
    def f32(tree):
        return jax.tree_util.tree_map(
            lambda x: x.astype(jnp.float32) if isinstance(x, jax.Array)
            and x.dtype == jnp.float64 else x, tree)

    sched = FAMILIES["knots"]()
    ref = StreamingPredictor(problem, TS, ode_bins=8)(sched, {"batch": 2.0})
    got = StreamingPredictor(f32(problem), TS, ode_bins=8)(f32(sched), {"batch": 2.0})
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(got, ref, rtol=1e-4)


def test_tune_reduces_the_predicted_risk(problem):
    res = hsgd.tune(problem, "softplus", T, num_times=TS.size, ode_bins=8, num_knots=4,
                    init_gamma=0.3, num_steps=8, learning_rate=0.1)
    hist = res.loss_history
    assert hist.shape == (9,) and np.all(np.isfinite(hist))
    # A decaying schedule beats the constant start: require a clear decrease, well above the
    # solver tolerance (rtol 1e-6).
    assert hist.min() < hist[0] * (1 - 1e-3)
    # The returned schedule is the best iterate and its curve is the prediction for it.
    np.testing.assert_allclose(float(res.risk[-1]), hist.min(), rtol=1e-10)
    assert float(res.risk[-1]) < float(res.initial_risk[-1])
    assert res.wall_time > 0 and res.num_steps == 8


def test_aggressive_optimiser_never_gives_bad_stepsizes(problem):
    # Learning rate 2 on log-stepsizes from near the divergence threshold: steps that blow the
    # dynamics up are retried at half size; every stepsize stays finite and positive.
    res = hsgd.tune(problem, "softplus", T, num_times=TS.size, ode_bins=8, num_knots=4,
                    init_gamma=1.2, num_steps=4, learning_rate=2.0)
    gam = np.asarray(res.schedule.on_grid(jnp.linspace(0.0, T, 401)))
    assert np.all(np.isfinite(gam)) and np.all(gam > 0)
    assert np.all(np.isfinite(res.loss_history))


@pytest.mark.parametrize("kwargs,match", [
    ({"horizon": 0.0}, "got 0.0"),
    ({"horizon": -2.0}, "got -2.0"),
    ({"horizon": float("nan")}, "got nan"),
    ({"horizon": "ten"}, "got 'ten'"),
    ({"horizon": T, "family": "wiggly"}, "'wiggly'"),
    ({"horizon": T, "objective": "median"}, "'median'"),
    ({"horizon": T, "init_gamma": -1.0}, "got -1.0"),
    ({"horizon": T, "num_steps": -3}, "got -3"),
    ({"horizon": T, "learning_rate": 0.0}, "got 0.0"),
    ({"horizon": T, "hyperparameters": {"momentum": 0.9}}, "'momentum'"),
    ({"horizon": T, "hyperparameters": {"batch": 1e4}}, "got 10000.0"),
    ({"horizon": T, "num_knots": 1}, "got 1"),
])
def test_bad_inputs_name_the_value(problem, kwargs, match):
    with pytest.raises(ValueError, match=match):
        hsgd.tune(problem, kwargs.pop("family", "knots"), init_gamma=kwargs.pop("init_gamma", 0.3),
                  num_times=TS.size, ode_bins=8, **kwargs)


def test_critical_baseline_is_the_feedback_rule_and_its_frozen_schedule(problem):
    """The critical baseline (SPEC §1) solves the public FeedbackSchedule cell (SPEC §10) with
    gamma = c * gamma_crit(B). Reference: plain SGD's ODE (a different cell) driven open-loop by
    the frozen learning rate reproduces the closed-loop risk, and c times *its* critical rate
    is the learning rate the feedback produced. Tolerance 1e-4 relative: the piecewise-linear
    schedule on 101 knots interpolates gamma(t) to O(h^2 gamma'') ~ 1e-5 (measured 1e-5 and
    4e-6); a wrong critical rate (batch, tr K/d) is off by O(1)."""
    pred = predictor_for(problem, TS, optimizer=hsgd.SGD(0.5))
    cand = best_critical(pred, factors=[0.3, 0.6], num_knots=101)
    c = cand.parameters["factor"]
    fine = np.linspace(0.0, T, 101)
    risk, gamma = pred.critical([c], fine)
    sol = hsgd.ode(problem, hsgd.SGD(cand.schedule), fine, rtol=1e-9, finite_d=False)
    np.testing.assert_allclose(sol.risk, risk[0], rtol=1e-4)
    np.testing.assert_allclose(c * sol.gamma_crit, gamma[0], rtol=1e-4)


def test_bad_schedule_parameters():
    with pytest.raises(ValueError, match="strictly increasing"):
        hsgd.TunableKnots([0.0, 2.0, 1.0], [1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="values must be > 0"):
        hsgd.TunableSoftplus([0.0, 1.0], [1.0, -1.0])
    with pytest.raises(ValueError, match="warmup must be in \\(0, 1\\)"):
        hsgd.TunableWarmupDecay(10.0, 1.0, warmup=1.5)
    with pytest.raises(ValueError, match="horizon must be > 0"):
        hsgd.TunableKnots.init(-1.0, 4)


@pytest.mark.slow  # 21 s in the suite (a whole `hsgd tune` run); its config errors stay
def test_cli_tune_small(tmp_path, capsys):
    cfg = tmp_path / "tune.toml"
    cfg.write_text("""
[problem]
loss = "least_squares"
noise_std = 0.5
d = 100
target_norm = 1.0
[tune]
family = "softplus"
horizon = 4.0
num_steps = 2
num_times = 5
num_knots = 4
ode_bins = 8
baselines = ["constant"]
sgd_runs = 2
""")
    out = tmp_path / "out"
    assert main(["tune", str(cfg), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "step    2/2" in text and "tuned" in text
    summary = json.loads((out / "summary.json").read_text())
    assert summary["optimiser_steps"] == 2
    assert set(summary["simulated_final"]) == {"tuned", "constant"}
    assert summary["predicted_final"]["tuned"] <= summary["predicted_final"]["constant"] + 1e-9
    rows = (out / "schedule.csv").read_text().splitlines()
    assert rows[0] == "t,gamma" and len(rows) == 202
    assert (out / "schedule.png").stat().st_size > 1000


def test_cli_tune_config_errors(tmp_path, capsys):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[tune]\nhorizon = -1.0\n")
    assert main(["tune", str(cfg), "--out", str(tmp_path / "o")]) == 2
    assert "tune.horizon" in capsys.readouterr().err
    cfg.write_text("[tune]\nfamly = 'knots'\n")
    assert main(["tune", str(cfg), "--out", str(tmp_path / "o")]) == 2
    assert "tune.famly" in capsys.readouterr().err


# ------------------------------------------------------------------ finite data and momentum
# One Gaussian least-squares problem (n = 400, d = 200, |x*|^2 ~ d, label noise 0.5; target:
# the population risk, floor 0.125) shared by every test below, and one predictor of each kind
# (module scope), so that each jitted solve / value-and-gradient compiles once for the file.

FINITE_T = 4.0          # epochs
MOMENTUM_K = 200        # iterations (batch 8 of 400 rows: 4 epochs)


@pytest.fixture(scope="module")
def finite_problem():
    return hsgd.FiniteProblem.gaussian(400, 200, 0, noise_std=0.5)


@pytest.fixture(scope="module")
def finite_pred(finite_problem):
    # rtol 1e-10: the solve costs milliseconds at this size, and the finite differences below
    # need the solver error far below h * gradient.
    return hsgd.FinitePredictor(finite_problem, np.linspace(0.0, FINITE_T, 5), rtol=1e-10)


@pytest.fixture(scope="module")
def momentum_pred(finite_problem):
    return hsgd.MomentumPredictor(finite_problem, np.linspace(0, MOMENTUM_K, 5), batch=8,
                                  momentum=0.5)


def _fd_check(pred, sched, hyperparameters, h):
    """(autodiff gradient, central differences) of R(T) w.r.t. the raw schedule parameters
    and raw hyperparameters, both through tune's own jitted value-and-gradient."""
    static = eqx.partition(sched, sched.trainable())[1]
    hyper = Hyperparameters(hyperparameters, pred.bounds())
    params = (eqx.partition(sched, sched.trainable())[0], hyper.raw)
    flat, unravel = jax.flatten_util.ravel_pytree(params)

    def f(x):
        return float(_value_and_grad(unravel(x), static, hyper, pred, "final")[0])

    g = jax.flatten_util.ravel_pytree(_value_and_grad(params, static, hyper, pred, "final")[1])[0]
    fd = np.array([(f(flat + h * e) - f(flat - h * e)) / (2 * h) for e in np.eye(flat.size)])
    return np.asarray(g), fd


def test_finite_grad_matches_central_differences(finite_pred):
    # d R(T) / d(log knot values) through the finite-data ODE (LinearKvaerno5, adaptive steps,
    # reverse mode through RecursiveCheckpointAdjoint). Reference: central differences of the
    # same solve, h = 1e-4: solver noise ~ rtol * R / h = 1e-10 * 0.25 / 1e-4 ~ 3e-7,
    # truncation h^2 R''' / 6 ~ 1e-9 -> atol 1e-6, rtol 1e-4 (entries are ~1e-3..1e-1).
    sched = hsgd.TunableKnots([0.0, 0.5, 2.0, FINITE_T], [0.6, 0.5, 0.4, 0.2])
    g, fd = _fd_check(finite_pred, sched, {}, 1e-4)
    np.testing.assert_allclose(g, fd, rtol=1e-4, atol=1e-6)
    assert np.all(np.abs(fd) > 1e-4)  # every knot matters: the check is not vacuous


def test_momentum_grad_matches_central_differences(momentum_pred):
    # Through the SGD+M recursion (one lax.scan, no solver error), w.r.t. the raw knot values,
    # the raw momentum and the raw batch fraction (sigmoid parametrisations). Reference: central
    # differences, h = 1e-5: truncation h^2 R''' ~ 1e-10, roundoff eps * R / h ~ 1e-11 ->
    # rtol 1e-6, atol 1e-9.
    sched = hsgd.TunableKnots([0.0, 20.0, 80.0, MOMENTUM_K], [0.6, 0.5, 0.4, 0.2])
    g, fd = _fd_check(momentum_pred, sched, {"momentum": 0.5, "batch_fraction": 0.02}, 1e-5)
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-9)
    assert np.all(np.abs(fd) > 1e-5)


@pytest.fixture(scope="module")
def finite_tuned(finite_pred):
    const = best_constant(finite_pred, gammas=np.geomspace(0.05, 2.0, 16))
    res = hsgd.tune(finite_pred, hsgd.TunableKnots.init(FINITE_T, 4, "log",
                                                        const.parameters["gamma"]),
                    FINITE_T, num_steps=25, learning_rate=0.2)
    return const, res


def test_finite_tune_beats_best_constant(finite_pred, finite_tuned):
    const, res = finite_tuned
    floor = finite_pred.floor()
    assert floor == pytest.approx(0.125)  # sigma^2 / 2
    # tune starts at the best constant (flat knots = the constant schedule, same prediction)
    np.testing.assert_allclose(res.loss_history[0], const.objective, rtol=1e-9)
    # and must cut the excess risk over the floor by > 1% (measured: 3.5%); the solver error
    # (rtol 1e-10) is 1e-7 of that margin.
    tuned = res.loss_history.min()
    assert tuned < const.objective - 0.01 * (const.objective - floor)
    with pytest.raises(NotImplementedError):
        finite_pred.critical([1.0], finite_pred.ts)


def test_finite_tuned_prediction_matches_sgd(finite_pred, finite_tuned):
    # Real multi-pass SGD (batch 1, rows with replacement) with the tuned schedule, 32 runs.
    # Reference: the SGD mean of the final population risk. Tolerance: 4 standard errors of
    # that mean (a false alarm < 1e-4 for a Gaussian mean) plus 1% for the deterministic
    # equivalent's own O(1/n) bias (measured below 0.3% here).
    cmp = hsgd.compare(finite_pred, {"tuned": finite_tuned[1]}, key=jax.random.PRNGKey(3),
                       num_runs=32)
    r = cmp["results"]["tuned"]
    assert abs(r["predicted"] - r["sgd_mean"]) < 4 * r["sgd_sem"] + 0.01 * r["sgd_mean"]


def test_momentum_tune_baselines_and_sgd(momentum_pred):
    base = hsgd.baselines(momentum_pred, gammas=np.geomspace(0.05, 5.0, 16))
    assert set(base) == {"constant", "step_decay", "cosine"}  # no critical rate: skipped
    res = hsgd.tune(momentum_pred, "knots", MOMENTUM_K, num_knots=4, num_steps=10,
                    learning_rate=0.1, hyperparameters={"momentum": 0.5})
    assert 0 < res.hyperparameters["momentum"] < 0.99
    assert res.loss_history.min() < base["constant"].objective
    cmp = hsgd.compare(momentum_pred, {"tuned": res}, key=jax.random.PRNGKey(4), num_runs=32)
    r = cmp["results"]["tuned"]
    # Reference: mean of 32 SGD+M runs; tolerance 4 s.e. + 1% (the recursion homogenizes the
    # batch-noise covariance, an O(1/n) approximation).
    assert abs(r["predicted"] - r["sgd_mean"]) < 4 * r["sgd_sem"] + 0.01 * r["sgd_mean"]


def test_predictor_dispatch_and_errors(finite_problem):
    ts = np.linspace(0.0, 4.0, 5)
    assert isinstance(predictor_for(finite_problem, ts), hsgd.FinitePredictor)
    m = predictor_for(finite_problem, ts, dynamics="momentum", batch=4)
    assert isinstance(m, hsgd.MomentumPredictor) and m.batch_fraction == 0.01
    assert m.bounds()["momentum"][0] == 0.0
    with pytest.raises(ValueError, match="'sde'"):
        predictor_for(finite_problem, ts, dynamics="sde")
    with pytest.raises(ValueError, match="ode_bins"):
        hsgd.FinitePredictor(finite_problem, ts, ode_bins=8)
    with pytest.raises(ValueError, match="'median'"):
        hsgd.FinitePredictor(finite_problem, ts, target="median")
    spectral = hsgd.FiniteProblem.from_spectrum([1.0, 0.5], [1.0, 1.0], n=10)
    with pytest.raises(ValueError, match="population"):
        hsgd.FinitePredictor(spectral, ts, target="risk")
    assert hsgd.FinitePredictor(spectral, ts).target == "loss"
    with pytest.raises(ValueError, match="iteration count"):
        hsgd.MomentumPredictor(finite_problem, np.linspace(0.0, 10.5, 4))
    with pytest.raises(ValueError, match="got 1.5"):
        hsgd.MomentumPredictor(finite_problem, ts, momentum=1.5)


def test_optimizer_spelling_is_the_alias(finite_problem, momentum_pred, problem):
    # tune(problem, ..., optimizer=HeavyBall(...)) builds the same Predictor that the alias
    # MomentumPredictor builds from its keywords: the same computation, bit for bit.
    ts = np.linspace(0, MOMENTUM_K, 5)
    new = predictor_for(finite_problem, ts, optimizer=hsgd.HeavyBall(1.0, 0.5, batch=8))
    assert isinstance(new, Predictor) and new.bounds() == momentum_pred.bounds()
    sched = hsgd.TunableKnots([0.0, 20.0, 80.0, MOMENTUM_K], [0.6, 0.5, 0.4, 0.2])
    hyper = {"momentum": 0.4, "batch_fraction": 0.03}
    np.testing.assert_array_equal(new(sched, hyper), momentum_pred(sched, hyper))
    # the tuned batch fraction is rounded to rows for the SGD check
    opt = new.configure(sched, hyper).for_simulation(finite_problem)
    assert opt.batch == 12 and opt.batch_fraction is None
    with pytest.raises(ValueError, match=r"\['rtol'\] do not apply to the prediction of "
                                         r"\(FiniteProblem, HeavyBall\)"):
        predictor_for(finite_problem, ts, optimizer=hsgd.HeavyBall(1.0, batch=8), rtol=1e-6)
    with pytest.raises(ValueError, match="'mommentum', which is not a field of HeavyBall"):
        predictor_for(finite_problem, ts, optimizer=hsgd.HeavyBall(1.0, batch=8),
                      bounds={"mommentum": (0.0, 0.5)})
    # a pair without an ode cell (streaming heavy ball now has one: SPEC §9)
    with pytest.raises(hsgd.UnsupportedError, match=r"\(FiniteProblem, SignSGD\)"):
        hsgd.tune(finite_problem, "knots", T, optimizer=hsgd.SignSGD(1.0), init_gamma=0.3)
    with pytest.raises(TypeError, match="set them on the optimizer"):
        hsgd.tune(problem, "knots", T, optimizer=hsgd.SGD(1.0), batch=4, init_gamma=0.3)


def test_optax_transformation_as_optimizer_still_means_optax(momentum_pred):
    # The spelling before optimizers were values: optimizer=<optax transformation>. One plain
    # SGD step of learning rate 0 leaves the schedule where it started (the same objective).
    res = hsgd.tune(momentum_pred, "constant", MOMENTUM_K, init_gamma=0.3, num_steps=1,
                    optimizer=optax.sgd(0.0))
    np.testing.assert_array_equal(res.loss_history[1], res.loss_history[0])
    assert isinstance(res.optimizer, hsgd.HeavyBall)
