"""Defects a new user hits first (issue 14, part 3): config value types, a comparison of two
diverged curves, output file modes, the initial cosine, float32 inside an x64 session."""

import json
import os
import stat

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hsgd
from hsgd._cli import main, run
from hsgd._config import ConfigError, build, build_sweep
from hsgd._io import write_atomic


@pytest.mark.parametrize("raw,message", [
    ({"optimizer": {"schedule": {"kind": "constant", "value": "fast"}}},
     "optimizer.schedule.value must be a number, got 'fast'"),
    ({"optimizer": {"schedule": {"kind": "cosine", "peak": 1.0, "horizon": [10.0]}}},
     "optimizer.schedule.horizon must be a number, got [10.0]"),
    ({"optimizer": {"schedule": {"kind": "piecewise_linear", "times": [0.0, 1.0],
                                 "values": [1.0, "x"]}}},
     "optimizer.schedule.values[1] must be a number, got 'x'"),
    ({"optimizer": {"schedule": {"kind": "warmup", "peak": 1.0, "warmup": 1.0,
                                 "horizon": 10.0, "decay": 3}}},
     "optimizer.schedule.decay must be a string, got 3"),
    ({"problem": {"target_norm": "big"}}, "problem.target_norm must be a number, got 'big'"),
    ({"problem": {"d": 2, "spectrum": {"kind": "eigenvalues", "values": [1.0, "a"]}}},
     "problem.spectrum.values[1] must be a number, got 'a'"),
])
def test_config_value_of_the_wrong_type_names_key_type_and_value(raw, message):
    with pytest.raises(ConfigError) as info:
        build(raw)
    assert str(info.value) == message


def test_config_accepts_zero_learning_rates():
    # gamma = 0 is legitimate: a cosine to 0 (the default final) and zeros on a sweep grid.
    job = build({"optimizer": {"schedule": {"kind": "cosine", "peak": 1.0, "horizon": 10.0}},
                 "problem": {"d": 20}})
    assert float(job.schedule(10.0)) == 0.0
    sweep = build_sweep({"problem": {"d": 20}, "sweep": {"gamma": [0.0, 1.0], "ode_bins": 0}})
    assert sweep.points["gamma"].tolist() == [0.0, 1.0]
    lin = build_sweep({"problem": {"d": 20},
                       "sweep": {"gamma": {"start": 0.0, "stop": 1.0, "num": 3}}})
    assert lin.points["gamma"].tolist() == [0.0, 0.5, 1.0]
    with pytest.raises(ConfigError, match="sweep.gamma.start must be > 0 with spacing = 'log'"):
        build_sweep({"problem": {"d": 20}, "sweep": {"gamma": {"start": 0.0, "stop": 1.0,
                                                                "num": 3, "spacing": "log"}}})
    with pytest.raises(ConfigError, match="sweep.gamma values must be finite and >= 0"):
        build_sweep({"problem": {"d": 20}, "sweep": {"gamma": [-1.0, 1.0]}})


def test_both_diverged_reports_no_max_rel_error_and_why(tmp_path, capsys):
    # gamma = 5 is far past the least-squares stability limit (test_cli's divergent run): the
    # ODE and both SGD runs are gone by t = 10, so only t = 0 is left to compare — where both
    # start from the same B by construction. That is no agreement: null, with the reason.
    job = build({"problem": {"loss": "least_squares", "noise_std": 0.1, "d": 200,
                             "spectrum": {"kind": "uniform", "low": 0.2, "high": 1.8}},
                 "optimizer": {"schedule": {"kind": "constant", "value": 5.0}},
                 "run": {"horizon": 40.0, "num_times": 5, "sgd_runs": 2}})
    out = tmp_path / "out"
    assert run(job, out) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ode_diverged"] and summary["sgd_diverged_runs"] == 2
    assert summary["max_rel_error"] is None
    reason = summary["max_rel_error_reason"]
    assert "no saved time after t = 0 where both curves are finite" in reason
    assert "diverged by t = 10" in reason
    assert f"max_rel_error: none — {reason}" in printed


