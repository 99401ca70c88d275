r"""What `tune` differentiates: a *predictor* maps (schedule, scalar hyperparameters) to the
predicted risk on a fixed time grid ending at the horizon (SPEC §4).

A predictor also knows how to run the real optimiser it predicts (for the SGD check), its theory
baseline (the critical schedule, SPEC §1) and its noise floor. [`StreamingPredictor`][] wraps
the one-pass ODE (`hsgd.ode`, any loss); [`FinitePredictor`][] and [`MomentumPredictor`][]
(`hsgd._tune.finite`) the finite-data ODE and the SGD+M recursion. Another dynamics plugs in by
subclassing [`AbstractPredictor`][] and adding one branch to [`predictor_for`][].
"""

import abc

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .._dynamics.streaming_sgd import _observe, drift, least_squares_as_finite
from .._loss.least_squares import LeastSquares
from .._methods import ode, simulate
from .._optimizer import SGD
from .._problem import FiniteProblem, Problem


class AbstractPredictor(eqx.Module):
    r"""Predicted risk of an optimiser as a differentiable function of its schedule.

    - `ts`: the output times, increasing, `ts[-1]` = the horizon (the budget).
    - `__call__(schedule, hyperparameters)`: the predicted risk on `ts`, shape `(T,)`, NaN from
      the first time the dynamics blew up; differentiable in the schedule's array leaves and
      the hyperparameter values (a dict name → scalar).
    - `bounds()`: name → (low, high) of the scalar hyperparameters that may be tuned jointly.
    - `simulate(schedule, hyperparameters, key, num_runs)`: the real optimiser's risk on `ts`,
      shape `(num_runs, T)` (NumPy).
    - `critical(factors, ts)`: risk and learning rate on the times `ts`, shape `(C, T)` each, of the
      feedback schedule $\gamma_t = c\,\gamma_{\rm crit}(t)$ for each $c$ in `factors`; raises
      `NotImplementedError` where the dynamics have no critical rate.
    - `floor()`: the noise floor of the risk (the risk at the optimum), NaN if unknown.
    """

    ts: eqx.AbstractVar[Float[Array, " T"]]

    @abc.abstractmethod
    def __call__(self, schedule, hyperparameters: dict) -> Float[Array, " T"]:
        ...

    @abc.abstractmethod
    def bounds(self) -> dict[str, tuple[float, float]]:
        ...

    @abc.abstractmethod
    def simulate(self, schedule, hyperparameters: dict, key, num_runs: int) -> np.ndarray:
        ...

    @abc.abstractmethod
    def critical(self, factors, ts) -> tuple[Array, Array]:
        ...

    @abc.abstractmethod
    def floor(self) -> float:
        ...


