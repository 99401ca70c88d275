"""The `hsgd` command line: `hsgd run [CONFIG.toml] [--out DIR]`,
`hsgd sweep CONFIG.toml [--out DIR] [--resume]`, `hsgd tune CONFIG.toml [--out DIR]`."""

import argparse
import inspect
import sys
import time
import warnings
from pathlib import Path

import jax
import numpy as np

from ._checks import CheckError, plain_errors
from ._config import (
    RUN_METHODS,
    ConfigError,
    Job,
    SweepJob,
    TuneJob,
    conventions_for,
    load,
    load_sweep,
    load_tune,
    optimizer_fields,
)
from ._io import write_atomic, write_csv, write_json
from ._methods import ode, sde, simulate, volterra
from ._plot import finite_figure, risk_figure, sweep_figure, tune_figure
from ._problem import FiniteProblem
from ._progress import simulation, sweep_chunks, tuning_steps
from ._registry import lookup
from ._schedule import AbstractSchedule, Constant
from ._sweep import ode_outcomes, sweep
from ._tune import baselines, compare, format_comparison, tune

_METHODS = {"ode": ode, "volterra": volterra, "simulate": simulate, "sde": sde}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="hsgd", description="Deterministic equivalents of high-dimensional SGD.")
    sub = parser.add_subparsers(dest="command", required=True)
    run_p = sub.add_parser("run", help="ODE vs SGD on one problem (built-in default or CONFIG)")
    run_p.add_argument("config", nargs="?", help="TOML config (see README); default built in")
    run_p.add_argument("--out", default="hsgd-out", help="output folder (default: hsgd-out)")
    run_p.add_argument("--float32", action="store_true",
                       help="compute in float32 (default float64)")
    sweep_p = sub.add_parser("sweep", help="the ODE over a grid of stepsizes x the "
                             "optimizer's fields (batch, momentum, ...)")
    sweep_p.add_argument("config", help="TOML config: [problem] and [optimizer] as for run, "
                         "plus [sweep]")
    sweep_p.add_argument("--out", default="hsgd-sweep", help="output folder")
    sweep_p.add_argument("--resume", action="store_true",
                         help="continue an interrupted sweep in --out (finished chunks kept)")
    sweep_p.add_argument("--float32", action="store_true")
    tune_p = sub.add_parser("tune", help="tune a learning-rate schedule through the ODE, "
                            "against baselines, checked by SGD")
    tune_p.add_argument("config", help="TOML config: [problem] as for run, [optimizer] (its "
                        "fields but the schedule), [tune]")
    tune_p.add_argument("--out", default="hsgd-tune", help="output folder")
    tune_p.add_argument("--float32", action="store_true")
    args = parser.parse_args(argv)
    if not args.float32:
        jax.config.update("jax_enable_x64", True)
    loader = {"run": load, "sweep": load_sweep, "tune": load_tune}[args.command]
    try:
        job = loader(args.config)
    except ConfigError as e:
        print(f"hsgd: config error: {e}", file=sys.stderr)
        return 2
    try:
        with plain_errors():  # a check failing inside jit: its own sentence, not the stack
            if args.command == "tune":
                return run_tune(job, Path(args.out))
            if args.command == "sweep":
                return run_sweep(job, Path(args.out), resume=args.resume)
            return run(job, Path(args.out))
    except CheckError as e:
        print(f"hsgd: {e}", file=sys.stderr)
        return 2


def _call(method: str, problem, optimizer, *args, **options):
    """`hsgd.<method>` (a registry method name) on the pair; `progress` is passed only to a
    cell that takes it (a user's cell need not report progress)."""
    cell = lookup(method, problem, optimizer)
    params = inspect.signature(cell).parameters
    if "progress" in options and "progress" not in params and not any(
            p.kind is p.VAR_KEYWORD for p in params.values()):
        options.pop("progress")
    return _METHODS[method](problem, optimizer, *args, **options)


