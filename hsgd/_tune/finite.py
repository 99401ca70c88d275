r"""Predictors for finite data (SPEC §2, §3): multi-pass SGD through the per-mode ODE, and
mini-batch SGD with heavy-ball momentum through its exact second-moment recursion.

Both tune against the **target** `"risk"` (the population risk, default when the problem has
one) or `"loss"` (the training loss $\tfrac12\|Ax - b\|^2$, a sum over the $n$ rows, as in
[`Solution`][]). Neither has a critical schedule: `critical` raises
`NotImplementedError` and [`baselines`][] skips it.
"""

import diffrax
import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .._checks import check_times
from .._methods import ode, simulate
from .._optimizer import SGD, HeavyBall
from .._problem import FiniteProblem
from .predictor import AbstractPredictor

TARGETS = ("risk", "loss")


def _check_problem(problem, name):
    if not isinstance(problem, FiniteProblem):
        raise TypeError(f"{name} needs a hsgd.FiniteProblem, got {type(problem).__name__}")


def _target(problem: FiniteProblem, target) -> str:
    if target is None:
        return "risk" if problem.has_population else "loss"
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
    if target == "risk" and not problem.has_population:
        raise ValueError("target='risk' needs a problem with a population risk (Sigma/x_star "
                         "or a test set); use target='loss'")
    return target


def _no_bins(ode_bins):
    if ode_bins is not None:
        raise ValueError(f"ode_bins applies to streaming problems (hsgd.Problem), not to a "
                         f"FiniteProblem; got ode_bins={ode_bins!r}")


def _floor(problem: FiniteProblem, target: str) -> float:
    r"""The lowest value of the target: $\min_x R(x)$ (needs a diagonal $S_v$; NaN otherwise)
    or $\min_x \tfrac12\|Ax - b\|^2$."""
    lam, w = np.asarray(problem.eigenvalues), np.asarray(problem.counts)
    if target == "loss":
        # L(e) = L_min - delta sum w c e + 1/2 sum w lam e^2, minimised at e = delta c / lam.
        c, delta = np.asarray(problem.x_opt_coords), float(problem.ridge)
        pos = lam > 0
        drop = 0.5 * np.sum(np.where(pos, w * (delta * c) ** 2 / np.where(pos, lam, 1.0), 0.0))
        return float(problem.loss_min) - float(drop)
    S = np.asarray(problem.risk_hessian)
    if S.ndim != 1:
        return float("nan")
    g = np.asarray(problem.risk_gradient)
    if np.any((S <= 0) & (g != 0)):
        return float("nan")
    pos = S > 0
    return float(problem.risk_min) - 0.5 * float(np.sum(np.where(pos, w * g**2
                                                                 / np.where(pos, S, 1.0), 0.0)))