def checkpoint_count(max_steps: int, state_size: int, budget: int = 2**21) -> int:
    r"""Checkpoints for `RecursiveCheckpointAdjoint`: `budget // state_size` clipped to
    $[16, \text{max\_steps}]$. With at least as many checkpoints as accepted steps, reverse mode
    re-runs each step once; with diffrax's default ($\approx\sqrt{2\,\text{max\_steps}}$,
    online treeverse) some steps run twice more (see `benchmarks/tune.py`)."""
    return int(min(max(budget // max(int(state_size), 1), 16), int(max_steps)))


class StreamingPredictor(AbstractPredictor):
    r"""One-pass SGD on any loss (SPEC §1): the risk from `hsgd.ode`, SGD from `hsgd.simulate`.

    The ODE is integrated with `diffrax.Kvaerno5` (L-stable, implicit) and a PID controller,
    whose solution is a smooth function of the schedule, so central differences can check its
    gradient. With the explicit default of `hsgd.ode` (Tsit5) on stiff spectra
    ($\gamma\lambda_{\max}\gg 1$) the adaptive solver runs at its stability limit and the
    accepted steps change discontinuously with the parameters: the *central differences* of the
    Tsit5 solution are then wrong (measured, power law $\alpha = 1$, $\gamma_0\lambda_{\max} =
    196$: off by up to a factor 25, wrong signs), while reverse mode through Tsit5 (step sizes
    frozen by diffrax's `stop_gradient`) stays within 0.4% of the Kvaerno5 gradient.

    **Arguments:**

    - `problem`: a [`Problem`][] with an instance (for the SGD check).
    - `ts`: output times; the horizon is `ts[-1]` ($t = k/d$, an iteration budget).
    - `batch`: mini-batch size $\beta$ (a float in the ODE; rounded for SGD).
    - `ode_bins`: coarsen the spectrum to this many bins for the ODE (None: exact modes).
    - `max_batch`: upper bound when the batch is tuned jointly. At a fixed iteration budget the
      ODE's noise term $\gamma^2/\beta$ falls with $\beta$, so a tuned batch goes to this bound;
      at a fixed *sample* budget the ODE depends on $\gamma/\beta$ only (substitute
      $s = \beta t$), so batch and stepsize cannot be tuned separately there.
    - `rtol`, `atol`, `max_steps`: for the ODE solver (default rtol 1e-6: the ODE's error is
      then far below the $O(d^{-1/2})$ fluctuations of SGD it predicts).
    - `checkpoints`: of diffrax's `RecursiveCheckpointAdjoint` for the gradient. Default
      [`checkpoint_count`][]: as many as a budget of $2^{21}$ state-sized copies allows (up to
      `max_steps`), so reverse mode re-runs each step once; diffrax's default,
      $\approx\sqrt{2\,\text{max\_steps}}$ checkpoints placed online, re-runs some twice.
      (On the reduced least-squares path the default is diffrax's: its steps are cheap.)
    - `reduced`: for a `LeastSquares` loss, integrate the equivalent per-mode variance ODE
      ([`least_squares_as_finite`][]: same risk, to the solver's tolerance) with
      [`LinearKvaerno5`][], whose stages are solved exactly (default True; False: Kvaerno5 on
      the full ODE, as for every other loss).
    """

    problem: Problem
    ode_problem: Problem
    ts: Float[Array, " T"]
    batch: float = eqx.field(static=True)
    max_batch: float = eqx.field(static=True)
    rtol: float = eqx.field(static=True)
    atol: float = eqx.field(static=True)
    max_steps: int = eqx.field(static=True)
    checkpoints: int | None = eqx.field(static=True)
    reduced: bool = eqx.field(static=True)
    times: tuple = eqx.field(static=True)

    def __init__(self, problem: Problem, ts, *, batch=1.0, ode_bins: int | None = None,
                 max_batch=256.0, rtol=1e-6, atol=1e-9, max_steps=16384,
                 checkpoints: int | None = None, reduced: bool = True):
        if not isinstance(problem, Problem):
            raise TypeError(f"StreamingPredictor needs a hsgd.Problem, got "
                            f"{type(problem).__name__}")
        self.problem = problem
        self.ode_problem = problem.coarsen(int(ode_bins)) if ode_bins else problem
        self.ts = jnp.asarray(ts, dtype=problem.V0.dtype)
        self.times = tuple(map(float, np.asarray(ts, dtype=float)))
        self.reduced = bool(reduced) and isinstance(problem.loss, LeastSquares)
        self.batch = float(batch)
        if not self.batch >= 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        self.max_batch = float(max_batch)
        self.rtol, self.atol, self.max_steps = float(rtol), float(atol), int(max_steps)
        if checkpoints is not None:
            self.checkpoints = int(checkpoints)
        else:
            self.checkpoints = (None if self.reduced else
                                checkpoint_count(self.max_steps, self.ode_problem.V0.size))

    def _controller(self):
        return diffrax.PIDController(rtol=self.rtol, atol=self.atol,
                                     dtmin=1e-9 * jnp.maximum(self.ts[-1], 1.0))

    def __call__(self, schedule, hyperparameters: dict) -> Float[Array, " T"]:
        batch = hyperparameters.get("batch", self.batch)
        adjoint = diffrax.RecursiveCheckpointAdjoint(self.checkpoints)
        if self.reduced:
            reduced = least_squares_as_finite(self.ode_problem, batch)
            return batch * ode(reduced, SGD(schedule), np.asarray(self.times),
                               rtol=self.rtol, adjoint=adjoint, max_steps=self.max_steps).loss
        return ode(self.ode_problem, SGD(schedule, batch), self.ts, solver=diffrax.Kvaerno5(),
                   stepsize_controller=self._controller(), max_steps=self.max_steps,
                   adjoint=adjoint).risk

    def bounds(self) -> dict[str, tuple[float, float]]:
        return {"batch": (1.0, self.max_batch)}

    def simulate(self, schedule, hyperparameters: dict, key, num_runs: int) -> np.ndarray:
        batch = int(round(float(hyperparameters.get("batch", self.batch))))
        if self.problem.X_star is None:
            raise ValueError("the SGD check needs a problem with an instance (X_star, X0): "
                             "build it with Problem.random or Problem.from_arrays")
        res = simulate(self.problem, SGD(schedule, batch), np.asarray(self.ts), key,
                       num_runs=num_runs)
        return np.asarray(res.risk)

    def critical(self, factors, ts) -> tuple[Array, Array]:
        loss = self.ode_problem.loss
        if loss.m != loss.m_star:
            raise NotImplementedError("the critical learning rate needs m = m* (SPEC §1)")
        factors = jnp.asarray(factors, dtype=self.ts.dtype)
        ts = jnp.asarray(ts, dtype=self.ts.dtype)
        fn = jax.vmap(lambda c: _critical_solve(self.ode_problem, c, ts, self.batch,
                                                self._controller(), self.max_steps))
        return fn(factors)

    def floor(self) -> float:
        loss, prob = self.ode_problem.loss, self.ode_problem
        if loss.m != loss.m_star:
            return float("nan")
        S = prob.B0()[loss.m:, loss.m:]
        return float(loss.risk(jnp.block([[S, S], [S, S]])))


@eqx.filter_jit
def _critical_solve(problem, factor, ts, batch, controller, max_steps):
    r"""The ODE driven by the feedback $\gamma = c\,\gamma_{\rm crit}(B(t))$ (SPEC §1), which
    depends on the state, not on $t$ alone: its own vector field, built from `drift`."""
    beta = jnp.asarray(batch, ts.dtype)

    def gamma_of(V):
        g = _observe(problem, V, jnp.zeros((), V.dtype), beta, {})["gamma_crit"]
        return factor * jnp.maximum(g, 0.0)

    def vector_field(t, V, args):
        return drift(problem, V, gamma_of(V), beta)

    def save(t, V, args):
        g = gamma_of(V)
        return _observe(problem, V, g, beta, {})["risk"], g

    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(vector_field), diffrax.Kvaerno5(), t0=0.0, t1=ts[-1], dt0=None,
        y0=problem.V0, saveat=diffrax.SaveAt(ts=ts, fn=save), stepsize_controller=controller,
        max_steps=max_steps, throw=False)
    ok = sol.result == diffrax.RESULTS.successful
    risk, gamma = sol.ys
    return jnp.where(ok, risk, jnp.nan), jnp.where(ok, gamma, jnp.nan)


def predictor_for(problem, ts, *, dynamics: str | None = None, **kwargs) -> AbstractPredictor:
    """The predictor for `problem` on times `ts` (an [`AbstractPredictor`][] is returned as is).

    - a [`Problem`][]: [`StreamingPredictor`][] (one-pass SGD, any loss; `ts` in $k/d$);
    - a [`FiniteProblem`][]: [`FinitePredictor`][] (multi-pass SGD, the ODE; `ts` in epochs),
      or with `dynamics="momentum"` [`MomentumPredictor`][] (SGD+M, the recursion; `ts` in
      iterations).

    `kwargs` go to the predictor. To add a dynamics: subclass [`AbstractPredictor`][] and add
    a branch here.
    """
    from .finite import FinitePredictor, MomentumPredictor

    if isinstance(problem, AbstractPredictor):
        return problem
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    if isinstance(problem, FiniteProblem):
        if dynamics in (None, "ode"):
            return FinitePredictor(problem, ts, **kwargs)
        if dynamics == "momentum":
            return MomentumPredictor(problem, ts, **kwargs)
        raise ValueError(f"dynamics must be 'ode' or 'momentum' for a FiniteProblem, got "
                         f"{dynamics!r}")
    if dynamics not in (None, "ode"):
        raise ValueError(f"dynamics={dynamics!r} needs a FiniteProblem")
    if isinstance(problem, Problem):
        return StreamingPredictor(problem, ts, **kwargs)
    raise TypeError(f"no predictor for a problem of type {type(problem).__name__}; pass a "
                    f"hsgd.Problem, a hsgd.FiniteProblem or an AbstractPredictor")
