"""The floating dtype of what the constructors build.

An explicit `dtype=` wins; otherwise a floating input keeps its dtype (a float32 array stays
float32, even in a float64 session); anything else (Python numbers and lists, integer arrays)
becomes JAX's default float (float64 once `jax_enable_x64` is set, float32 otherwise).
"""

import jax.numpy as jnp


def as_float(x, dtype=None):
    """`x` as a JAX floating array: of `dtype` when given, else of `x`'s own floating dtype,
    else of JAX's default float."""
    if dtype is not None:
        return jnp.asarray(x, dtype=float_dtype(dtype))
    x = jnp.asarray(x)
    return x if jnp.issubdtype(x.dtype, jnp.floating) else jnp.asarray(x, dtype=float)


def float_dtype(dtype=None):
    """`dtype` checked to be a floating dtype (default: JAX's default float)."""
    dt = jnp.dtype(float) if dtype is None else jnp.dtype(dtype)
    if not jnp.issubdtype(dt, jnp.floating):
        raise ValueError(f"dtype must be a floating dtype such as jnp.float32, got {dtype!r}")
    return jnp.zeros((), dt).dtype  # canonical: float64 becomes float32 without x64