class FinitePredictor(AbstractPredictor):
    r"""Multi-pass SGD on finite least squares (SPEC §2): the per-mode ODE of
    `hsgd._dynamics.finite_sgd.ode` ([`LinearKvaerno5`][], stage equations solved exactly)
    predicts, the SGD simulator over the rows of $A$ checks.

    Time is in **epochs** ($t = k\beta/n$); the horizon `ts[-1]` is a budget in passes over the
    data. The ODE does not depend on the batch size $\beta$ (with the summed batch gradient of
    `hsgd._simulate.finite_sgd`, $n/\beta$ steps per epoch carry the same drift and noise as $n$
    single-row steps), so no scalar is tunable: `bounds()` is empty and `batch` only sets the
    SGD check.

    **Arguments:**

    - `problem`: a [`FiniteProblem`][] (with data for the SGD check).
    - `ts`: output epochs, increasing, from 0; `target`: `"risk"` or `"loss"` (default: the
      population risk when the problem has one, else the training loss).
    - `batch`: rows per SGD step for the check.
    - `rtol`, `atol`, `max_steps`: of the ODE (default rtol $10^{-8}$: far below SGD's
      fluctuations); `checkpoints`: of diffrax's `RecursiveCheckpointAdjoint` for the
      gradient (default None: diffrax's $\approx\sqrt{2\,\text{max\_steps}}$. Unlike the
      streaming predictor, more does not pay here: a [`LinearKvaerno5`][] step is cheap, and
      2095 checkpoints made the gradient 5.3x a forward solve against 3.4x with the default,
      `benchmarks/tune.py`).
    """

    problem: FiniteProblem
    ts: Float[Array, " T"]
    times: tuple = eqx.field(static=True)
    target: str = eqx.field(static=True)
    batch: int = eqx.field(static=True)
    rtol: float = eqx.field(static=True)
    atol: float | None = eqx.field(static=True)
    max_steps: int = eqx.field(static=True)
    checkpoints: int | None = eqx.field(static=True)

    def __init__(self, problem: FiniteProblem, ts, *, target: str | None = None, batch=1,
                 rtol=1e-8, atol=None, max_steps: int = 4096, checkpoints: int | None = None,
                 ode_bins=None):
        _check_problem(problem, "FinitePredictor")
        _no_bins(ode_bins)
        self.problem = problem
        ts_np = check_times(ts)
        self.times = tuple(map(float, ts_np))
        self.ts = jnp.asarray(ts_np, dtype=problem.eigenvalues.dtype)
        self.target = _target(problem, target)
        if float(batch) != int(round(float(batch))) or not 1 <= int(round(float(batch))) <= \
                problem.n:
            raise ValueError(f"batch must be an integer in [1, n = {problem.n}], got {batch!r}")
        self.batch = int(round(float(batch)))
        self.rtol = float(rtol)
        self.atol = None if atol is None else float(atol)
        self.max_steps = int(max_steps)
        self.checkpoints = None if checkpoints is None else int(checkpoints)

    def solve(self, schedule):
        """The [`Solution`][] of the ODE for `schedule` on `ts`."""
        adjoint = diffrax.RecursiveCheckpointAdjoint(checkpoints=self.checkpoints)
        return ode(self.problem, SGD(schedule), np.asarray(self.times), rtol=self.rtol,
                   atol=self.atol, adjoint=adjoint, max_steps=self.max_steps)

    def __call__(self, schedule, hyperparameters: dict) -> Float[Array, " T"]:
        if hyperparameters:
            raise ValueError(f"the finite-data ODE has no tunable scalars, got "
                             f"{sorted(hyperparameters)}")
        sol = self.solve(schedule)
        return sol.risk if self.target == "risk" else sol.loss

    def bounds(self) -> dict[str, tuple[float, float]]:
        return {}

    def simulate(self, schedule, hyperparameters: dict, key, num_runs: int) -> np.ndarray:
        res = simulate(self.problem, SGD(schedule, batch=self.batch), np.asarray(self.times),
                       key, num_runs=num_runs)
        return np.asarray(res.risk if self.target == "risk" else res.loss)

    def critical(self, factors, ts):
        raise NotImplementedError("finite-data SGD has no critical schedule")

    def floor(self) -> float:
        return _floor(self.problem, self.target)


