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
from hsgd._cli import main
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
