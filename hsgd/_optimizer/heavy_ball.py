"""Mini-batch SGD with heavy-ball momentum."""

import numpy as np

from .._checks import is_traced
from .._schedule import AbstractSchedule, as_schedule
from .base import AbstractOptimizer


def check_momentum(momentum):
    r"""`momentum` $\Delta$ unchanged; a `ValueError` naming the value unless $0\le\Delta<1$
    (checked eagerly when concrete; inside `jit`/`vmap` the check is an `eqx.error_if` in the
    solver)."""
    if not is_traced(momentum):
        value = np.asarray(momentum, dtype=float)
        if value.ndim != 0 or not (0.0 <= float(value) < 1.0):
            raise ValueError(f"momentum must be a number in [0, 1), got momentum={momentum!r}")
    return momentum


class HeavyBall(AbstractOptimizer):
    r"""Mini-batch SGD with heavy-ball momentum (SPEC §3), on a [`FiniteProblem`][]:

    $$x_{k+1} = x_k - \gamma_k\Big(\sum_{i\in\mathcal B_k}\nabla f_i(x_k) + \zeta\delta x_k
    \Big) + \Delta(x_k - x_{k-1}),$$

    the batch gradient **summed** over $\beta$ rows drawn without replacement, $\zeta = \beta/n$,
    and time the **iteration** $k$ (the schedule is a function of $k$; `ts` are iterations).

    **Arguments:**

    - `schedule`: $\gamma_k\ge 0$ — a float, an [`AbstractSchedule`][] or a callable
      $k\mapsto\gamma$ (the iteration is passed as a float).
    - `momentum`: $\Delta\in[0, 1)$ (an array leaf: `vmap`, `grad` and `tune` go through it).
    - `batch`: $\beta\in[1, n]$ rows per step, or `batch_fraction` $\zeta = \beta/n\in(0, 1]$
      (continuous, e.g. for `vmap` over $\zeta$; the deterministic recursion only): exactly one.

    Example: `hsgd.ode(problem, hsgd.HeavyBall(0.02, momentum=0.9, batch=300),
    jnp.arange(0, 2001, 100))`.
    """

    schedule: AbstractSchedule
    momentum: object = 0.0
    batch: object = None
    batch_fraction: object = None

    def __init__(self, schedule, momentum=0.0, batch=None, batch_fraction=None):
        self.schedule = as_schedule(schedule)
        self.momentum = check_momentum(momentum)
        if (batch is None) == (batch_fraction is None):
            raise ValueError("HeavyBall takes exactly one of batch (rows per step) and "
                             "batch_fraction (rows per step / n)")
        if batch is not None and not is_traced(batch) and not (
                np.ndim(batch) == 0 and float(batch) == int(batch) and int(batch) >= 1):
            raise ValueError(f"batch must be an integer >= 1, got batch={batch!r}")
        if batch_fraction is not None and not is_traced(batch_fraction) and not (
                np.ndim(batch_fraction) == 0 and 0.0 < float(batch_fraction) <= 1.0):
            raise ValueError(f"batch_fraction must be in (0, 1], got "
                             f"batch_fraction={batch_fraction!r}")
        self.batch = int(batch) if batch is not None and not is_traced(batch) else batch
        self.batch_fraction = batch_fraction

    def fraction(self, n: int):
        r"""$\zeta = \beta/n$ on a data set of $n$ rows (a `ValueError` when $\beta > n$)."""
        if self.batch_fraction is not None:
            return self.batch_fraction
        if not is_traced(self.batch) and int(self.batch) > n:
            raise ValueError(f"batch must be an integer between 1 and n = {n}, got "
                             f"batch={self.batch!r}")
        return self.batch / n

    def replace(self, **changes) -> "HeavyBall":
        """A copy with the given fields changed; setting one of `batch` and `batch_fraction`
        (to a value) clears the other, e.g. `HeavyBall(0.1, 0.5, batch=8).replace(
        batch_fraction=0.05)`."""
        if changes.get("batch_fraction") is not None and "batch" not in changes:
            changes["batch"] = None
        elif changes.get("batch") is not None and "batch_fraction" not in changes:
            changes["batch_fraction"] = None
        return super().replace(**changes)

    @property
    def label(self) -> str:
        return "SGD+M"

    def tunable(self, problem) -> dict[str, tuple[float, float]]:
        r"""`momentum` $\Delta\in(0, 0.99)$ and `batch_fraction` $\zeta\in(1/n, 1)$ (the
        recursion is differentiable in both)."""
        return {"momentum": (0.0, 0.99), "batch_fraction": (1.0 / problem.n, 1.0)}

    def for_simulation(self, problem) -> "HeavyBall":
        r"""With `batch_fraction` $\zeta$: `batch` $= \operatorname{round}(\zeta n)$ in
        $[1, n]$ rows instead (the simulator draws whole rows); unchanged otherwise."""
        if self.batch_fraction is None:
            return self
        n = problem.n
        batch = int(np.clip(round(float(self.batch_fraction) * n), 1, n))
        return HeavyBall(self.schedule, self.momentum, batch=batch)
