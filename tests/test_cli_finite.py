"""`hsgd run` / `hsgd sweep` on finite data (`problem.kind = "finite"`): plain SGD against the
per-mode ODE and the Volterra equation, SGD+M against its recursion, data from a generator,
scikit-learn's digits or an `.npz` file, and the errors of a bad config."""

import csv
import json
import re

import numpy as np
import pytest

import hsgd
from hsgd._cli import main
from hsgd._config import ConfigError, build, build_sweep, build_tune


def _run(tmp_path, text, capsys=None):
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(text)
    out = tmp_path / "out"
    assert main(["run", str(cfg), "--out", str(out)]) == 0
    rows = list(csv.DictReader((out / "curves.csv").open()))
    summary = json.loads((out / "summary.json").read_text())
    assert (out / "risk.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.glob(".*.tmp"))  # atomic writes leave no temporaries
    return rows, summary


def _curves(rows, method, column):
    """(runs, times) array of `column` for `method` from curves.csv."""
    sel = [r for r in rows if r["method"] == method]
    runs = sorted({int(r["run"]) for r in sel})
    return np.array([[float(r[column]) for r in sel if int(r["run"]) == k] for k in runs])


def _assert_within_noise(pred, runs):
    # Reference: the mean over independent SGD runs. 4 standard errors bound the sampling
    # error at every saved time (a Gaussian tail of 6e-5 per time); the 3% allows for the
    # O(1/n) and O(gamma/n) corrections of the deterministic equivalent at these small n
    # (n = 400: measured ~1-2% in tests/test_finite.py at comparable sizes).
    mean = runs.mean(axis=0)
    se = runs.std(axis=0, ddof=1) / np.sqrt(runs.shape[0])
    assert np.all(np.abs(pred - mean) <= 4 * se + 0.03 * mean), (pred, mean, se)


def test_finite_sgd_run_ode_volterra_and_sgd(tmp_path):
    rows, summary = _run(tmp_path, """
[problem]
kind = "finite"
n = 400
d = 200
noise_std = 0.3
[optimizer]
stepsize_unit = "limit"
schedule = {kind = "constant", value = 0.5}
[run]
horizon = 4.0
num_times = 9
sgd_runs = 8
methods = ["ode", "volterra", "sgd"]
""")
    assert {r["method"] for r in rows} == {"ode", "volterra", "sgd"}
    assert len(rows) == 9 * (1 + 1 + 8)
    # stepsize_unit = "limit": gamma = 0.5 gamma_max
    assert np.allclose(_curves(rows, "ode", "gamma"), 0.5 * summary["gamma_max"])
    # Two solvers of the same equation, each accurate to ~1e-7 (tests/test_finite.py).
    assert summary["max_rel_diff_ode_vs_volterra"] < 1e-5
    for column in ("loss", "risk"):
        _assert_within_noise(_curves(rows, "ode", column)[0], _curves(rows, "sgd", column))
    assert summary["ode_diverged"] == 0 and summary["sgd_diverged"] == 0
    assert summary["limit_loss"] > 0 and 0 < summary["single_row_limit"]


def test_finite_momentum_run_recursion_and_sgd(tmp_path):
    rows, summary = _run(tmp_path, """
[problem]
kind = "finite"
n = 400
d = 200
noise_std = 0.3
[optimizer]
name = "sgd_momentum"
batch = 40
momentum = 0.5
stepsize_unit = "limit"
schedule = {kind = "constant", value = 0.3}
[run]
horizon = 6.0
num_times = 7
sgd_runs = 8
""")
    assert {r["method"] for r in rows} == {"recursion", "sgd"}  # the default methods
    rec = [r for r in rows if r["method"] == "recursion"]
    # one epoch = n / batch = 10 iterations
    assert [int(r["iteration"]) for r in rec] == [0, 10, 20, 30, 40, 50, 60]
    assert np.allclose(_curves(rows, "recursion", "gamma"), 0.3 * summary["stepsize_limit"])
    for column in ("loss", "risk"):
        _assert_within_noise(_curves(rows, "recursion", column)[0],
                             _curves(rows, "sgd", column))


def test_finite_run_from_npz_and_digits(tmp_path):
    rng = np.random.default_rng(0)
    A = rng.standard_normal((120, 30)) / np.sqrt(30)
    x = rng.standard_normal(30)
    np.savez(tmp_path / "data.npz", A=A, b=A @ x, A_test=A[:20] + 0.1, b_test=A[:20] @ x)
    rows, summary = _run(tmp_path, """
[problem]
kind = "finite"
data = "file"
file = "data.npz"
[optimizer.schedule]
kind = "constant"
value = 0.5
[run]
horizon = 2.0
num_times = 3
methods = ["ode"]
""")
    risk = _curves(rows, "ode", "risk")[0]
    assert np.all(np.isfinite(risk)) and risk[-1] < risk[0]  # the test set gives a risk
    # The noiseless training loss at t = 0 is b.b / 2 (x0 = 0): read from the file.
    assert np.isclose(_curves(rows, "ode", "loss")[0, 0], 0.5 * np.sum((A @ x) ** 2))

    pytest.importorskip("sklearn")
    job = build({"problem": {"kind": "finite", "data": "digits", "n": 200, "features": 40},
                 "run": {"methods": ["ode"]}})
    assert job.problem.n == 200 and int(job.problem.d) == 40 and job.problem.has_population


def test_finite_spectrum_only_and_divergence(tmp_path, capsys):
    rows, summary = _run(tmp_path, """
[problem]
kind = "finite"
data = "marchenko_pastur"
n = 1000
d = 500
[optimizer]
stepsize_unit = "limit"
schedule = {kind = "constant", value = 1.05}
[run]
horizon = 200.0
num_times = 5
""")
    printed = capsys.readouterr().out
    assert "WARNING" in printed and "DIVERGED" in printed and "nan" not in printed.lower()
    assert {r["method"] for r in rows} == {"ode"}  # a spectrum only: no SGD by default
    assert summary["ode_diverged"] == 1 and summary["limit_loss"] == float("inf")


@pytest.mark.parametrize("raw,match", [
    ({"problem": {"kind": "finitee"}}, "problem.kind"),
    ({"problem": {"kind": "finite", "data": "cifar"}}, "problem.data"),
    ({"problem": {"kind": "finite", "loss": "logistic"}}, "problem.loss"),
    ({"problem": {"kind": "finite", "data": "digits", "d": 3}}, "problem.d"),
    ({"problem": {"kind": "finite", "n": 100, "d": 50}, "optimizer": {"batch": 101}},
     "optimizer.batch must be <= n = 100"),
    ({"problem": {"kind": "finite", "n": 100, "d": 50},
      "optimizer": {"name": "sgd_momentum", "momentum": 1.0}}, "optimizer.momentum"),
    ({"problem": {"kind": "finite", "n": 100, "d": 50}, "optimizer": {"momentum": 0.5}},
     "optimizer.momentum applies only"),
    ({"optimizer": {"stepsize_unit": "limit"}}, "optimizer.stepsize_unit"),
    ({"problem": {"kind": "finite", "n": 100, "d": 50},
      "optimizer": {"stepsize_unit": "gmax"}}, "optimizer.stepsize_unit"),
    ({"problem": {"kind": "finite", "n": 100, "d": 50}, "run": {"methods": ["recursion"]}},
     "run.methods"),
    ({"problem": {"kind": "finite", "data": "marchenko_pastur"},
      "run": {"methods": ["ode", "sgd"]}}, "cannot include 'sgd'"),
    ({"problem": {"kind": "finite", "data": "file"}}, "problem.file"),
    ({"problem": {"kind": "finite", "data": "file", "file": "/nonexistent.npz"}},
     "does not exist"),
    ({"problem": {"kind": "finite", "n": 100, "d": 50, "noise_std": -1.0}},
     "problem.noise_std"),
    ({"problem": {"kind": "finite", "n": 100, "d": 50}, "run": {"ode_bins": 8}},
     "run.ode_bins"),
])
def test_bad_finite_config_names_the_key(raw, match):
    with pytest.raises(ConfigError, match=re.escape(match)):
        build(raw)


def test_finite_sweep_cli(tmp_path, capsys):
    with pytest.raises(ConfigError, match="sweep.batch"):
        build_sweep({"problem": {"kind": "finite", "n": 100, "d": 50},
                     "sweep": {"batch": [1, 2]}})
    cfg = tmp_path / "sweep.toml"
    cfg.write_text("""
[problem]
kind = "finite"
n = 200
d = 100
[sweep]
gamma = [0.5, 1.0, 1.5, 2.5]
horizon = 20.0
num_times = 5
""")
    out = tmp_path / "out"
    assert main(["sweep", str(cfg), "--out", str(out)]) == 0
    rows = list(csv.DictReader((out / "results.csv").open()))
    # gamma_max = 2n / tr(A^T A) ~ 2 for rows of norm ~1: the last point diverges, the rest
    # do not, and the best stepsize is among the convergent ones.
    assert [float(r["diverged"]) for r in rows] == [0.0, 0.0, 0.0, 1.0]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["best_gamma_per_batch"]["1"]["gamma"] in (0.5, 1.0, 1.5)


def test_finite_momentum_tune_cli(tmp_path):
    with pytest.raises(ConfigError, match="tune.target"):
        build_tune({"tune": {"target": "loss"}})
    with pytest.raises(ConfigError, match="tune.ode_bins"):
        build_tune({"problem": {"kind": "finite", "n": 100, "d": 50}, "tune": {"ode_bins": 8}})
    cfg = tmp_path / "tune.toml"
    cfg.write_text("""
[problem]
kind = "finite"
n = 200
d = 100
[optimizer]
name = "sgd_momentum"
batch = 20
momentum = 0.5
[tune]
family = "cosine"
horizon = 40
num_steps = 3
num_times = 5
sgd_runs = 0
baselines = ["constant"]
""")
    out = tmp_path / "out"
    assert main(["tune", str(cfg), "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    # tune returns its best iterate: never worse than where it started
    assert min(summary["objective_history"]) <= summary["objective_history"][0]
    gammas = [float(r["gamma"]) for r in csv.DictReader((out / "schedule.csv").open())]
    assert min(gammas) > 0 and all(np.isfinite(gammas))


def test_optimizer_table_is_the_module(tmp_path):
    # [optimizer] name = "heavy_ball" (the module's registered name) is the old
    # "sgd_momentum": the same module, the same fields, the same default methods.
    base = {"problem": {"kind": "finite", "n": 100, "d": 50}}
    opt = {"batch": 10, "momentum": 0.5, "schedule": {"kind": "constant", "value": 0.3}}
    new = build({**base, "optimizer": {"name": "heavy_ball", **opt}})
    old = build({**base, "optimizer": {"name": "sgd_momentum", **opt}})
    assert type(new.optimizer) is type(old.optimizer) is hsgd.HeavyBall
    assert (new.optimizer.momentum, new.optimizer.batch) == (0.5, 10)
    assert new.methods == old.methods == ("recursion", "sgd")
    # keys are the module's fields: batch_fraction too (then without the default batch)
    frac = build({**base, "optimizer": {"name": "heavy_ball", "batch_fraction": 0.2,
                                        "momentum": 0.5}, "run": {"methods": ["recursion"]}})
    assert frac.optimizer.batch is None and frac.optimizer.batch_fraction == 0.2
    with pytest.raises(ConfigError, match=r"unknown config key 'optimizer\.beta'.*\['batch', "
                                          r"'batch_fraction', 'momentum', 'name', 'schedule'"):
        build({**base, "optimizer": {"name": "heavy_ball", "beta": 0.9}})
    with pytest.raises(ConfigError, match=r"optimizer\.name must be one of \[.*'heavy_ball'"
                                          r".*'sgd'.*\].*got 'adam'"):
        build({**base, "optimizer": {"name": "adam"}})
    with pytest.raises(ConfigError, match=r"optimizer\.momentum must be a number, a string or "
                                          r"a boolean, got \[0\.5\]"):
        build({**base, "optimizer": {"name": "heavy_ball", "momentum": [0.5]}})


def test_sweep_over_heavy_ball_fields_cli(tmp_path):
    # [sweep] axes are the [optimizer] module's fields; times in the pair's clock (iterations).
    # Reference: the recursion for one point, the same arithmetic as the vmapped sweep
    # (1e-12 relative); results.csv stores repr() floats.
    cfg = tmp_path / "sweep.toml"
    cfg.write_text("""
[problem]
kind = "finite"
n = 100
d = 50
[optimizer]
name = "heavy_ball"
batch = 10
[sweep]
gamma = [0.1, 0.3]
momentum = [0.0, 0.5]
horizon = 50
num_times = 3
""")
    out = tmp_path / "out"
    assert main(["sweep", str(cfg), "--out", str(out)]) == 0
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert len(rows) == 4 and {"gamma", "momentum", "final_loss"} <= set(rows[0])
    job = build_sweep({"problem": {"kind": "finite", "n": 100, "d": 50}})
    row = rows[3]
    sol = hsgd.ode(job.problem, hsgd.HeavyBall(float(row["gamma"]), float(row["momentum"]),
                                               batch=10), [0, 25, 50])
    np.testing.assert_allclose(float(row["final_loss"]), sol.loss[-1], rtol=1e-12)
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["best"]) == {"gamma", "momentum", "final_risk"}
    with pytest.raises(ConfigError, match=r"unknown config key 'sweep\.momentun'"):
        build_sweep({"problem": {"kind": "finite", "n": 100, "d": 50},
                     "optimizer": {"name": "heavy_ball", "batch": 10},
                     "sweep": {"momentun": [0.5]}})
