r"""Parameter sweeps at scale: grids of points evaluated in vectorised, sharded chunks, with
results that are never lost.

A sweep evaluates a pure JAX function `fn(params) -> outcomes` (both dicts of scalars) on many
parameter points. Points are cut into chunks; each chunk is one call of
`jit(shard_map(lax.map(vmap(fn))))` over a 1-D device mesh (axis `"grid"`), so it runs
unchanged on one CPU, on several local devices, or — after `jax.distributed.initialize()` —
across hosts. Inside a chunk each device solves its points `lanes` at a time (a `vmap` of that
width inside a `lax.map`): an adaptive ODE solve under `vmap` runs in lockstep until its slowest
lane is done, so narrow lanes of points with similar cost waste little. For the same reason the
points are evaluated in a cost order (by default, for [`ode_outcomes`][], by stepsize), and the
table comes back in the caller's order. A finished chunk is written atomically to
`out/chunks/chunk_NNNNN.csv` (with each row's index in the caller's order) and recorded in
`out/manifest.json` (CSV + a JSON manifest: no extra dependency, readable by anything, and a
chunk file is either complete or absent). `resume=True` skips the chunks the manifest lists, so
an interrupted sweep loses at most the chunk in flight.
"""

import dataclasses
import hashlib
import itertools
import json
import sys
import time
import weakref
from collections.abc import Callable
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec

from ._checks import check
from ._io import write_csv, write_json
from ._methods import ode
from ._optimizer import SGD, as_optimizer
from ._registry import lookup
from ._schedule import Constant


def grid(**axes) -> dict[str, np.ndarray]:
    """The Cartesian product of the given axes, flattened: `grid(gamma=[...], batch=[...])`
    returns `{"gamma": (N,), "batch": (N,)}` with N the product of the axis lengths (the last
    axis varies fastest)."""
    if not axes:
        raise ValueError("grid needs at least one axis")
    values = []
    for name, v in axes.items():
        v = np.atleast_1d(np.asarray(v, dtype=float))
        if v.ndim != 1 or v.size == 0:
            raise ValueError(f"grid axis {name!r} must be a non-empty 1-D list, got {v!r}")
        values.append(v)
    rows = np.array(list(itertools.product(*values)))
    return {name: rows[:, i] for i, name in enumerate(axes)}


def ode_outcomes(problem, ts, *, optimizer=None, target_risk: float | None = None,
                 schedule: Callable | None = None, **ode_kwargs) -> Callable:
    r"""A sweep function for the deterministic dynamics of `problem` and an optimizer on output
    times `ts` (in the pair's clock): `hsgd.ode(problem, optimizer, ts, **ode_kwargs)` for the
    optimizer built from each point — any registered pair.

    The point's parameters set the optimizer, built from the template `optimizer` (default
    `SGD(1.0)`; a float or schedule means SGD of it) with `.replace`:

    - `gamma`: a constant learning rate (required unless `schedule` is given or the point sets
      parameters of the template's schedule);
    - any field of the optimizer but its schedule (`batch`, `momentum`, `batch_fraction`, …);
    - any parameter of the template's schedule (e.g. `peak` of a [`Cosine`][]);
    - with `schedule`, a function `params -> AbstractSchedule` builds the schedule instead.

    Outcomes: `final_risk` (NaN when diverged), `min_risk` (over the saved times before any
    divergence), `diverged` (1.0/0.0), `divergence_time` (inf if none) and, with
    `target_risk`, `time_to_target` (first saved time with risk ≤ target, inf if never), and
    `num_steps` (the solver steps the point took: its cost). Where the pair has a training
    loss (finite data) `risk` is the population risk and `final_loss`, `min_loss` (the
    training loss $\psi$) come too; without a population the risk outcomes are NaN and the
    target applies to the training loss. Divergence is detected inside the jitted solve, per
    point, so diverged points do not poison the rest of the chunk.
    """
    ts = jnp.asarray(ts)
    template = as_optimizer(SGD(1.0) if optimizer is None else optimizer)
    lookup("ode", problem, template)  # an unsupported pair: the error now, naming it
    fields, schedule_fields = sweep_parameters(template)
    population = getattr(problem, "has_population", True)

    def build(params):
        """The template with the point's parameters in."""
        _check_names(params, fields, schedule_fields, template)
        changes = {k: params[k] for k in fields if k in params}
        if schedule is not None:
            sched = schedule(params)
        elif "gamma" in params:
            sched = Constant(params["gamma"])
        else:
            sched_changes = {k: params[k] for k in schedule_fields if k in params}
            sched = (dataclasses.replace(template.schedule, **sched_changes) if sched_changes
                     else template.schedule)
        return template.replace(schedule=sched, **changes)

    def best(x):
        return jnp.nanmin(jnp.where(jnp.isfinite(x), x, jnp.nan))

    def fn(params):
        sol = ode(problem, build(params), ts, **ode_kwargs)
        curves = {"risk": sol.risk}
        if sol.loss is not None:
            curves["loss"] = sol.loss
        target_curve = sol.risk if sol.loss is None or population else sol.loss
        out = {}
        for name, curve in curves.items():
            out[f"final_{name}"] = curve[-1]
            out[f"min_{name}"] = best(curve)
        out["diverged"] = sol.diverged.astype(ts.dtype)
        out["num_steps"] = jnp.asarray(sol.num_steps).astype(ts.dtype)
        out["divergence_time"] = sol.divergence_time
        if target_risk is not None:
            hit = target_curve <= target_risk
            out["time_to_target"] = jnp.where(jnp.any(hit), ts[jnp.argmax(hit)], jnp.inf)
        return out

    def check_points(cols: dict):
        _check_names(cols, fields, schedule_fields, template)
        _check_ode_points(cols)
        _check_fields(cols, build, [k for k in cols if k not in ("gamma", "batch")])

    # Adaptive steps grow with the stepsize (stiffer), then with the batch: evaluate points in
    # that order so that a vmapped lane holds points of similar cost (see `sweep`).
    fn.sweep_order = lambda cols: _lexicographic(cols, ("gamma", "batch"))
    fn.check_points = check_points
    fn.optimizer = template
    return fn


