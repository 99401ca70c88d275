"""Sweeps: chunked vmap equals separate solves, divergence per point, resume after a kill, and
the sharded sweep on 4 (host) devices equals the single-device one."""

import json
import os
import subprocess
import sys
import textwrap

import jax.numpy as jnp
import numpy as np
import pytest

import hsgd
from hsgd._sweep import grid, ode_outcomes, sweep


def _problem():
    return hsgd.Problem.isotropic(hsgd.LeastSquares(0.3), hsgd.Spectrum.uniform(8, 0.2, 1.8))


TS = jnp.linspace(0.0, 20.0, 11)


def test_grid_is_cartesian_product():
    pts = grid(gamma=[1.0, 2.0, 3.0], batch=[1, 4])
    assert pts["gamma"].tolist() == [1, 1, 2, 2, 3, 3]
    assert pts["batch"].tolist() == [1, 4, 1, 4, 1, 4]


def test_sweep_equals_separate_solves_and_flags_divergence():
    # Streaming least squares on tr K/d = 1 is stable below gamma ~ 2 beta (noise feedback
    # gamma^2/beta vs drift gamma): the grid spans both sides, so some points diverge.
    # The points come shuffled: the sweep evaluates them sorted by cost (gamma, then batch),
    # two lanes at a time, and must hand the table back in the caller's order.
    prob = _problem()
    pts = grid(gamma=np.geomspace(0.1, 8.0, 7), batch=[1.0, 4.0])
    shuffle = np.random.default_rng(1).permutation(pts["gamma"].size)
    pts = {k: v[shuffle] for k, v in pts.items()}
    table = sweep(ode_outcomes(prob, TS), pts, chunk_size=4, lanes=2, progress=False)
    np.testing.assert_array_equal(table["gamma"], pts["gamma"])
    div = table["diverged"] > 0
    assert div.any() and (~div).any()
    for i in range(pts["gamma"].size):
        sol = hsgd.ode(prob, float(pts["gamma"][i]), TS, batch=float(pts["batch"][i]))
        assert bool(sol.diverged) == bool(div[i])
        assert table["num_steps"][i] == int(sol.num_steps)
        if not div[i]:
            # same computation, batched: agreement to rounding (adaptive steps are per point)
            np.testing.assert_allclose(table["final_risk"][i], sol.risk[-1], rtol=1e-9)
        else:
            assert np.isnan(table["final_risk"][i]) and np.isfinite(table["divergence_time"][i])
    # finite neighbours of diverged points are intact
    assert np.all(np.isfinite(table["final_risk"][~div]))


def test_resume_after_kill_recomputes_nothing(tmp_path):
    prob = _problem()
    # unsorted points: chunks hold points in cost order, their CSVs the caller's indices
    pts = {"gamma": np.linspace(0.2, 1.5, 10)[[3, 9, 0, 6, 1, 8, 2, 7, 5, 4]]}
    fn = ode_outcomes(prob, TS)
    full = sweep(fn, pts, chunk_size=3, progress=False)

    class Killed(Exception):
        pass

    def kill_after_two(c, done, total):
        if done == 2:
            raise Killed

    with pytest.raises(Killed):
        sweep(fn, pts, chunk_size=3, out=tmp_path, progress=kill_after_two)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["finished"] == [0, 1]
    first = np.genfromtxt(tmp_path / "chunks" / "chunk_00000.csv", delimiter=",", names=True)
    np.testing.assert_array_equal(pts["gamma"][first["index"].astype(int)],
                                  np.sort(pts["gamma"])[:3])  # the three smallest stepsizes
    with pytest.raises(FileExistsError, match="resume"):
        sweep(fn, pts, chunk_size=3, out=tmp_path, progress=False)
    computed = []
    resumed = sweep(fn, pts, chunk_size=3, out=tmp_path, resume=True,
                    progress=lambda c, d, t: computed.append(c))
    assert computed == [2, 3]  # chunks 0 and 1 were read back, not recomputed
    for k in full:
        np.testing.assert_array_equal(resumed[k], full[k])  # CSV stores repr(): exact floats
    with pytest.raises(ValueError, match="different sweep"):
        sweep(fn, grid(gamma=[0.3, 0.4]), chunk_size=3, out=tmp_path, resume=True)
    with pytest.raises(ValueError, match="different sweep"):  # same points, another order
        sweep(fn, pts, chunk_size=3, out=tmp_path, resume=True, order=None)


def test_order_must_be_a_permutation():
    # (order and lanes are exercised against single solves above; this fails before compiling)
    fn = ode_outcomes(_problem(), TS)
    with pytest.raises(ValueError, match="permutation"):
        sweep(fn, grid(gamma=[0.3, 0.4, 0.5]), order=lambda cols: np.zeros(3, int),
              progress=False)