def _describe(optimizer, sep=" ", eq="=", batch="batch") -> str:
    """The optimizer's scalar fields but the schedule, `batch` first: `batch=40 momentum=0.5`
    (fields that are None left out)."""
    names = sorted((f for f in optimizer_fields(type(optimizer)) if f != "schedule"),
                   key=lambda f: f != "batch")
    parts = []
    for name in names:
        value = getattr(optimizer, name)
        if isinstance(value, AbstractSchedule):  # a base rate held as a schedule (eta)
            value = value(0.0) if isinstance(value, Constant) else None
        if value is None or np.ndim(value) != 0:
            continue
        shown = (f"{value}" if isinstance(value, bool | str | int) else f"{float(value):g}")
        parts.append(f"{batch if name == 'batch' else name}{eq}{shown}")
    return sep.join(parts)


def run_sweep(job: SweepJob, out: Path, resume: bool = False, progress=True) -> int:
    """Run `hsgd sweep`: the sweep table, summary.json and sweep.png under `out`."""
    finite = isinstance(job.problem, FiniteProblem)
    bins = job.config["sweep"].get("ode_bins", 0) if hasattr(job.problem, "coarsen") else 0
    problem = job.problem.coarsen(bins) if bins else job.problem
    n = next(iter(job.points.values())).size
    pcfg = job.config["problem"]
    what = (f"finite data={pcfg['data']} n={problem.n} d={int(problem.d)}" if finite
            else f"loss={pcfg['loss']} d={job.problem.d}")
    axes = " x ".join(f"{len(np.unique(v))} {k}" for k, v in job.points.items())
    print(f"hsgd sweep: {what} optimizer={job.name} {n} points ({axes}) on "
          f"{len(jax.devices())} device(s), chunks of {job.chunk_size}", flush=True)
    fn = ode_outcomes(problem, job.ts, optimizer=job.optimizer, target_risk=job.target_risk)
    if progress is True:
        progress = sweep_chunks()
    start = time.perf_counter()
    try:
        table = sweep(fn, job.points, chunk_size=job.chunk_size, out=out, resume=resume,
                      progress=progress)
    except (FileExistsError, ValueError) as e:
        print(f"hsgd: {e}", file=sys.stderr)
        return 2
    wall = time.perf_counter() - start
    # Finite data without a population: rank by the training loss instead of the risk.
    metric = ("final_loss" if "final_loss" in table and not np.any(
        np.isfinite(table["final_risk"])) else "final_risk")
    # every optimizer has a batch: the template's where the sweep does not vary it
    table.setdefault("batch", np.full(n, float(job.optimizer.for_simulation(problem).batch)))
    diverged = table["diverged"] > 0
    best, overall = {}, None
    if np.any(~diverged):
        i = np.flatnonzero(~diverged)[np.argmin(table[metric][~diverged])]
        overall = {k: float(v[i]) for k, v in job.points.items()} | {metric: float(
            table[metric][i])}
    if "gamma" in table:
        for b in np.unique(table["batch"]):
            sel = (table["batch"] == b) & ~diverged
            if np.any(sel):
                i = np.flatnonzero(sel)[np.argmin(table[metric][sel])]
                best[f"{b:g}"] = {"gamma": float(table["gamma"][i]),
                                  metric: float(table[metric][i])}
    summary = {"config": job.config, "num_points": int(n), "wall_s": wall,
               "points_per_s": n / wall, "num_diverged": int(diverged.sum()),
               "best_gamma_per_batch": best, "best": overall}
    write_json(out / "summary.json", summary)
    written = [out / "results.csv", out / "summary.json"]
    if "gamma" in table:  # the figure is over (stepsize, batch)
        write_atomic(out / "sweep.png", sweep_figure(table, metric=metric))
        written.append(out / "sweep.png")
    print(f"{n} points in {wall:.1f} s ({n / wall:.1f} points/s), {int(diverged.sum())} "
          "diverged")
    label = metric.replace("_", " ")
    if best:
        print(f"{'batch':>6} {'best gamma':>11} {label:>11}")
        for b, v in best.items():
            print(f"{b:>6} {v['gamma']:11.4g} {v[metric]:11.6g}")
    if overall is not None:
        print("best point: " + ", ".join(f"{k} = {v:.6g}" for k, v in overall.items()))
    print("wrote " + ", ".join(map(str, written)))
    return 0


