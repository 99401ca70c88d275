r"""Argument checks that read well both outside and inside `jit`.

Outside a trace (concrete values) a failed check raises a plain `ValueError` whose message is the
sentence naming the problem and the fix. Inside `jit`/`vmap`/`grad` (traced values) the same
check becomes an `equinox.error_if` on the value it guards, which fires when the compiled
program runs; [`plain_errors`][] turns that runtime error back into a `ValueError` that starts
with the same sentence (equinox's own message starts with "Above is the stack outside of
JIT…"), for eager entry points that call jitted internals.

The learning-rate check every solver and simulator shares is [`check_learning_rate`][]:
$\gamma(t)$ must be finite and $\ge 0$ at every checked time ($\gamma = 0$ is legitimate, e.g.
cosine annealing to zero at the horizon).
"""

import contextlib
import functools
import re
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

# Probe points on [0, t_final] at which a schedule is checked, on top of the requested times.
_PROBE_POINTS = 1025


def is_traced(*xs) -> bool:
    """Whether any leaf of `xs` is a JAX tracer (inside `jit`, `vmap`, `grad`)."""
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(xs))


def check(x, bad, message: str, detail: Callable[[np.ndarray], str] | None = None,
          fix: str = ""):
    r"""`x` unchanged, once `bad` (a boolean array, true where the check fails) is all false.

    - `bad` concrete: raises `ValueError(message + detail(mask) + "; " + fix)` at once when any
      entry is true (`detail`, optional, gets the NumPy mask and returns the part naming the bad
      values, e.g. `", got gamma(t = 5) = -4.0"`).
    - `bad` traced: returns `eqx.error_if(x, bad, message + "; " + fix)`, which fires when the
      program runs (`detail` cannot see traced values and is not used).

    Use it on the value the check guards (so the runtime check cannot be optimised away).
    """
    suffix = f"; {fix}" if fix else ""
    if not is_traced(bad):
        mask = np.asarray(bad)
        if np.any(mask):
            raise ValueError(message + ("" if detail is None else detail(mask)) + suffix)
        return x
    return eqx.error_if(x, bad, message + suffix)


def probe_times(ts) -> np.ndarray:
    r"""The times a schedule is checked at: the requested times `ts` and 1025 equally spaced
    points of $[0, \max t]$ (so a negative excursion between record times is caught too)."""
    ts = np.asarray(ts, dtype=float).ravel()
    t_final = float(np.max(ts)) if ts.size else 0.0
    return np.union1d(np.linspace(0.0, t_final, _PROBE_POINTS), ts)


LEARNING_RATE_MESSAGE = "the learning rate must be finite and >= 0 at every time"
LEARNING_RATE_FIX = ("fix the schedule's parameters (a zero learning rate is allowed, e.g. "
                     "annealing to zero)")


def check_learning_rate(schedule, ts, x=None, *, time_name: str = "t"):
    r"""Check $\gamma(t)$ finite and $\ge 0$ at every time of `ts` and return `x` (default:
    the learning rates $\gamma(t)$ on `ts`).

    Concrete schedule and times: a `ValueError` naming the first bad time and value. Traced
    (e.g. `vmap` over a schedule parameter): an `eqx.error_if` on `x`. `time_name` names the
    time in the message (`"t"`, `"epoch"`, `"k"`).
    """
    ts = jnp.asarray(ts)
    if not jnp.issubdtype(ts.dtype, jnp.floating):
        ts = ts.astype(float)
    gammas = jax.vmap(schedule)(ts)
    bad = ~(jnp.isfinite(gammas) & (gammas >= 0))

    def detail(mask):
        i = int(np.argmax(mask))
        return (f", got gamma({time_name} = {float(np.asarray(ts)[i]):.6g}) = "
                f"{float(np.asarray(gammas)[i])!r}")

    return check(gammas if x is None else x, bad, LEARNING_RATE_MESSAGE, detail,
                 LEARNING_RATE_FIX)


_EQX_MESSAGE = re.compile(r"equinox\.EquinoxRuntimeError: (.*?)\n\n-{5,}", re.S)


class CheckError(ValueError, RuntimeError):
    """A check that failed inside `jit`, re-raised by [`plain_errors`][]: a `ValueError`, and
    a `RuntimeError` like the `equinox.EquinoxRuntimeError` it replaces (so code that caught
    that still catches it)."""


def _plain(err: Exception) -> CheckError | None:
    match = _EQX_MESSAGE.search(str(err))
    if match is None:
        return None
    return CheckError(f"{match.group(1).strip()}\n(checked inside jit; for the stack inside "
                      f"jit set EQX_ON_ERROR=breakpoint)")


@contextlib.contextmanager
def plain_errors():
    """Inside this block, an `equinox.EquinoxRuntimeError` from a jitted call is re-raised as a
    [`CheckError`][] (a `ValueError`) that starts with the check's own message. As a decorator:
    [`with_plain_errors`][]."""
    try:
        yield
    except eqx.EquinoxRuntimeError as err:
        plain = _plain(err)
        if plain is None:
            raise
        raise plain from None


def with_plain_errors(fn):
    """Decorator form of [`plain_errors`][] for an eager entry point."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with plain_errors():
            return fn(*args, **kwargs)

    return wrapper


def check_times(ts) -> np.ndarray:
    """`ts` as a float64 NumPy array, checked to be 1-D, non-empty, >= 0 and non-decreasing."""
    ts_np = np.asarray(ts, dtype=float)
    if ts_np.ndim != 1 or ts_np.size == 0 or np.any(ts_np < 0) or np.any(np.diff(ts_np) < 0):
        raise ValueError(f"ts must be a non-empty, non-decreasing 1-D array of times >= 0, "
                         f"got {ts_np}")
    return ts_np


def check_iterations(iterations) -> np.ndarray:
    """`iterations` as int64 NumPy, checked: 1-D, non-empty, integers >= 0, non-decreasing."""
    ks = np.asarray(iterations)
    if ks.ndim != 1 or ks.size == 0 or np.any(ks < 0) or np.any(np.diff(ks) < 0) or not \
            np.all(np.asarray(ks, dtype=float) == np.rint(np.asarray(ks, dtype=float))):
        raise ValueError(f"iterations must be a non-empty, non-decreasing 1-D array of "
                         f"integers >= 0, got {ks}")
    return np.asarray(ks, dtype=np.int64)
