"""Compute-optimal scaling laws of PLRF measured from the ODE (issue 19, SPEC §13,
`hsgd.scaling`), one point per phase, beside the formulas of 2405.15074.

Points: (alpha, beta) = (1.0, 0.3) phase I, (1.0, 0.7) phase II, (0.7, 0.8) phase III; batch 1,
the default per-iteration stepsize (`hsgd.scaling.default_eta`), v = 1e6, the deterministic
spectrum on 2048 modes (loss curves within 0.5% of 8192 modes up to d = 16384). Budgets
f = d * batch * k log-spaced; model sizes log-spaced; the exponents are fitted over the
largest budgets whose optimum is interior to the d grid (`--fit-decades`). The tables of all
points are one jitted call (`hsgd.scaling.phase_diagram`): its time is reported with compile
(first call) and after warm-up (second call) — the second call is the in-run baseline of the
first.

    python benchmarks/scaling.py --out benchmarks/results
"""

import time

import jax
import numpy as np

from _common import parser, setup, write

POINTS = [(1.0, 0.3), (1.0, 0.7), (0.7, 0.8)]


def main():
    p = parser(__doc__)
    p.add_argument("--flops", type=float, nargs=2, default=[1e5, 1e12])
    p.add_argument("--num-flops", type=int, default=29)
    p.add_argument("--d", type=float, nargs=2, default=[16, 16384])
    p.add_argument("--num-d", type=int, default=40)
    p.add_argument("--num-modes", type=int, default=2048)
    p.add_argument("--d-fit-max", type=float, default=8192.0)
    p.add_argument("--fit-decades", type=float, default=3.0,
                   help="fit over the top this many decades of interior budgets")
    p.add_argument("--points", default=None, help="e.g. '1.0,0.7;0.7,0.8'")
    p.add_argument("--repeat", action="store_true", help="time a second (warm) call too")
    p.add_argument("--grid64", action="store_true",
                   help="only time one loss_curves call on 64 model sizes at 1e4 modes")
    args = p.parse_args()
    setup(args)
    import hsgd

    if args.grid64:
        return grid64(args, hsgd)

    points = POINTS if args.points is None else [tuple(map(float, s.split(",")))
                                                 for s in args.points.split(";")]
    flops = np.geomspace(*args.flops, args.num_flops)
    ds = np.geomspace(*args.d, args.num_d)
    # the fit: the top `fit_decades` of the budgets whose optimum is interior and at most
    # --d-fit-max (the deterministic spectrum on 2048 modes resolves d <= 16384 to 0.5%; past
    # it the curves' bias stalls d*)
    fit = dict(ds=ds, num_modes=args.num_modes, max_fit_d=args.d_fit_max,
               fit_decades=args.fit_decades)
    start = time.perf_counter()
    results = hsgd.scaling.phase_diagram(points, flops, **fit)
    first = time.perf_counter() - start
    warm = None
    if args.repeat:
        start = time.perf_counter()
        hsgd.scaling.phase_diagram(points, flops, **fit)
        warm = time.perf_counter() - start
    rows = []
    print(f"{'alpha':>5} {'beta':>5} {'phase':>5} {'a':>7} {'a paper':>7} {'b':>7} "
          f"{'b paper':>7} {'budgets':>7}")
    for res in results:
        s = res.summary()
        s["d_opt"] = res.d_opt.tolist()
        s["loss_opt"] = res.loss_opt.tolist()
        rows.append(s)
        print(f"{res.alpha:5.2f} {res.beta:5.2f} {s.get('phase', '-'):>5} "
              f"{res.d_exponent:7.3f} {s.get('paper_d_exponent', np.nan):7.3f} "
              f"{res.loss_exponent:7.3f} {s.get('paper_loss_exponent', np.nan):7.3f} "
              f"{s['budgets_fitted']:7d}")
        if args.out:
            from pathlib import Path

            png = res.figure(as_png=True)
            path = Path(args.out) / f"scaling_{res.alpha:g}_{res.beta:g}.png"
            hsgd._io.write_atomic(path, png)
    print(f"tables of {len(points)} points x {ds.size} d x {flops.size} budgets: first call "
          f"{first:.1f} s" + ("" if warm is None else f", warm {warm:.1f} s"))
    write(args, __file__, {"flops": flops.tolist(), "ds": ds.tolist(),
                           "num_modes": args.num_modes, "fit_decades": args.fit_decades,
                           "seconds_first_call": first, "seconds_warm": warm,
                           "d_fit_max": args.d_fit_max, "points": rows,
                           "backend": jax.default_backend()})


def grid64(args, hsgd):
    """The issue's 'a 64-point d-grid of the compute-optimal envelope at D = 1e4 (modes) takes
    one jitted call': `hsgd.scaling.compute_optimal` (one `loss_curves` call, then the
    envelope and the fit) on 64 log-spaced d in [16, 16384] and 29
    budgets, the deterministic spectrum on 1e4 modes, (alpha, beta) = (1, 0.7). Its lanes are
    sized to ~4 GB of resolvent work arrays (1 lane at 1e4 modes, v = 1e6)."""
    flops = np.geomspace(*args.flops, args.num_flops)
    ds = np.geomspace(16, 16384, 64)
    start = time.perf_counter()
    res = hsgd.scaling.compute_optimal(1.0, 0.7, flops, ds=ds, num_modes=10_000,
                                       max_fit_d=args.d_fit_max, fit_decades=args.fit_decades)
    first = time.perf_counter() - start
    print(f"64 d x {flops.size} budgets at 1e4 modes: one call, {first:.1f} s (compile "
          f"included); a = {res.d_exponent:.3f} (paper {res.paper.d_exponent:.3f}), b = "
          f"{res.loss_exponent:.3f} (paper {res.paper.loss_exponent:.3f})")
    from pathlib import Path

    # its own JSON (scaling_grid64.json), next to the phase-diagram one
    return write(args, str(Path(__file__).with_name("scaling_grid64.py")),
                 {"ds": ds.tolist(), "flops": flops.tolist(), "num_modes": 10_000,
                  "seconds": first, "summary": res.summary()})


if __name__ == "__main__":
    main()
