"""Sweep throughput: chunked vmap (hsgd.sweep) vs a Python loop of separate ODE solves.

Problem: streaming logistic regression, power law alpha = 0.5, d = 2000 coarsened to 32 log
bins, |X*| = 2, horizon 10 (21 saved times). Grid: 32 stepsizes (log 0.05..8) x 32 batch sizes
(1..32) = 1024 points, chunks of 256.

- Loop: `hsgd.ode` called point by point (compiled once, after a warm-up): the baseline a user
  would write. By default over all 1024 points (`--loop-points N`: a seeded random sample of
  about N, extrapolated; a sample of the batch-1 column would flatter the loop, those points
  take the fewest steps).
- Sweep: `hsgd.sweep` for each vmap width in `--lanes` (256 = the whole chunk in one vmap, as
  before lanes existed), compiled and warmed up first (compile time reported apart).
- Interleaved timing: the CPU is shared, so the loop and every sweep variant are timed chunk by
  chunk, back to back on the same 256 points, and summed: slow phases of background load hit
  all methods alike.
- Control (`--no-control` skips it): the same grid for least squares, whose moments are closed
  forms (a drift of a few microseconds, so a loop step is mostly per-step overhead); its loop
  is timed on a random sample of 256 points.
- `--host-devices 2`: the same measurement in a child process with the CPU exposed as 2 XLA
  devices, so the sweep shards each chunk over both cores (the loop still runs one solve at a
  time, as a user's loop would).

Also reported: solver steps per point (from the sweep; checked equal to the loop's), the
lockstep overhead of each vmap width (a vmapped adaptive solve runs its slowest lane's steps in
every lane), the cost of one drift evaluation per point, single vs vmapped, and the share of a
loop step it accounts for (Tsit5: 6 evaluations per step).

    python benchmarks/sweep.py [--out DIR] [--loop-points 0] [--lanes 16,256]
                               [--host-devices 2] [--no-control]
"""

import argparse
import json
import os
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from _common import parser, setup, write


def _problem(hsgd, loss="logistic"):
    from hsgd._sweep import grid

    loss = hsgd.Logistic() if loss == "logistic" else hsgd.LeastSquares(0.3)
    prob = hsgd.Problem.random(loss, hsgd.Spectrum.power_law(2000, 0.5),
                               jax.random.PRNGKey(0), target_norm=2.0).coarsen(32)
    pts = grid(gamma=np.geomspace(0.05, 8.0, 32), batch=np.arange(1.0, 33.0))
    return prob, jnp.linspace(0.0, 10.0, 21), pts


def measure(hsgd, chunk: int, lanes_list: list, loop_points: int, loss="logistic") -> dict:
    """Loop and sweeps, timed chunk by chunk (interleaved); returns times, steps, tables."""
    from hsgd._sweep import _permutation, ode_outcomes, sweep

    prob, ts, pts = _problem(hsgd, loss)
    n = pts["gamma"].size
    fns = {lanes: ode_outcomes(prob, ts) for lanes in lanes_list}  # one compiled chunk each
    perm = _permutation("auto", fns[lanes_list[0]], pts, n)
    chunks = [perm[lo:lo + chunk] for lo in range(0, n, chunk)]
    rng = np.random.default_rng(0)
    frac = 1.0 if not loop_points or loop_points >= n else loop_points / n

    compile_s = {}
    for lanes, fn in fns.items():  # compile + warm up (first call of the jitted chunk)
        start = time.perf_counter()
        sweep(fn, {k: v[chunks[0]] for k, v in pts.items()}, chunk_size=chunk, lanes=lanes,
              progress=False)
        compile_s[lanes] = time.perf_counter() - start
    jax.block_until_ready(hsgd.ode(prob, float(pts["gamma"][0]), ts, batch=1.0).risk)

    sweep_s = dict.fromkeys(lanes_list, 0.0)
    tables = {lanes: [] for lanes in lanes_list}
    loop_s, loop_idx, loop_steps, loop_risk = 0.0, [], [], []
    for c, idx in enumerate(chunks):
        sub = {k: v[idx] for k, v in pts.items()}
        methods = ["loop", *lanes_list]
        if c % 2:
            methods.reverse()  # alternate which method runs first
        for m in methods:
            start = time.perf_counter()
            if m == "loop":
                take = idx if frac == 1.0 else np.sort(rng.choice(
                    idx, max(1, round(frac * idx.size)), replace=False))
                for i in take:
                    sol = hsgd.ode(prob, float(pts["gamma"][i]), ts,
                                   batch=float(pts["batch"][i]))
                    jax.block_until_ready(sol.risk)
                    loop_steps.append(int(sol.num_steps))
                    loop_risk.append(float(sol.risk[-1]))
                loop_s += (time.perf_counter() - start) * idx.size / take.size
                loop_idx.extend(take)
            else:
                tables[m].append((idx, sweep(fns[m], sub, chunk_size=chunk, lanes=m,
                                             progress=False)))
                sweep_s[m] += time.perf_counter() - start
        print(f"  chunk {c + 1}/{len(chunks)}: loop {loop_s:.1f} s, sweeps "
              + ", ".join(f"{k} lanes {v:.1f} s" for k, v in sweep_s.items()), flush=True)

    full = {}
    for lanes, parts in tables.items():
        t = {}
        for idx, part in parts:
            for k, v in part.items():
                t.setdefault(k, np.empty(n))[idx] = v
        full[lanes] = t
    return {"n": n, "perm": perm, "compile_s": compile_s, "sweep_s": sweep_s, "tables": full,
            "loop_s": loop_s, "loop_idx": np.array(loop_idx), "loop_steps": loop_steps,
            "loop_risk": np.array(loop_risk), "prob": prob}


