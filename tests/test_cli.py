"""`hsgd run`: the config format (README examples, errors naming the key) and a small end-to-end
run writing curves.csv, summary.json and risk.png."""

import csv
import json
import re
import sys
import tomllib
import types
from pathlib import Path

import jax.numpy as jnp
import pytest

from hsgd._cli import main
from hsgd._config import ConfigError, build, build_sweep, build_tune

README = Path(__file__).resolve().parents[1] / "README.md"


def _readme_configs():
    return re.findall(r"```toml\n(.*?)```", README.read_text(), flags=re.S)


def _huber(x, x_star, eps):
    u = x[0] - x_star[0] - eps
    return jnp.where(jnp.abs(u) < 1.0, 0.5 * u**2, jnp.abs(u) - 0.5)


@pytest.mark.parametrize("text", _readme_configs())
def test_every_readme_config_is_valid(text, monkeypatch):
    # The README's user-defined example names mypackage.losses:huber: provide that module.
    pkg, mod = types.ModuleType("mypackage"), types.ModuleType("mypackage.losses")
    mod.huber = _huber
    monkeypatch.setitem(sys.modules, "mypackage", pkg)
    monkeypatch.setitem(sys.modules, "mypackage.losses", mod)
    raw = tomllib.loads(text)
    if raw.get("problem", {}).get("data") == "digits":
        pytest.importorskip("sklearn")
    job = (build_sweep(raw) if "sweep" in raw else build_tune(raw) if "tune" in raw
           else build(raw))
    if job.config["problem"].get("kind") == "finite":
        assert job.problem.n == job.config["problem"]["n"]
    else:
        assert job.problem.X_star.shape[0] == job.config["problem"]["d"]


@pytest.mark.parametrize("raw,match", [
    ({"problem": {"lossx": "logistic"}}, "problem.lossx"),
    ({"problem": {"loss": "hinge"}}, "problem.loss"),
    ({"problem": {"d": -3}}, "problem.d"),
    ({"problem": {"spectrum": {"kind": "power_law", "alpha": -1.0}}}, "alpha"),
    ({"problem": {"spectrum": {"kind": "eigenvalues", "values": [1.0, -2.0]}, "d": 2}},
     "eigenvalue 1 is -2"),
    ({"problem": {"spectrum": {"kind": "uniform", "low": 0.1, "high": 1.0, "alpha": 1}}},
     "problem.spectrum.alpha"),
    ({"optimizer": {"schedule": {"kind": "constant", "value": -1.0}}}, "value"),
    ({"optimizer": {"schedule": {"kind": "cosine", "peak": 1.0}}}, "horizon"),
    ({"optimizer": {"batch": 0}}, "optimizer.batch"),
    ({"run": {"methods": ["ode", "sde2"]}}, "run.methods"),
    ({"run": {"horizon": 0.0}}, "run.horizon"),
    ({"problem": {"loss": "logistic", "noise_std": 0.1}}, "noise_std"),
    ({"extra": {}}, "extra"),
])
def test_bad_config_names_the_key(raw, match):
    with pytest.raises(ConfigError, match=re.escape(match)):
        build(raw)


def test_config_typo_exit_code_and_message(tmp_path, capsys):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[run]\nhorizn = 3.0\n")
    assert main(["run", str(cfg), "--out", str(tmp_path / "out")]) == 2
    assert "run.horizn" in capsys.readouterr().err


