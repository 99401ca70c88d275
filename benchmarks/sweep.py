"""Sweep throughput: chunked vmap (hsgd.sweep) vs a Python loop of separate ODE solves.

Problem: streaming logistic regression, power law alpha = 0.5, d = 2000 coarsened to 32 log
bins, |X*| = 2, horizon 10 (21 saved times). Grid: 32 stepsizes (log 0.05..8) x 32 batch sizes
(1..32) = 1024 points, chunks of 256. The loop solves `--loop-points` points one by one with
the same compiled `hsgd.ode` (after a warm-up), the fair baseline a user would write.
Compile time of the chunked call is measured separately (ahead-of-time `lower().compile()`),
and the timed sweep runs after a warm-up.

    python benchmarks/sweep.py [--out DIR] [--loop-points 32]
"""

import time

import jax
import jax.numpy as jnp
import numpy as np

from _common import parser, setup, write


def main():
    p = parser(__doc__)
    p.add_argument("--loop-points", type=int, default=32)
    p.add_argument("--chunk", type=int, default=256)
    args = p.parse_args()
    setup(args)
    import hsgd
    from hsgd._sweep import grid, ode_outcomes, sweep

    prob = hsgd.Problem.random(hsgd.Logistic(), hsgd.Spectrum.power_law(2000, 0.5),
                               jax.random.PRNGKey(0), target_norm=2.0).coarsen(32)
    ts = jnp.linspace(0.0, 10.0, 21)
    pts = grid(gamma=np.geomspace(0.05, 8.0, 32), batch=np.arange(1.0, 33.0))
    n = pts["gamma"].size
    fn = ode_outcomes(prob, ts)

    from hsgd._sweep import _chunk_function

    chunk_fn = _chunk_function(fn, tuple(jax.devices()))
    example = {k: jnp.asarray(v[: args.chunk]) for k, v in pts.items()}
    start = time.perf_counter()
    chunk_fn.lower(example).compile()
    compile_s = time.perf_counter() - start
    sweep(fn, example, chunk_size=args.chunk, progress=False)  # warm the cache of `jit`
    start = time.perf_counter()
    table = sweep(fn, pts, chunk_size=args.chunk, progress=False)
    total = time.perf_counter() - start
    vmap_pps = n / total

    step = max(n // args.loop_points, 1)
    idx = np.arange(0, n, step)[: args.loop_points]
    jax.block_until_ready(hsgd.ode(prob, float(pts["gamma"][0]), ts, batch=1.0).risk)  # warm-up
    start = time.perf_counter()
    for i in idx:
        jax.block_until_ready(hsgd.ode(prob, float(pts["gamma"][i]), ts,
                                       batch=float(pts["batch"][i])).risk)
    loop_s = time.perf_counter() - start
    loop_pps = idx.size / loop_s

    rows = {"points": n, "chunk": args.chunk, "devices": len(jax.devices()),
            "sweep_total_s": total, "sweep_compile_s": compile_s,
            "sweep_points_per_s": vmap_pps, "loop_points": int(idx.size), "loop_s": loop_s,
            "loop_points_per_s": loop_pps, "throughput_ratio": vmap_pps / loop_pps,
            "diverged_points": int((table["diverged"] > 0).sum())}
    print(f"{'method':>16} {'points/s':>10}")
    print(f"{'chunked vmap':>16} {vmap_pps:10.1f}   (compile {compile_s:.1f} s, "
          f"total {total:.1f} s for {n} points)")
    print(f"{'python loop':>16} {loop_pps:10.1f}")
    print(f"throughput ratio: {rows['throughput_ratio']:.1f}x "
          f"({rows['diverged_points']} diverged points)")
    write(args, __file__, rows)


if __name__ == "__main__":
    main()
