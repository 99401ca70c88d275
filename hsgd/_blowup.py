"""Divergence bookkeeping shared by every solver and simulator.

A curve has diverged from the first recorded time at which it was flagged bad (non-finite, past
a blow-up bound, or the solve stopped); from then on its values are reported as NaN and the
divergence time is that first bad time (inf when it never happened).
"""

import jax.numpy as jnp


def after_first(ts, bad):
    r"""`bad` $(\dots, T)$ → (`mask`, `diverged`, `divergence_time`): `mask` is true from the
    first bad time on (along the last axis), `divergence_time` is `ts` there (inf if none)."""
    mask = jnp.cumsum(bad, axis=-1) > 0
    diverged = jnp.any(mask, axis=-1)
    divergence_time = jnp.where(diverged, ts[jnp.argmax(mask, axis=-1)], jnp.inf)
    return mask, diverged, divergence_time


def nan_where(mask, x):
    """`x` with NaN wherever `mask` $(\\dots, T)$ is set; `x` may have trailing axes."""
    mask = mask.reshape(mask.shape + (1,) * (x.ndim - mask.ndim))
    return jnp.where(mask, jnp.nan, x)