def run_tune(job: TuneJob, out: Path) -> int:
    """Run `hsgd tune`: tune, baselines, SGD check; schedule.csv, summary.json, schedule.png."""
    cfg = job.config
    finite = isinstance(job.problem, FiniteProblem)
    conv = conventions_for(job.problem, job.optimizer)
    what = (f"finite data={cfg['problem']['data']} n={job.problem.n} d={int(job.problem.d)}"
            if finite else f"{_streaming_label(cfg['problem'])} d={job.problem.d}")
    what += f" optimizer={job.name}"
    unit = "iterations" if conv.iterations else "epochs" if finite else "t = k/d"
    print(f"hsgd tune: {what} family={job.family} objective={job.objective} "
          f"horizon={job.horizon:g} ({unit}) {_describe(job.optimizer)} {job.num_steps} steps",
          flush=True)
    start = time.perf_counter()

    def progress(step, value, schedule):
        print(f"  step {step:4d}/{job.num_steps}: objective {value:.6g} "
              f"({time.perf_counter() - start:.1f} s)", flush=True)

    try:
        res = tune(job.problem, job.family, job.horizon, optimizer=job.optimizer,
                   objective=job.objective, num_times=job.num_times,
                   ode_bins=job.ode_bins or None, num_knots=job.num_knots,
                   learning_rate=job.learning_rate, num_steps=job.num_steps,
                   hyperparameters=job.hyperparameters or None, target=job.target,
                   progress=tuning_steps(job.num_steps, progress))
    except ValueError as e:
        print(f"hsgd: {e}", file=sys.stderr)
        return 2
    tune_s = time.perf_counter() - start
    print(f"tuned in {tune_s:.1f} s: objective {res.loss_history[0]:.6g} -> "
          f"{res.loss_history.min():.6g}", flush=True)
    start = time.perf_counter()
    base = baselines(res.predictor, objective=job.objective, include=job.baselines)
    baselines_s = time.perf_counter() - start
    candidates = {"tuned": res, **base}
    summary = {"config": cfg, "optimiser_steps": res.num_steps,
               "objective_history": res.loss_history.tolist(),
               "wall_s": {"tune": tune_s, "baselines": baselines_s},
               "baseline_parameters": {k: v.parameters for k, v in base.items()},
               "floor": res.predictor.floor()}
    if res.hyperparameters:
        summary["hyperparameters"] = res.hyperparameters
    ts = np.asarray(res.ts)
    gammas = {k: np.asarray(jax.vmap(c.schedule)(res.ts)) for k, c in candidates.items()}
    predicted = {"tuned": np.asarray(res.risk), **{k: np.asarray(c.risk) for k, c in base.items()}}
    summary["predicted_final"] = {k: float(v[-1]) for k, v in predicted.items()}
    sgd_curves = None
    if job.sgd_runs:
        start = time.perf_counter()
        cmp = compare(res.predictor, candidates, key=jax.random.PRNGKey(job.seed),
                      num_runs=job.sgd_runs)
        summary["wall_s"]["sgd"] = time.perf_counter() - start
        summary["simulated_final"] = {k: {"mean": r["sgd_mean"], "sem": r["sgd_sem"],
                                          "relative_error": r["relative_error"]}
                                      for k, r in cmp["results"].items()}
        sgd_curves = {k: r["sgd_curve"] for k, r in cmp["results"].items()}
        print(format_comparison(cmp))
    else:
        for k, v in summary["predicted_final"].items():
            print(f"{k:>12} predicted final risk {v:.6g}")
    fine = np.linspace(0.0, job.horizon, 201)
    gamma_fine = np.asarray(jax.vmap(res.schedule)(fine))
    write_csv(out / "schedule.csv", ["t", "gamma"],
              [[f"{t:.10g}", f"{g:.10g}"] for t, g in zip(fine, gamma_fine)])
    write_json(out / "summary.json", summary)
    write_atomic(out / "schedule.png", tune_figure(
        ts, gammas, predicted, sgd_curves, floor=summary["floor"],
        title=f"{what}, T = {job.horizon:g}"))
    print(f"wrote {out / 'schedule.csv'}, {out / 'summary.json'}, {out / 'schedule.png'}")
    return 0