class MomentumPredictor(AbstractPredictor):
    r"""Mini-batch SGD with heavy-ball momentum on finite least squares (SPEC §3): the exact
    per-mode recursion [`hsgd.ode`][] on [`HeavyBall`][] (one `lax.scan`)
    predicts, [`hsgd.simulate`][] checks.

    Time is in **iterations** $k$ (the recursion's own clock, and the schedule is
    $\gamma_k$ on the summed batch gradient): `ts` are iteration counts (rounded to integers)
    and the horizon `ts[-1]` is an iteration budget. Tunable scalars (`bounds()`):
    `momentum` $\Delta\in(0, \Delta_{\max})$ and `batch_fraction` $\zeta\in(1/n, 1)$, each
    through a sigmoid of a raw parameter (every raw value admissible). At a fixed
    *iteration* budget a larger batch only lowers the noise, so a tuned `batch_fraction`
    runs to its upper bound; tune it only with that in mind.

    **Arguments:**

    - `problem`: a [`FiniteProblem`][]; `ts`: output iterations (non-negative, increasing).
    - `target`: `"risk"` or `"loss"` as for [`FinitePredictor`][].
    - `batch` (rows per step, default 1) or `batch_fraction` $\zeta$ (exclusive; the SGD
      check runs $\operatorname{round}(\zeta n)$ rows).
    - `momentum` $\Delta\in[0, 1)$ (default 0); `max_momentum`: upper bound when tuned.
    """

    problem: FiniteProblem
    ts: Float[Array, " T"]
    iterations: tuple = eqx.field(static=True)
    target: str = eqx.field(static=True)
    batch_fraction: float = eqx.field(static=True)
    momentum: float = eqx.field(static=True)
    max_momentum: float = eqx.field(static=True)

    def __init__(self, problem: FiniteProblem, ts, *, target: str | None = None, batch=None,
                 batch_fraction=None, momentum=0.0, max_momentum=0.99, ode_bins=None):
        _check_problem(problem, "MomentumPredictor")
        _no_bins(ode_bins)
        ts_np = check_times(ts)
        ks = np.rint(ts_np).astype(np.int64)
        if abs(ts_np[-1] - ks[-1]) > 1e-9 * max(1.0, ts_np[-1]):
            raise ValueError(f"the horizon of the momentum recursion is an iteration count, got "
                             f"{ts_np[-1]}")  # interior times are rounded to iterations
        if np.any(np.diff(ks) <= 0):
            raise ValueError("ts must round to strictly increasing iterations (use fewer "
                             "output times or a longer horizon)")
        self.problem = problem
        self.iterations = tuple(map(int, ks))
        self.ts = jnp.asarray(ks, dtype=problem.eigenvalues.dtype)
        self.target = _target(problem, target)
        if batch is not None and batch_fraction is not None:
            raise ValueError("pass at most one of batch and batch_fraction")
        if batch_fraction is None:
            b = 1.0 if batch is None else float(batch)
            if b != int(b) or not 1 <= b <= problem.n:
                raise ValueError(f"batch must be an integer in [1, n = {problem.n}], got "
                                 f"{batch!r}")
            batch_fraction = b / problem.n
        self.batch_fraction = float(batch_fraction)
        if not 0 < self.batch_fraction <= 1:
            raise ValueError(f"batch_fraction must be in (0, 1], got {batch_fraction!r}")
        self.momentum = float(momentum)
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
        self.max_momentum = float(max_momentum)
        if not 0 < self.max_momentum < 1:
            raise ValueError(f"max_momentum must be in (0, 1), got {max_momentum!r}")

    def _scalars(self, hyperparameters):
        unknown = set(hyperparameters) - {"momentum", "batch_fraction"}
        if unknown:
            raise ValueError(f"unknown hyperparameters {sorted(unknown)}; tunable: "
                             f"['batch_fraction', 'momentum']")
        return (hyperparameters.get("momentum", self.momentum),
                hyperparameters.get("batch_fraction", self.batch_fraction))

    def solve(self, schedule, hyperparameters: dict | None = None):
        """The [`Solution`][] for `schedule` (and the scalars) on `ts`."""
        momentum, zeta = self._scalars(hyperparameters or {})
        return ode(self.problem, HeavyBall(schedule, momentum, batch_fraction=zeta),
                   np.asarray(self.iterations))

    def __call__(self, schedule, hyperparameters: dict) -> Float[Array, " T"]:
        sol = self.solve(schedule, hyperparameters)
        return sol.risk if self.target == "risk" else sol.loss

    def bounds(self) -> dict[str, tuple[float, float]]:
        return {"momentum": (0.0, self.max_momentum),
                "batch_fraction": (1.0 / self.problem.n, 1.0)}

    def simulate(self, schedule, hyperparameters: dict, key, num_runs: int) -> np.ndarray:
        momentum, zeta = self._scalars(hyperparameters)
        batch = int(np.clip(round(float(zeta) * self.problem.n), 1, self.problem.n))
        res = simulate(self.problem, HeavyBall(schedule, float(momentum), batch=batch),
                       np.asarray(self.iterations), key, num_runs=num_runs)
        return np.asarray(res.risk if self.target == "risk" else res.loss)

    def critical(self, factors, ts):
        raise NotImplementedError("SGD with momentum has no critical schedule")

    def floor(self) -> float:
        return _floor(self.problem, self.target)