def _lockstep_overhead(steps_in_order, chunk, lanes):
    """Steps run (each vmap group runs its slowest point's steps in every lane) over steps
    needed, for points evaluated in this order."""
    s = np.asarray(steps_in_order)
    run = 0
    for lo in range(0, s.size, chunk):
        c = s[lo:lo + chunk]
        run += sum(c[i:i + lanes].max() * lanes for i in range(0, c.size, lanes))
    return run / s.sum()


def _drift_cost(prob, lanes, repeats=40):
    """Seconds per point of one drift evaluation, single and vmapped over `lanes` points (a
    `fori_loop` of evaluations inside one jitted call: no dispatch in the timing)."""
    from hsgd._dynamics.streaming_sgd import drift

    out = {}
    for width in (1, lanes):
        def body(i, Vb):
            return Vb + 1e-9 * jax.vmap(lambda V: drift(prob, V, 1.0, 4.0))(Vb)

        f = jax.jit(lambda Vb: jax.lax.fori_loop(0, repeats, body, Vb))
        Vb = jnp.broadcast_to(prob.V0, (width, *prob.V0.shape)) * (
            1 + 1e-3 * jnp.arange(width))[:, None, None, None]
        jax.block_until_ready(f(Vb))
        best = np.inf
        for _ in range(5):
            start = time.perf_counter()
            jax.block_until_ready(f(Vb))
            best = min(best, time.perf_counter() - start)
        out[width] = best / repeats / width
    return out


def summarize(res: dict, chunk: int) -> dict:
    n = res["n"]
    loop_pps = n / res["loop_s"]
    first = next(iter(res["tables"].values()))
    steps = first["num_steps"]
    li = res["loop_idx"]
    np.testing.assert_array_equal(steps[li], res["loop_steps"])  # same solves, same steps
    rel = np.abs(first["final_risk"][li] - res["loop_risk"]) / np.abs(res["loop_risk"])
    sweeps = {}
    for lanes, s in res["sweep_s"].items():
        sweeps[str(lanes)] = {
            "total_s": s, "compile_s": res["compile_s"][lanes], "points_per_s": n / s,
            "throughput_ratio": n / s / loop_pps,
            "us_per_point_step": 1e6 * s / steps.sum(),
            "lockstep_overhead": _lockstep_overhead(steps[res["perm"]], chunk,
                                                    min(lanes, chunk))}
    return {"points": n, "chunk": chunk, "devices": len(jax.devices()),
            "loop_points": int(li.size), "loop_s": res["loop_s"],
            "loop_points_per_s": loop_pps, "loop_us_per_step": 1e6 * res["loop_s"] / n
            / np.mean(res["loop_steps"]), "sweeps_by_lanes": sweeps,
            "max_rel_diff_final_risk_vs_loop": float(np.nanmax(rel)),
            "diverged_points": int((first["diverged"] > 0).sum()),
            "steps": {"min": int(steps.min()), "median": float(np.median(steps)),
                      "mean": float(steps.mean()), "max": int(steps.max()),
                      "total": int(steps.sum())}}


def _print_rows(label, summary):
    print(f"{label}: loop {summary['loop_points_per_s']:.1f} points/s "
          f"({summary['loop_us_per_step']:.0f} us per solver step)")
    for lanes, r in summary["sweeps_by_lanes"].items():
        print(f"{'':4}sweep, vmap {lanes:>3} lanes: {r['points_per_s']:6.1f} points/s, "
              f"ratio {r['throughput_ratio']:5.2f}, {r['us_per_point_step']:5.0f} us per "
              f"point-step, lockstep overhead {r['lockstep_overhead']:.2f}, compile+warm-up "
              f"{r['compile_s']:.1f} s")


def child(args):
    import hsgd

    res = measure(hsgd, args.chunk, args.lanes_list, args.loop_points)
    out = summarize(res, args.chunk)
    out["final_risk"] = [repr(float(x)) for x in res["tables"][args.lanes_list[0]]
                         ["final_risk"]]
    print(json.dumps(out))