def _streaming_label(problem_cfg: dict, spectrum: bool = False) -> str:
    """What a streaming [problem] section is, for the console and the figure title."""
    if problem_cfg.get("kind") == "plrf":
        det = " deterministic" if problem_cfg.get("deterministic") else ""
        return (f"plrf{det} alpha={problem_cfg['alpha']} beta={problem_cfg['beta']} "
                f"v={problem_cfg['v']}")
    out = f"loss={problem_cfg['loss']}"
    return out + (f" spectrum={problem_cfg['spectrum']['kind']}" if spectrum else "")


def run(job: Job, out: Path) -> int:
    """Run the methods of `job` on its (problem, optimizer) pair, print the table and write the
    result files."""
    out.mkdir(parents=True, exist_ok=True)
    if isinstance(job.problem, FiniteProblem):
        return run_finite(job, out)
    prob, ts, opt = job.problem, job.ts, job.optimizer
    cfg = job.config
    label = job.conventions.ode_label
    simulated = job.conventions.simulated(opt)
    print(f"hsgd run: {_streaming_label(cfg['problem'], spectrum=True)} d={prob.d} "
          f"optimizer={job.name} "
          f"{_describe(opt)} t in [0, {ts[-1]:g}] methods={','.join(job.methods)}", flush=True)
    timings, summary = {}, {"config": cfg}
    ode_sol = sgd = None
    if label in job.methods:
        ode_prob = prob.coarsen(job.ode_bins) if job.ode_bins else prob
        det = job.conventions.deterministic(opt)
        start = time.perf_counter()
        ode_sol = _call("ode", ode_prob, det, ts)
        jax.block_until_ready(ode_sol.risk)
        timings["ode_first_call_s"] = time.perf_counter() - start
        start = time.perf_counter()
        jax.block_until_ready(_call("ode", ode_prob, det, ts).risk)
        timings["ode_s"] = time.perf_counter() - start
        timings["ode_compile_s"] = max(timings["ode_first_call_s"] - timings["ode_s"], 0.0)
        steps = "" if ode_sol.num_steps is None else f", {int(ode_sol.num_steps)} steps"
        print(f"  ode: {timings['ode_s']:.3f} s (+ {timings['ode_compile_s']:.2f} s compile)"
              f"{steps}, {ode_prob.spectrum.num_modes} modes", flush=True)
        summary["ode_diverged"] = bool(ode_sol.diverged)
        if bool(ode_sol.diverged):
            summary["ode_divergence_time"] = float(ode_sol.divergence_time)
            print(f"  ode: DIVERGED by t = {float(ode_sol.divergence_time):.4g} (risk blew up); "
                  "lower the learning rate", flush=True)
    if "sgd" in job.methods:
        start = time.perf_counter()
        sgd = _call("simulate", prob, opt, ts, jax.random.PRNGKey(job.sgd_seed),
                    num_runs=job.sgd_runs, progress=simulation(simulated.lower()))
        jax.block_until_ready(sgd.risk)
        timings["sgd_s"] = time.perf_counter() - start
        print(f"  sgd: {timings['sgd_s']:.2f} s for {job.sgd_runs} {simulated} runs",
              flush=True)
        summary["sgd_diverged_runs"] = int(np.sum(np.asarray(sgd.diverged)))
        if summary["sgd_diverged_runs"]:
            first = float(np.min(np.asarray(sgd.divergence_time)))
            summary["sgd_first_divergence_time"] = first
            print(f"  sgd: {summary['sgd_diverged_runs']} of {job.sgd_runs} runs DIVERGED "
                  f"(first by t = {first:.4g})", flush=True)

    sde_res = None
    if "sde" in job.methods:
        start = time.perf_counter()
        sde_res = _call("sde", prob, job.conventions.deterministic(opt), ts,
                        jax.random.PRNGKey(job.sgd_seed + 1), num_paths=job.sde_paths)
        jax.block_until_ready(sde_res.risk)
        timings["sde_s"] = time.perf_counter() - start
        print(f"  sde: {timings['sde_s']:.2f} s for {job.sde_paths} paths", flush=True)
        summary["sde_diverged_paths"] = int(np.sum(np.asarray(sde_res.diverged)))

    summary["timings"] = timings
    if ode_sol is not None and sde_res is not None:
        summary["max_rel_error_sde"], reason = _max_relative(ts, ode_sol.risk, sde_res.mean())
        if reason:
            summary["max_rel_error_sde_reason"] = reason
    rel = None
    if ode_sol is not None and sgd is not None:
        rel = _relative(ode_sol.risk, sgd.mean())
        summary["max_rel_error"], reason = _max_relative(ts, ode_sol.risk, sgd.mean())
        if reason:
            summary["max_rel_error_reason"] = reason
    _print_table(ts, ode_sol, sgd, rel, sde_res, simulated)
    if "max_rel_error" in summary and summary["max_rel_error"] is not None:
        print(f"max |ODE - {simulated} mean| / {simulated} mean over the saved times: "
              f"{summary['max_rel_error']:.4f}")
    for key in ("max_rel_error_reason", "max_rel_error_sde_reason"):
        if key in summary:
            print(f"{key.removesuffix('_reason')}: none — {summary[key]}")
    _write_curves(out / "curves.csv", ts, ode_sol, sgd, sde_res)
    write_json(out / "summary.json", summary)
    log_time = cfg["run"]["time_grid"] == "log"
    png = risk_figure(ts, None if ode_sol is None else ode_sol.risk,
                      None if sgd is None else sgd.risk,
                      title=f"{_streaming_label(cfg['problem'])}, d = {prob.d}",
                      log_time=log_time,
                      sde_risk=None if sde_res is None else sde_res.risk,
                      simulated=simulated, **_gamma_panel(ode_sol, sgd))
    write_atomic(out / "risk.png", png)
    print(f"wrote {out / 'curves.csv'}, {out / 'summary.json'}, {out / 'risk.png'}")
    return 0