def test_small_run_writes_outputs(tmp_path, capsys):
    cfg = tmp_path / "small.toml"
    cfg.write_text("""
[problem]
loss = "least_squares"
noise_std = 0.5
d = 300
target_norm = 1.0
[problem.spectrum]
kind = "uniform"
low = 0.2
high = 1.8
[run]
horizon = 3.0
num_times = 7
sgd_runs = 3
sde_paths = 2
methods = ["ode", "sgd", "sde"]
""")
    out = tmp_path / "out"
    assert main(["run", str(cfg), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "ODE risk" in printed and "max |ODE - SGD mean|" in printed
    summary = json.loads((out / "summary.json").read_text())
    # d = 300 and 3 runs: fluctuations ~ d^{-1/2} / sqrt(3) ~ 3%; 10% is a loose sanity bound
    # (the statistical agreement is tested in test_agreement.py)
    assert 0 <= summary["max_rel_error"] < 0.1
    assert summary["timings"]["ode_s"] >= 0 and summary["config"]["problem"]["d"] == 300
    rows = list(csv.DictReader((out / "curves.csv").open()))
    assert {r["method"] for r in rows} == {"ode", "sgd", "sde"}
    assert len(rows) == 7 * (1 + 3 + 2)
    assert summary["max_rel_error_sde"] < 0.15  # 2 paths at d = 300: a sanity bound only
    assert (out / "risk.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.glob(".*.tmp"))  # atomic writes leave no temporaries


def test_divergent_run_is_reported_not_tabulated_as_nan(tmp_path, capsys):
    cfg = tmp_path / "div.toml"
    cfg.write_text("""
[problem]
loss = "least_squares"
noise_std = 0.1
d = 200
[problem.spectrum]
kind = "uniform"
low = 0.2
high = 1.8
[optimizer.schedule]
kind = "constant"
value = 5.0
[run]
horizon = 40.0
num_times = 5
sgd_runs = 2
""")
    out = tmp_path / "out"
    assert main(["run", str(cfg), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "DIVERGED" in printed and "nan" not in printed.lower()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ode_diverged"] and summary["ode_divergence_time"] <= 40.0
    assert summary["sgd_diverged_runs"] == 2


def test_sweep_cli_writes_table_and_plot(tmp_path, capsys):
    cfg = tmp_path / "sweep.toml"
    cfg.write_text("""
[problem]
loss = "least_squares"
noise_std = 0.3
d = 50
[problem.spectrum]
kind = "uniform"
low = 0.2
high = 1.8
[sweep]
gamma = { start = 0.1, stop = 8.0, num = 6, spacing = "log" }
batch = [1, 4]
chunk_size = 5
horizon = 20.0
num_times = 5
""")
    out = tmp_path / "out"
    assert main(["sweep", str(cfg), "--out", str(out)]) == 0
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert len(rows) == 12
    # gamma = 8 with batch 1 is far past the least-squares stability limit (~2 beta)
    assert any(float(r["diverged"]) > 0 for r in rows) and any(float(r["diverged"]) == 0
                                                                 for r in rows)
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["best_gamma_per_batch"]) == {"1", "4"}
    assert (out / "sweep.png").read_bytes()[:4] == b"\x89PNG"
    # a second run into the same folder needs --resume, which then recomputes nothing
    assert main(["sweep", str(cfg), "--out", str(out)]) == 2
    assert main(["sweep", str(cfg), "--out", str(out), "--resume"]) == 0
    with pytest.raises(ConfigError, match="sweep.gama"):
        build_sweep({"sweep": {"gama": [1.0]}})


def test_plrf_config_builds_the_plrf_problem(tmp_path, capsys):
    # problem.kind = "plrf" (SPEC §13): the same problem as Problem.plrf with the seed's key,
    # the default stepsize gamma = default_eta * d, a log time grid; the deterministic
    # equivalent runs the ODE only (no instance to simulate).
    import jax
    import numpy as np

    import hsgd

    job = build({"problem": {"kind": "plrf", "d": 100, "v": 400, "seed": 3}})
    ref = hsgd.Problem.plrf(1.0, 0.7, 400, 100, jax.random.PRNGKey(3))
    np.testing.assert_array_equal(job.problem.spectrum.eigenvalues, ref.spectrum.eigenvalues)
    gamma = float(hsgd.scaling.default_eta(1.0, 1)) * 100
    assert float(job.optimizer.schedule(0.0)) == pytest.approx(gamma, rel=1e-12)
    assert job.config["run"]["time_grid"] == "log" and "sgd" in job.methods
    with pytest.raises(ConfigError, match="problem.d must be < problem.v"):
        build({"problem": {"kind": "plrf", "d": 400, "v": 400}})
    with pytest.raises(ConfigError, match="problem.loss"):
        build({"problem": {"kind": "plrf", "loss": "logistic"}})
    with pytest.raises(ConfigError, match="problem.alpha = 0.4"):
        build({"problem": {"kind": "plrf", "alpha": 0.4}})
    with pytest.raises(ConfigError, match="'sgd'"):
        build({"problem": {"kind": "plrf", "deterministic": True},
               "run": {"methods": ["ode", "sgd"]}})
    cfg = tmp_path / "plrf.toml"
    cfg.write_text('[problem]\nkind = "plrf"\ndeterministic = true\nnum_modes = 256\n'
                   '[run]\nnum_times = 5\n')
    assert main(["run", str(cfg), "--out", str(tmp_path / "out")]) == 0
    assert "plrf deterministic alpha=1.0" in capsys.readouterr().out
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["config"]["problem"]["kind"] == "plrf"