def main():
    p = parser(__doc__)
    p.add_argument("--loop-points", type=int, default=0,
                   help="points in the loop baseline (0: all; else a seeded random sample)")
    p.add_argument("--chunk", type=int, default=256)
    p.add_argument("--lanes", default="16,256", help="comma-separated vmap widths to time")
    p.add_argument("--host-devices", type=int, default=2,
                   help="also measure with the CPU as this many XLA host devices (0: no)")
    p.add_argument("--no-control", action="store_true",
                   help="skip the least-squares control (same grid, closed-form moments)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    args.lanes_list = [int(x) for x in args.lanes.split(",")]
    setup(args)
    if args.child:
        return child(args)
    import hsgd

    print(f"--- 1 device ({os.cpu_count()} CPU cores)", flush=True)
    res = measure(hsgd, args.chunk, args.lanes_list, args.loop_points)
    rows = summarize(res, args.chunk)
    best = max(rows["sweeps_by_lanes"], key=lambda k: rows["sweeps_by_lanes"][k]["points_per_s"])
    b = rows["sweeps_by_lanes"][best]
    rows.update(best_lanes=int(best), sweep_total_s=b["total_s"],
                sweep_points_per_s=b["points_per_s"], throughput_ratio=b["throughput_ratio"])

    sharded = None
    if args.host_devices > 1:
        print(f"--- {args.host_devices} host devices (child process)", flush=True)
        env = dict(os.environ, JAX_PLATFORMS="cpu",
                   XLA_FLAGS=f"--xla_force_host_platform_device_count={args.host_devices}")
        cmd = [sys.executable, __file__, "--child", "--chunk", str(args.chunk), "--lanes",
               best, "--loop-points", str(args.loop_points or 256)]
        cmd += ["--float32"] if args.float32 else []
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True)
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("  chunk"):
                print(line, end="", flush=True)
        if proc.wait():
            raise RuntimeError("the host-device child failed")
        sharded = json.loads(lines[-1])
        risk = np.array([float(x) for x in sharded.pop("final_risk")])
        ref = res["tables"][int(best)]["final_risk"]
        sharded["max_rel_diff_final_risk_vs_1_device"] = float(
            np.nanmax(np.abs(risk - ref) / np.abs(ref)))
    rows["sharded"] = sharded

    control = None
    if not args.no_control:
        print("--- control: least squares (closed-form moments), 1 device", flush=True)
        cres = measure(hsgd, args.chunk, [16, 64], 256, loss="least_squares")
        control = summarize(cres, args.chunk)
        control["drift_us_per_point"] = {k: 1e6 * v
                                         for k, v in _drift_cost(cres["prob"], 16).items()}
    rows["control_least_squares"] = control

    drift = _drift_cost(res["prob"], int(best))
    rows["drift_us_per_point"] = {"single": 1e6 * drift[1], f"vmap{best}": 1e6 * drift[int(best)]}
    rows["drift_share_of_loop_step"] = 6e6 * drift[1] / rows["loop_us_per_step"]

    st = rows["steps"]
    print(f"\nsolver steps per point: min {st['min']}, median {st['median']:.0f}, mean "
          f"{st['mean']:.1f}, max {st['max']} (Tsit5, rtol 1e-7); {rows['diverged_points']} "
          f"diverged; sweep vs loop final risk: max rel. diff "
          f"{rows['max_rel_diff_final_risk_vs_loop']:.1e}")
    _print_rows("1 device", rows)
    if sharded:
        _print_rows(f"{sharded['devices']} host devices", sharded)
        print(f"{'':4}(final risk vs the 1-device sweep: max rel. diff "
              f"{sharded['max_rel_diff_final_risk_vs_1_device']:.1e})")
    if control:
        _print_rows("control, least squares, 1 device (loop: 256 sampled points)", control)
        print(f"{'':4}(steps per point: mean {control['steps']['mean']:.0f}; drift "
              f"{control['drift_us_per_point'][1]:.0f} us per point single, "
              f"{control['drift_us_per_point'][16]:.1f} vmapped x16)")
    print(f"one drift evaluation: {1e6 * drift[1]:.0f} us per point single, "
          f"{1e6 * drift[int(best)]:.0f} us per point vmapped x{best}; 6 per Tsit5 step = "
          f"{100 * rows['drift_share_of_loop_step']:.0f}% of a loop step")
    print(f"best: sweep {rows['sweep_points_per_s']:.1f} points/s ({best} lanes) vs loop "
          f"{rows['loop_points_per_s']:.1f}: {rows['throughput_ratio']:.2f}x on 1 device"
          + (f", {max(r['throughput_ratio'] for r in sharded['sweeps_by_lanes'].values()):.2f}x"
             f" on {sharded['devices']} host devices" if sharded else ""))
    write(args, __file__, rows)


if __name__ == "__main__":
    main()