def run_finite(job: Job, out: Path) -> int:
    """`hsgd run` on finite data (SPEC §2, §3): the pair's deterministic equivalent (per-mode
    ODE, Volterra equation, or the SGD+M recursion) against the optimiser over the rows;
    training loss and population risk in curves.csv, summary.json and risk.png."""
    prob, ts, cfg, opt = job.problem, job.ts, job.config, job.optimizer
    conv = job.conventions
    print(f"hsgd run: finite data={cfg['problem']['data']} n={prob.n} d={int(prob.d)} "
          f"optimizer={job.name} {_describe(opt)} epochs in [0, {ts[-1]:g}] "
          f"methods={','.join(job.methods)}", flush=True)
    summary, timings = {"config": cfg}, {}
    gamma0 = float(job.schedule(0.0))
    iterations = conv.iterations is not None
    if iterations:  # the schedule counts iterations k; record at k = round(t n / beta)
        ks = conv.iterations(prob, opt, ts)
        ts = conv.epochs(prob, opt, ks)
    limit = None
    if conv.limit is not None:
        limit = float(conv.limit(prob, opt))
        summary[conv.limit_name] = limit
        summary["limit_loss"] = float(conv.limit_loss(prob, opt, gamma0))
        summary["limit_risk"] = float(conv.limit_risk(prob, opt, gamma0))
    gmax_grid = float(np.max(np.asarray(job.schedule.on_grid(
        ks if iterations else np.linspace(0.0, ts[-1], 1025)))))
    line = f"  stepsize: gamma(0) = {gamma0:.4g}, max {gmax_grid:.4g}"
    if limit is not None:
        line += (f"; stability limit {limit:.4g} ({conv.limit_label}); limit loss per sample "
                 f"at gamma(0): {summary['limit_loss'] / prob.n:.6g}")
    print(line, flush=True)
    if prob.data is not None:  # one SGD step on row i alone is stable iff gamma |a_i|^2 < 2
        rows = np.sum(np.asarray(prob.data.A) ** 2, axis=1)
        summary["single_row_limit"] = float(2.0 / rows.max())
        if conv.single_row_note and gmax_grid >= summary["single_row_limit"]:
            print(f"  note: the stepsize passes the single-row limit 2/max|a_i|^2 = "
                  f"{summary['single_row_limit']:.4g} (max row norm^2 {rows.max():.3g} vs "
                  f"mean {rows.mean():.3g}): rows of unequal norms can make SGD diverge where "
                  "the theory converges", flush=True)
    if limit is not None and gmax_grid >= limit:  # the largest stepsize, gamma(0) included
        print(f"  WARNING: the stepsize reaches {gmax_grid:.4g} >= the stability limit "
              f"{limit:.4g}: the theory predicts divergence", flush=True)

    cell_ts = ks if iterations else ts  # the times in the cell's clock
    curves = {}  # method -> (loss (R, T), risk (R, T)); deterministic ones have R = 1
    reference = None
    for method in job.methods:
        name = RUN_METHODS[method]
        start = time.perf_counter()
        if name in ("ode", "volterra"):
            res = _call(name, prob, conv.deterministic(opt), cell_ts)
        elif name == "simulate":
            res = _call(name, prob, opt, cell_ts, jax.random.PRNGKey(job.sgd_seed),
                        num_runs=job.sgd_runs,
                        progress=simulation(conv.simulated(opt).lower()))
        else:  # sde: the summed mini-batch follows the same diffusion in epochs
            res = _call(name, prob, conv.deterministic(opt), cell_ts,
                        jax.random.PRNGKey(job.sgd_seed + 1), num_paths=job.sde_paths)
        jax.block_until_ready(res.loss)
        timings[f"{method}_s"] = time.perf_counter() - start
        loss, risk = np.atleast_2d(np.asarray(res.loss)), np.atleast_2d(np.asarray(res.risk))
        curves[method] = (loss, risk)
        diverged = np.atleast_1d(np.asarray(res.diverged))
        summary[f"{method}_diverged"] = int(diverged.sum())
        sampled = method in ("sgd", "sde")
        what = f"{diverged.sum()} of {diverged.size} runs" if sampled else "the prediction"
        print(f"  {method}: {timings[f'{method}_s']:.2f} s"
              + (f" for {diverged.size} runs" if sampled else "")
              + (f"; {what} DIVERGED" if diverged.any() else ""), flush=True)
        if not sampled and reference is None:
            reference = method
    summary["timings"] = timings
    summary["epochs"] = ts.tolist()
    for sampled in ("sgd", "sde"):
        if reference is None or sampled not in curves:
            continue
        for i, name in enumerate(("loss", "risk")):
            key = f"max_rel_error_{name}_{reference}_vs_{sampled}"
            summary[key], reason = _max_relative(ts, curves[reference][i][0],
                                                 _nanmean(curves[sampled][i]))
            # a curve without a population risk is all NaN by design: no reason needed
            if reason and np.any(np.isfinite(curves[reference][i][0])):
                summary[f"{key}_reason"] = reason
    if "ode" in curves and "volterra" in curves:
        summary["max_rel_diff_ode_vs_volterra"] = _max_finite(
            _relative(curves["ode"][0][0], curves["volterra"][0][0]))

    _print_finite_table(ts, curves, prob.n)
    for key, value in summary.items():
        if key.startswith("max_rel") and key.endswith("_reason"):
            print(f"{key.removesuffix('_reason')}: none — {value}")
        elif key.startswith("max_rel") and value is not None:
            print(f"{key}: {value:.4f}")
    rows = []
    gammas = np.asarray(job.schedule.on_grid(cell_ts))
    for method, (loss, risk) in curves.items():
        for r in range(loss.shape[0]):
            for i, t in enumerate(ts):
                rows.append([method, r, f"{t:.10g}", int(ks[i]) if iterations else "",
                             f"{loss[r, i]:.10g}", f"{risk[r, i]:.10g}", f"{gammas[i]:.10g}"])
    write_csv(out / "curves.csv", ["method", "run", "epoch", "iteration", "loss", "risk",
                                   "gamma"], rows)
    write_json(out / "summary.json", summary)
    names = {"ode": "ODE", "volterra": "Volterra", "recursion": "recursion",
             "sgd": conv.simulated(opt), "sde": "SDE"}
    lines = {names[m]: c for m, c in curves.items() if m not in ("sgd", "sde")}
    bands = {names[m]: c for m, c in curves.items() if m in ("sgd", "sde")}
    title = (f"{cfg['problem']['data']}, n = {prob.n}, d = {int(prob.d)}, {job.name}, "
             + _describe(opt, sep=", ", eq=" = ", batch="β"))
    write_atomic(out / "risk.png", finite_figure(
        ts, {k: v[0][0] / prob.n for k, v in lines.items()},
        {k: v[0] / prob.n for k, v in bands.items()}, {k: v[1][0] for k, v in lines.items()},
        {k: v[1] for k, v in bands.items()}, title=title))
    print(f"wrote {out / 'curves.csv'}, {out / 'summary.json'}, {out / 'risk.png'}")
    return 0


