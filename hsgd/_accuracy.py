r"""Error-controlled expectations in a solve (issue 14): the deterministic equivalent of a
streaming problem uses the loss's Gaussian moments $h, J, I, A$ at every step; their quadrature
rule is chosen to meet a tolerance for the loss at hand, and the solution reports the rule's
estimated error along the curve.

This applies to losses whose moments come from the generic quadrature engine (a `quadrature`
field: [`CustomLoss`][hsgd.CustomLoss], [`Softmax`][hsgd.Softmax]). Closed forms and losses with
fixed rules of their own (least squares, phase retrieval, logistic: estimated errors 0 to
$10^{-15}$) have nothing to choose, and `Solution.moment_error` is `None` for them.

1. Before the solve (eagerly, on a concrete problem):
   [`AbstractLoss.refined`][hsgd.AbstractLoss.refined] at $B(0)$ picks a rule meeting `rtol` on
   each moment. The choice is cached per (loss, $B_0$, rtol), so a loop of solves pays it once.
2. After the solve: the estimate $\max_t$
   [`AbstractLoss.moment_error`][hsgd.AbstractLoss.moment_error]$(B(t))$ over the saved times goes
   into `Solution.moment_error`. A rule chosen at a degenerate $B_0$ (e.g.
   $X_0 = 0$) can be good there and poor later; if the maximum exceeds `rtol`, the rule is chosen
   again at the worst $B(t)$ and the solve repeated once. If it still exceeds `rtol`, an
   `ExpectationAccuracyWarning` gives the estimate — never silently.

Inside `jit`/`vmap`/`grad` (a traced problem) there is no Python-level choice: the loss's own
rule is used and `moment_error` is still reported (refine once eagerly before a sweep or a tuning
loop: `problem.replace(loss=problem.loss.refined(problem.B0())[0])`).
"""

import warnings
from collections import OrderedDict

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._checks import is_traced
from ._expectations import ExpectationAccuracyWarning

_CACHE: OrderedDict = OrderedDict()
_CACHE_SIZE = 64


def default_rtol(dtype) -> float:
    """1e-5 on each moment; 1e-4 in float32 (the estimates include rounding error there)."""
    return 1e-4 if jnp.dtype(dtype) == jnp.float32 else 1e-5


def _key(loss, B, rtol):
    leaves, treedef = jax.tree_util.tree_flatten(loss)
    data = tuple(np.asarray(x).tobytes() if eqx.is_array_like(x) else repr(x) for x in leaves)
    return treedef, data, np.asarray(B).tobytes(), float(rtol)


def refined_loss(loss, B, rtol: float):
    """`loss.refined(B, rtol)`, cached; the loss itself when `B` or the loss is traced."""
    if is_traced(loss, B):
        return loss
    try:
        key = _key(loss, B, rtol)
        hash(key)
    except TypeError:  # an unhashable static field: no cache
        return loss.refined(B, rtol)[0]
    if key not in _CACHE:
        _CACHE[key] = loss.refined(B, rtol)[0]
        if len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    _CACHE.move_to_end(key)
    return _CACHE[key]


@eqx.filter_jit
def _errors_along(loss, B):
    return jax.vmap(loss.moment_error)(B)


def with_rule_for(problem, B, rtol):
    """`problem` with its loss's rule chosen at `B` (see `refined_loss`); unchanged for a loss
    without a rule to choose (no `quadrature` field)."""
    if not hasattr(problem.loss, "quadrature"):
        return problem
    loss = refined_loss(problem.loss, B, rtol)
    return problem if loss is problem.loss else eqx.tree_at(lambda p: p.loss, problem, loss)


def controlled(solve, problem, rtol):
    r"""`solve(problem)` with the expectation rule chosen to meet `rtol` (module docstring):
    returns the `Solution` with `moment_error` set. `rtol=None` leaves the rule alone and only
    reports the estimate."""
    original = problem.loss
    if not hasattr(original, "quadrature"):  # closed forms or fixed rules: nothing to choose
        return solve(problem)
    if rtol is not None:
        problem = with_rule_for(problem, problem.B0(), rtol)
    sol = solve(problem)
    if sol.B is None:  # a cell without the moments' B: nothing to check along the curve
        return sol
    errors = _errors_along(problem.loss, jnp.where(jnp.isfinite(sol.B), sol.B, 0.0))
    worst = jnp.max(errors)
    if rtol is None or is_traced(worst):
        return eqx.tree_at(lambda s: s.moment_error, sol, worst, is_leaf=lambda x: x is None)
    if float(worst) > rtol:
        # Choose again, from the loss as given, at the time where the first rule is worst.
        B_worst = sol.B[int(jnp.argmax(errors))]
        again = with_rule_for(eqx.tree_at(lambda p: p.loss, problem, original), B_worst, rtol)
        if again.loss is not original and again.loss is not problem.loss:
            problem, sol = again, solve(again)
            errors = _errors_along(problem.loss, jnp.where(jnp.isfinite(sol.B), sol.B, 0.0))
            worst = jnp.max(errors)
        if float(worst) > rtol:
            warnings.warn(f"the expectations of {type(problem.loss).__name__} are estimated to be "
                          f"off by {float(worst):.2g} (relative) along the solution, above "
                          f"expectation_rtol = {rtol:g}: the risk curve may be off by as much; "
                          f"pass a finer rule (CustomLoss(..., rule=...)) or a looser "
                          f"expectation_rtol", ExpectationAccuracyWarning, stacklevel=3)
    return eqx.tree_at(lambda s: s.moment_error, sol, worst, is_leaf=lambda x: x is None)
