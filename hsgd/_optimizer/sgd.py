"""Plain (mini-batch) SGD."""


from .._problem import Problem
from .._schedule import AbstractSchedule, as_schedule
from .base import AbstractOptimizer, checked_batch


class SGD(AbstractOptimizer):
    r"""Mini-batch stochastic gradient descent.

    Streaming data ([`Problem`][], SPEC §1): $X_{k+1} = X_k - \frac{\gamma(k/d)}{d\beta}
    \sum_{i\in\mathcal B_k}\nabla_X f(X_k; a_i, \epsilon_i)$ (fresh samples every step, time
    $t = k/d$). Finite data ([`FiniteProblem`][], SPEC §2): $x_{k+1} = x_k -
    \frac{\gamma(t_k)}{\beta}\cdot\frac{n}{n}\sum_{i\in\mathcal B_k}\nabla f_i(x_k)$ over the
    rows, time in epochs $t = k\beta/n$ (see [`simulate`][] for the exact step).

    **Arguments:**

    - `schedule`: the learning rate $\gamma(t)\ge 0$ — a float, an [`AbstractSchedule`][] or a
      callable $t\mapsto\gamma$.
    - `batch`: $\beta\ge 1$ samples per step (gradients averaged). A number (an integer for the
      simulators); continuous in the streaming ODE, so it may be an array leaf there.

    Example: `hsgd.ode(problem, hsgd.SGD(hsgd.Cosine(1.0, 10.0), batch=4), ts)`; a bare
    schedule `hsgd.ode(problem, 0.5, ts)` means `SGD(0.5)`.
    """

    schedule: AbstractSchedule
    batch: object = 1

    def __init__(self, schedule, batch=1):
        self.schedule = as_schedule(schedule)
        self.batch = checked_batch(batch)

    def tunable(self, problem) -> dict[str, tuple[float, float]]:
        r"""`batch` $\beta\in(1, 256)$ on a streaming [`Problem`][] (the ODE's noise term is
        $\gamma^2/\beta$, continuous in $\beta$); nothing on finite data (the ODE in epochs
        does not depend on $\beta$)."""
        return {"batch": (1.0, 256.0)} if isinstance(problem, Problem) else {}

    def for_simulation(self, problem) -> "SGD":
        """`batch` rounded to the nearest integer (a tuned or vmapped batch is a float)."""
        batch = int(round(float(self.batch)))
        return self if isinstance(self.batch, int) else self.replace(batch=batch)