def _relative(value, reference):
    """|value - reference| / |reference|, elementwise (NaN/inf where either diverged)."""
    value, reference = np.asarray(value), np.asarray(reference)
    with np.errstate(all="ignore"):
        return np.abs(value - reference) / np.abs(reference)


def _max_relative(ts, value, reference):
    r"""(max over saved times of |value − reference| / |reference|, None) — or (None, reason)
    when no saved time after $t = 0$ has both finite: there the curves start from the same
    point, so a maximum over $t = 0$ alone (≈ 0) would claim an agreement never tested."""
    ts, value, reference = np.asarray(ts), np.asarray(value), np.asarray(reference)
    both = np.isfinite(value) & np.isfinite(reference)
    if not np.any(both & (ts > 0)):
        def gone(x):
            bad = ~np.isfinite(x) & (ts > 0)
            return f"t = {ts[np.argmax(bad)]:.4g}" if np.any(bad) else None

        parts = [f"the deterministic curve diverged by {gone(value)}" if gone(value) else "",
                 f"every sampled run diverged by {gone(reference)}" if gone(reference) else ""]
        why = "; ".join(p for p in parts if p) or "no saved time after t = 0"
        return None, (f"no saved time after t = 0 where both curves are finite ({why}); "
                      "lower the learning rate or shorten the horizon to compare them")
    return _max_finite(_relative(value, reference)), None