SCRIPT = textwrap.dedent("""
    import json, sys
    import jax
    jax.config.update("jax_enable_x64", True)
    import numpy as np, jax.numpy as jnp, hsgd
    from hsgd._sweep import grid, ode_outcomes, sweep
    prob = hsgd.Problem.isotropic(hsgd.LeastSquares(0.3), hsgd.Spectrum.uniform(8, 0.2, 1.8))
    pts = grid(gamma=np.geomspace(0.1, 8.0, 10), batch=[1.0, 4.0])
    t = sweep(ode_outcomes(prob, jnp.linspace(0.0, 20.0, 11)), pts, chunk_size=8,
              progress=False)
    print(json.dumps({"devices": len(jax.devices()),
                      "table": {k: [repr(float(x)) for x in v] for k, v in t.items()}}))
""")


def _run(devices: int):
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
               JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_sharded_sweep_on_four_devices_equals_single_device():
    one, four = _run(1), _run(4)
    assert one["devices"] == 1 and four["devices"] == 4
    assert four["table"] == one["table"]


def test_finite_data_sweep_flags_divergence_past_gamma_max():
    # Finite data (SPEC §2): a stepsize grid through gamma_max. Points below stay finite and
    # equal the single solves (same jitted ODE, vmapped: 1e-9 relative), points above are
    # flagged diverged without touching their neighbours.
    prob = hsgd.FiniteProblem.gaussian(200, 100, 0, noise_std=0.3)
    gmax = float(hsgd.theory.gamma_max(prob))
    ts = jnp.linspace(0.0, 30.0, 7)
    pts = grid(gamma=gmax * np.array([0.3, 0.6, 0.9, 1.1, 1.4]))
    table = sweep(ode_outcomes(prob, ts), pts, chunk_size=8, progress=False)
    np.testing.assert_array_equal(table["diverged"], [0, 0, 0, 1, 1])
    for i in range(3):
        sol = hsgd.ode(prob, float(pts["gamma"][i]), ts)
        np.testing.assert_allclose(table["final_loss"][i], sol.loss[-1], rtol=1e-9)
        np.testing.assert_allclose(table["final_risk"][i], sol.risk[-1], rtol=1e-9)
    assert np.all(np.isnan(table["final_loss"][3:]))


def test_sweep_over_heavy_ball_fields_and_schedule_parameters():
    # A template optimizer's fields as axes (HeavyBall momentum x batch, `ts` iterations): each
    # point is template.replace(momentum=..., batch=...). Reference: single recursions; the
    # recursion is the same arithmetic vmapped or not -> 1e-12 relative.
    prob = hsgd.FiniteProblem.gaussian(200, 100, 0, noise_std=0.3)
    ks = np.arange(0, 201, 50)
    fn = ode_outcomes(prob, ks, optimizer=hsgd.HeavyBall(0.5, batch=10))
    pts = grid(momentum=[0.0, 0.5], batch=[10, 20])
    table = sweep(fn, pts, chunk_size=4, progress=False)
    for i in range(4):
        sol = hsgd.ode(prob, hsgd.HeavyBall(0.5, float(pts["momentum"][i]),
                                            batch=int(pts["batch"][i])), ks)
        np.testing.assert_allclose(table["final_loss"][i], sol.loss[-1], rtol=1e-12)
    # A parameter of the template's schedule as an axis: Cosine peaks on the finite ODE;
    # batched vs single adaptive solves of the same ODE: 1e-9 relative (as above).
    ts = jnp.linspace(0.0, 10.0, 5)
    fn = ode_outcomes(prob, ts, optimizer=hsgd.SGD(hsgd.Cosine(1.0, 10.0, 0.1)))
    table = sweep(fn, grid(peak=[0.5, 1.5]), progress=False)
    for i, peak in enumerate([0.5, 1.5]):
        sol = hsgd.ode(prob, hsgd.Cosine(peak, 10.0, 0.1), ts)
        np.testing.assert_allclose(table["final_risk"][i], sol.risk[-1], rtol=1e-9)
    # names that set nothing, and values the optimizer rejects, are errors naming them
    with pytest.raises(ValueError, match=r"\['momentun'\] are not fields of HeavyBall.*"
                                         r"'momentum'"):
        sweep(ode_outcomes(prob, ks, optimizer=hsgd.HeavyBall(0.5, batch=10)),
              grid(momentun=[0.5]), progress=False)
    with pytest.raises(ValueError, match=r"momentum = 1.5 at point 1 is not valid: momentum "
                                         r"must be a number in \[0, 1\)"):
        sweep(ode_outcomes(prob, ks, optimizer=hsgd.HeavyBall(0.5, batch=10)),
              grid(momentum=[0.5, 1.5]), progress=False)