def test_output_files_are_readable_by_others(tmp_path):
    old = os.umask(0o022)
    try:
        path = write_atomic(tmp_path / "a.json", "{}")
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
        os.umask(0o077)  # the umask is respected
        path = write_atomic(tmp_path / "b.json", "{}")
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    finally:
        os.umask(old)


def test_cli_outputs_are_0644(tmp_path):
    cfg = tmp_path / "small.toml"
    cfg.write_text('[problem]\nloss = "least_squares"\nd = 50\n[run]\nhorizon = 1.0\n'
                   'num_times = 3\nsgd_runs = 2\n')
    old = os.umask(0o022)
    try:
        assert main(["run", str(cfg), "--out", str(tmp_path / "out")]) == 0
    finally:
        os.umask(old)
    for name in ("curves.csv", "summary.json", "risk.png"):
        assert stat.S_IMODE(os.stat(tmp_path / "out" / name).st_mode) == 0o644, name


def _cosine(B):
    return float(B[0, 1] / np.sqrt(B[0, 0] * B[1, 1]))


@pytest.mark.parametrize("rho", [-0.6, 0.0, 0.3, 1.0])
def test_random_cosine_is_the_initial_k_cosine_exactly(rho):
    # The K-geometry cosine B12 / sqrt(B11 B22) of B(0) = W0^T K W0 is rho to rounding, and
    # |X0| = init_norm exactly; a spread spectrum makes K- and Euclidean cosines differ.
    spec = hsgd.Spectrum.power_law(300, 1.0)
    prob = hsgd.Problem.random(hsgd.LeastSquares(), spec, jax.random.PRNGKey(2),
                               target_norm=1.5, init_norm=0.7, cosine=rho)
    np.testing.assert_allclose(_cosine(prob.B0()), rho, atol=1e-12)
    np.testing.assert_allclose(float(jnp.linalg.norm(prob.X0)), 0.7, rtol=1e-12)


def test_isotropic_cosine_and_target_weight():
    spec = hsgd.Spectrum.uniform(50, 0.5, 1.5)
    iso = hsgd.Problem.isotropic(hsgd.LeastSquares(), spec, target_norm=2.0, init_norm=0.5,
                                 cosine=0.4)
    np.testing.assert_allclose(_cosine(iso.B0()), 0.4, rtol=1e-12)
    np.testing.assert_allclose(float(iso.V0[0, 0, 0]), 0.25, rtol=1e-12)  # |X0|^2 = u^2
    # target_weight c is a weight: cosine c s / sqrt(c^2 s^2 + u^2), here 0.3*2/sqrt(0.36+0.25)
    tw = hsgd.Problem.isotropic(hsgd.LeastSquares(), spec, target_norm=2.0, init_norm=0.5,
                                target_weight=0.3)
    np.testing.assert_allclose(_cosine(tw.B0()), 0.6 / np.sqrt(0.61), rtol=1e-12)
    # `overlap` is its documented alias: the same problem
    old = hsgd.Problem.isotropic(hsgd.LeastSquares(), spec, target_norm=2.0, init_norm=0.5,
                                 overlap=0.3)
    np.testing.assert_array_equal(old.V0, tw.V0)
    a = hsgd.Problem.random(hsgd.LeastSquares(), spec, jax.random.PRNGKey(0), init_norm=0.5,
                            target_weight=0.3)
    b = hsgd.Problem.random(hsgd.LeastSquares(), spec, jax.random.PRNGKey(0), init_norm=0.5,
                            overlap=0.3)
    np.testing.assert_array_equal(a.X0, b.X0)