def _max_finite(x):
    """The largest finite entry of `x`, or None when there is none (everything diverged)."""
    x = np.asarray(x)
    x = x[np.isfinite(x)]
    return float(x.max()) if x.size else None


def _nanmean(x):
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # every run diverged: NaN is the answer
        return np.nanmean(x, axis=0)


def _print_finite_table(ts, curves, n):
    """Per epoch: the mean training loss per sample and the population risk of each method."""
    cols = list(curves)
    header = f"{'epoch':>9} " + " ".join(f"{m + ' loss/n':>15}" for m in cols)
    has_risk = any(np.any(np.isfinite(c[1])) for c in curves.values())
    if has_risk:
        header += " " + " ".join(f"{m + ' risk':>15}" for m in cols)
    print(header)
    print("-" * len(header))
    means = {m: (_nanmean(c[0]) / n, _nanmean(c[1])) for m, c in curves.items()}
    for i, t in enumerate(ts):
        cells = [_cell(means[m][0][i], 15, ".6g") for m in cols]
        if has_risk:
            cells += [_cell(means[m][1][i], 15, ".6g") for m in cols]
        print(f"{t:9.4g} " + " ".join(cells))


def _cell(v, width, fmt):
    """`v` formatted, or a dash when it is not finite (diverged)."""
    return f"{v:{width}{fmt}}" if np.isfinite(v) else f"{'—':>{width}}"