def sweep_parameters(optimizer) -> tuple[list[str], list[str]]:
    """(the optimizer's fields but its schedule, the numeric parameters of its schedule): what
    a sweep point may set besides `gamma`."""
    fields = [f.name for f in dataclasses.fields(optimizer) if f.name != "schedule"]
    schedule = optimizer.schedule
    on_schedule = [f.name for f in dataclasses.fields(schedule) if f.name not in fields
                   and (eqx.is_array(getattr(schedule, f.name))
                        or _is_number(getattr(schedule, f.name)))] \
        if dataclasses.is_dataclass(schedule) else []
    return fields, on_schedule


def _is_number(x) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _check_names(params, fields, schedule_fields, template):
    """A `ValueError` naming the parameters that set nothing, with the ones that do."""
    unknown = sorted(set(params) - {"gamma"} - set(fields) - set(schedule_fields))
    if unknown:
        raise ValueError(f"sweep parameters {unknown} are not fields of "
                         f"{type(template).__name__} or of its schedule "
                         f"{type(template.schedule).__name__}; a point may set: "
                         f"{['gamma', *fields, *schedule_fields]}")


def _check_ode_points(cols: dict):
    r"""A `ValueError` naming the first bad point: `gamma` must be finite and $\ge 0$ (0 is
    allowed), `batch` finite and $\ge 1$."""
    for name, ok, want in (("gamma", lambda v: np.isfinite(v) & (v >= 0), "finite and >= 0"),
                           ("batch", lambda v: np.isfinite(v) & (v >= 1), "finite and >= 1")):
        if name in cols:
            values = cols[name]
            check(None, ~ok(values), f"sweep point {name} must be {want}",
                  lambda bad: f", got {name} = {float(values[np.argmax(bad)])!r} at point "
                              f"{int(np.argmax(bad))}")


def _check_fields(cols: dict, build, names):
    """Each value of the other axes through the optimizer's (and schedule's) own checks,
    eagerly: a `ValueError` naming the parameter, its value and the point."""
    base = {k: float(v[0]) for k, v in cols.items()}
    for name in names:
        values, first = np.unique(cols[name], return_index=True)
        for value, i in zip(values, first):
            try:
                build({**base, name: float(value)})
            except (TypeError, ValueError) as e:
                raise ValueError(f"sweep point {name} = {float(value)!r} at point {int(i)} is "
                                 f"not valid: {e}") from None