@pytest.mark.parametrize("kwargs,match", [
    (dict(cosine=1.5, init_norm=1.0), "cosine must be in"),
    (dict(cosine=0.5), "init_norm > 0"),
    (dict(cosine=0.5, init_norm=1.0, target_weight=0.2), "not both"),
    (dict(target_weight=0.2, overlap=0.2), "not both"),
])
def test_cosine_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        hsgd.Problem.random(hsgd.LeastSquares(), hsgd.Spectrum.uniform(10, 0.5, 1.5),
                            jax.random.PRNGKey(0), **kwargs)


def test_config_cosine_and_target_weight():
    job = build({"problem": {"d": 100, "loss": "least_squares", "init_norm": 0.5,
                             "cosine": 0.3}})
    np.testing.assert_allclose(_cosine(job.problem.B0()), 0.3, atol=1e-12)
    a = build({"problem": {"d": 100, "init_norm": 0.5, "target_weight": 0.3}}).problem
    b = build({"problem": {"d": 100, "init_norm": 0.5, "overlap": 0.3}}).problem
    np.testing.assert_array_equal(a.X0, b.X0)
    with pytest.raises(ConfigError, match="problem.cosine"):
        build({"problem": {"d": 10, "init_norm": 0.5, "cosine": 2.0}})


def test_float32_problems_in_a_float64_session():
    # tests run with x64 enabled (conftest): every constructor honours dtype=float32 and the
    # solvers and simulators then compute in float32.
    assert jax.config.jax_enable_x64
    f32 = jnp.float32
    spec = hsgd.Spectrum.uniform(100, 0.5, 1.5, dtype=f32)
    assert spec.eigenvalues.dtype == f32 and spec.weights.dtype == f32
    for s in (hsgd.Spectrum.power_law(10, 0.5, dtype=f32),
              hsgd.Spectrum.marchenko_pastur(0.5, num_points=8, dtype=f32),
              hsgd.Spectrum.from_eigenvalues(np.ones(3, np.float32)),       # follows the input
              hsgd.Spectrum.from_covariance(np.eye(3, dtype=np.float32))):
        assert s.eigenvalues.dtype == f32, s
    prob = hsgd.Problem.random(hsgd.Logistic(), spec, jax.random.PRNGKey(0), target_norm=2.0)
    assert prob.X_star.dtype == prob.X0.dtype == prob.V0.dtype == f32
    iso = hsgd.Problem.isotropic(hsgd.Logistic(), spec)
    assert iso.V0.dtype == iso.spectrum.eigenvalues.dtype == f32
    ts = np.linspace(0.0, 2.0, 3)
    sgd = hsgd.simulate(prob, 1.0, ts, jax.random.PRNGKey(1), num_runs=2)
    assert sgd.risk.dtype == sgd.B.dtype == f32
    sol = hsgd.ode(prob, 1.0, ts)
    assert sol.risk.dtype == f32
    # float32 risk agrees with the float64 build of the same instance to float32 precision
    prob64 = hsgd.Problem.from_arrays(hsgd.Logistic(), hsgd.Spectrum.uniform(100, 0.5, 1.5),
                                      np.asarray(prob.X_star, np.float64),
                                      np.asarray(prob.X0, np.float64))
    np.testing.assert_allclose(sol.risk, hsgd.ode(prob64, 1.0, ts).risk, rtol=1e-4)
    fin = hsgd.FiniteProblem.gaussian(60, 30, noise_std=0.3, dtype=f32)
    assert fin.eigenvalues.dtype == fin.data.A.dtype == f32
    assert hsgd.simulate(fin, 0.5, ts, jax.random.PRNGKey(1), num_runs=2).loss.dtype == f32
    assert hsgd.ode(fin, 0.5, ts).loss.dtype == f32
    assert hsgd.FiniteProblem.from_arrays(np.ones((4, 2), np.float32), np.ones(4)
                                          ).eigenvalues.dtype == f32
    assert hsgd.FiniteProblem.marchenko_pastur(40, 20, num_points=8,
                                               dtype=f32).eigenvalues.dtype == f32