def _print_table(ts, ode_sol, sgd, rel, sde_res=None, simulated="SGD"):
    header = (f"{'t':>10} {'ODE risk':>12} {simulated + ' mean':>12} {'± std':>10} "
              f"{'rel err':>9}")
    if sde_res is not None:
        header += f" {'SDE mean':>12} {'± std':>10}"
    print(header)
    print("-" * len(header))

    for i, t in enumerate(ts):
        o = float(ode_sol.risk[i]) if ode_sol is not None else np.nan
        m = float(sgd.mean()[i]) if sgd is not None else np.nan
        s = float(sgd.std()[i]) if sgd is not None else np.nan
        r = float(rel[i]) if rel is not None else np.nan
        line = " ".join([f"{t:10.4g}", _cell(o, 12, ".6g"), _cell(m, 12, ".6g"),
                         _cell(s, 10, ".3g"), _cell(r, 9, ".4f")])
        if sde_res is not None:
            line += " " + _cell(float(sde_res.mean()[i]), 12, ".6g")
            line += " " + _cell(float(sde_res.std()[i]), 10, ".3g")
        print(line)


def _gamma_panel(ode_sol, sgd) -> dict:
    """The stepsize panel of risk.png where the stepsize is state feedback (the runs record
    theirs, SPEC §10): the ODE's predicted curve and the runs'."""
    runs = None if sgd is None else sgd.gamma
    if runs is None:
        return {}
    return dict(gamma=None if ode_sol is None else ode_sol.gamma, gamma_runs=runs)


def _write_curves(path, ts, ode_sol, sgd, sde_res=None):
    """curves.csv; a field a cell does not produce (distance, gamma_crit, B) is NaN / empty."""
    header = ["method", "run", "t", "risk", "distance", "gamma", "gamma_crit", "B"]
    rows = []
    T = len(ts)

    def flat(B):
        return "" if B is None else ";".join(f"{x:.10g}" for x in np.asarray(B).ravel())

    def column(x, shape):
        return np.full(shape, np.nan) if x is None else np.asarray(x)

    if ode_sol is not None:
        dist, gcrit = column(ode_sol.distance, T), column(ode_sol.gamma_crit, T)
        for i, t in enumerate(ts):
            rows.append(["ode", 0, f"{t:.10g}", f"{float(ode_sol.risk[i]):.10g}",
                         f"{float(dist[i]):.10g}", f"{float(ode_sol.gamma[i]):.10g}",
                         f"{float(gcrit[i]):.10g}",
                         flat(None if ode_sol.B is None else ode_sol.B[i])])
    for name, res in (("sgd", sgd), ("sde", sde_res)):
        if res is None:
            continue
        risk = np.asarray(res.risk)
        dist = column(res.distance, risk.shape)
        own = None if res.gamma is None else np.asarray(res.gamma)  # a feedback stepsize
        for r in range(risk.shape[0]):
            for i, t in enumerate(ts):
                gamma = (float(own[r, i]) if own is not None else
                         float(ode_sol.gamma[i]) if ode_sol is not None else np.nan)
                rows.append([name, r, f"{t:.10g}", f"{risk[r, i]:.10g}", f"{dist[r, i]:.10g}",
                             f"{gamma:.10g}", "",
                             flat(None if res.B is None else np.asarray(res.B)[r, i])])
    write_csv(path, header, rows)


if __name__ == "__main__":
    sys.exit(main())