def sweep(fn: Callable, points: dict, *, chunk_size: int = 256, lanes: int = 16,
          order: str | Callable | None = "auto", out: str | Path | None = None,
          resume: bool = False, devices=None, progress: bool | Callable = True) -> dict:
    r"""Evaluate `fn` on every point of `points`, in chunks, sharded across `devices`.

    **Arguments:**

    - `fn`: `params -> outcomes`, both dicts of scalar JAX values; must be `vmap`-able (e.g.
      [`ode_outcomes`][]).
    - `points`: dict name → 1-D array, all of length N (e.g. from [`grid`][]).
    - `chunk_size`: points per compiled call and per saved chunk (rounded up to a multiple of
      the device count).
    - `lanes`: points vectorised together on one device (the `vmap` width; the device runs its
      share of a chunk `lanes` at a time). An adaptive solve under `vmap` takes as many steps
      as its slowest lane, for every lane, so narrow lanes waste less; wider lanes amortise
      the solver's per-step overhead further, but on a CPU past a few dozen points the
      batched quadrature arrays leave the cache (16 suits both; on a GPU use wide lanes).
      Reduced to a divisor of the per-device chunk.
    - `order`: the order points are evaluated in (the returned table is always in the order
      of `points`): `"auto"` uses `fn.sweep_order(points) -> permutation` when `fn` has one
      ([`ode_outcomes`][] sorts by stepsize, then batch), else a lexicographic sort of the
      parameter columns; `None` keeps the given order; a callable `points -> permutation`.
    - `out`: folder for `manifest.json`, `chunks/` and the final `results.csv`; without it
      nothing is written.
    - `resume`: continue a sweep in `out` whose manifest matches these points; finished chunks
      are read back, not recomputed. Without `resume`, an existing sweep in `out` is an error.
    - `devices`: devices for the 1-D mesh (default: all of `jax.devices()`).
    - `progress`: `True` prints chunks done and ETA to stderr; a callable is called as
      `progress(chunk_index, chunks_done, chunks_total)` after each chunk is saved.

    **Returns:** dict of columns (numpy), parameters first, then outcomes, one row per point,
    in the order of `points`.
    """
    names = list(points)
    cols = {k: np.asarray(points[k], dtype=float).ravel() for k in names}
    sizes = {v.size for v in cols.values()}
    if len(sizes) != 1 or 0 in sizes:
        raise ValueError(f"all parameter arrays must have the same non-zero length, got "
                         f"{ {k: v.size for k, v in cols.items()} }")
    n = sizes.pop()
    if hasattr(fn, "check_points"):  # eagerly, with a plain ValueError naming the point
        fn.check_points(cols)
    devices = list(jax.devices() if devices is None else devices)
    n_dev = len(devices)
    chunk_size = int(np.ceil(max(int(chunk_size), 1) / n_dev) * n_dev)
    n_chunks = int(np.ceil(n / chunk_size))
    lanes = _divisor_at_most(chunk_size // n_dev, max(int(lanes), 1))
    perm = _permutation(order, fn, cols, n)
    key = _fingerprint(cols, chunk_size, perm)

    finished: dict[int, dict] = {}
    out = Path(out) if out is not None else None
    if out is not None:
        manifest_path = out / "manifest.json"
        if manifest_path.exists():
            manifest = json.loads(manifest_path.read_text())
            if not resume:
                raise FileExistsError(f"{out} already holds a sweep; pass resume=True "
                                      "(--resume) to continue it, or choose another folder")
            if manifest.get("fingerprint") != key:
                raise ValueError(f"{out} holds a different sweep (other points, chunk size or "
                                 "order); use another folder")
            for c in manifest["finished"]:
                index, rows = _read_chunk(out / "chunks" / f"chunk_{c:05d}.csv")
                if not np.array_equal(index, perm[c * chunk_size:(c + 1) * chunk_size]):
                    raise ValueError(f"{out}: chunk {c} does not hold the points the manifest "
                                     "says; use another folder")
                finished[c] = rows
        (out / "chunks").mkdir(parents=True, exist_ok=True)

    run_chunk = _chunk_function(fn, tuple(devices), lanes)

    start = time.perf_counter()
    done_now = 0
    for c in range(n_chunks):
        if c in finished:
            continue
        lo, hi = c * chunk_size, min((c + 1) * chunk_size, n)
        # A short last chunk is padded with copies of its first (in cost order, cheapest)
        # point, so that lanes of padding finish early.
        idx = perm[np.where(np.arange(lo, lo + chunk_size) < hi, np.arange(lo, lo + chunk_size),
                            lo)]
        batch = {k: jnp.asarray(v[idx]) for k, v in cols.items()}
        result = jax.device_get(run_chunk(batch))
        rows = {k: np.asarray(v)[: hi - lo] for k, v in result.items()}
        finished[c] = rows
        done_now += 1
        if out is not None:
            write_csv(out / "chunks" / f"chunk_{c:05d}.csv", ["index", *sorted(rows)],
                      [[int(perm[lo + i]), *(repr(float(rows[k][i])) for k in sorted(rows))]
                       for i in range(hi - lo)])
            write_json(out / "manifest.json",
                       {"fingerprint": key, "num_points": n, "chunk_size": chunk_size,
                        "num_chunks": n_chunks, "parameters": names,
                        "finished": sorted(finished)})
        _report(progress, c, len(finished), n_chunks, done_now, start)

    outcome_names = sorted(next(iter(finished.values())))
    table = {k: cols[k] for k in names}
    for k in outcome_names:
        column = np.empty(n)
        column[perm] = np.concatenate([finished[c][k] for c in range(n_chunks)])
        table[k] = column
    if out is not None:
        write_csv(out / "results.csv", [*names, *outcome_names],
                  [[repr(float(table[k][i])) for k in (*names, *outcome_names)]
                   for i in range(n)])
    return table


def _lexicographic(cols: dict, first: tuple = ()) -> np.ndarray:
    """The permutation sorting points by the columns named in `first` (those present), then by
    the remaining columns in their order; stable."""
    keys = [k for k in first if k in cols] + [k for k in cols if k not in first]
    return np.lexsort([cols[k] for k in reversed(keys)])


def _permutation(order, fn, cols: dict, n: int) -> np.ndarray:
    if order is None:
        return np.arange(n)
    if order == "auto":
        order = getattr(fn, "sweep_order", _lexicographic)
    elif not callable(order):
        raise ValueError(f"order must be 'auto', None or a callable, got {order!r}")
    perm = np.asarray(order(cols), dtype=np.int64).ravel()
    if perm.shape != (n,) or not np.array_equal(np.sort(perm), np.arange(n)):
        raise ValueError(f"order must return a permutation of range({n})")
    return perm


def _divisor_at_most(n: int, k: int) -> int:
    """The largest divisor of `n` that is at most `k`."""
    return max(d for d in range(1, min(n, k) + 1) if n % d == 0)


_COMPILED: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _chunk_function(fn, devices: tuple, lanes: int):
    """`jit(shard_map(lax.map(vmap(fn), batch_size=lanes)))` over a 1-D mesh of `devices`,
    cached per function so that a second sweep with the same `fn` reuses the compiled chunk."""
    per_fn = _COMPILED.setdefault(fn, {})
    if (devices, lanes) not in per_fn:
        mesh = jax.sharding.Mesh(np.array(devices), ("grid",))
        spec = PartitionSpec("grid")

        def local(params):  # this device's share of the chunk, `lanes` points at a time
            return jax.lax.map(fn, params, batch_size=lanes)

        # check_vma=False: equinox runtime checks (eqx.error_if) inside the solve are not
        # annotated for shard_map's varying-axis analysis; every point is independent anyway.
        per_fn[devices, lanes] = jax.jit(jax.shard_map(local, mesh=mesh, in_specs=spec,
                                                       out_specs=spec, check_vma=False))
    return per_fn[devices, lanes]


def _fingerprint(cols: dict, chunk_size: int, perm: np.ndarray) -> str:
    h = hashlib.sha256(f"v2:{chunk_size}".encode())  # v2: chunks hold permuted points
    for k in sorted(cols):
        h.update(k.encode())
        h.update(np.ascontiguousarray(cols[k]).tobytes())
    h.update(np.ascontiguousarray(perm, dtype=np.int64).tobytes())
    return h.hexdigest()


def _read_chunk(path: Path) -> tuple[np.ndarray, dict]:
    """(indices of the rows in the caller's order, outcome columns) of a saved chunk."""
    data = np.genfromtxt(path, delimiter=",", names=True, dtype=float)
    data = np.atleast_1d(data)
    rows = {k: np.asarray(data[k], dtype=float) for k in data.dtype.names if k != "index"}
    return np.asarray(data["index"], dtype=np.int64), rows


def _report(progress, c, done, total, done_now, start):
    if callable(progress):
        progress(c, done, total)
    elif progress:
        elapsed = time.perf_counter() - start
        eta = elapsed / done_now * (total - done)
        print(f"  sweep: {done}/{total} chunks, {elapsed:.1f} s, ETA {eta:.1f} s",
              file=sys.stderr, flush=True)
