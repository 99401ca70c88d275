"""The loop every simulator shares."""

import sys
import time

import jax
import jax.numpy as jnp


def drive(advance, record, state, steps, ts_np, progress, label: str):
    r"""The loop every simulator shares: advance `state` from iteration to iteration
    (`advance(state, k0, k1)`, jitted, traced bounds so it compiles once), `record(state)` at
    each of `steps`, report progress; returns the records stacked along a time axis 1."""
    records = []
    k = 0
    start, last_report = time.perf_counter(), -1
    for i, k_next in enumerate(steps):
        if k_next > k:
            state = advance(state, jnp.asarray(k), jnp.asarray(int(k_next)))
            k = int(k_next)
        records.append(record(state))
        if callable(progress):
            progress(float(ts_np[i]), float(ts_np[-1]))
        elif progress:
            decile = int(10 * (i + 1) / len(steps))
            if decile > last_report:
                last_report = decile
                print(f"  {label}: t = {ts_np[i]:.4g} / {ts_np[-1]:.4g} "
                      f"({time.perf_counter() - start:.1f} s)", file=sys.stderr, flush=True)
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs, axis=1), *records)
