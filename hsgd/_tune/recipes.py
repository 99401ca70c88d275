r"""How a `hsgd._tune.Predictor` computes its prediction for one
(problem type, optimizer type) pair.

The generic recipe works for every pair with a registered, differentiable `ode` cell: the
prediction is `hsgd.ode(problem, optimizer, ts, **options)` with only the options the caller
set. The built-in pairs keep their own settings, so that their numbers are those they always
were:

- [`Problem`][] × [`SGD`][]: `diffrax.Kvaerno5` with a PID controller (rtol 1e-6, atol 1e-9),
  or for a `LeastSquares` loss the reduced variance ODE ([`least_squares_as_finite`][],
  [`LinearKvaerno5`][]); the critical schedule (SPEC §1);
- [`FiniteProblem`][] × [`SGD`][]: the finite-data ODE at rtol 1e-8 (in epochs; the ODE runs
  at batch 1, which it does not depend on);
- [`FiniteProblem`][] × [`HeavyBall`][]: the exact recursion on integer iterations.

A new optimizer needs nothing here; a recipe is only a faster or more accurate path for a pair.
"""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from .._checks import check_times
from .._dynamics.streaming_sgd import least_squares_as_finite
from .._loss.least_squares import LeastSquares
from .._methods import ode
from .._optimizer import SGD, FeedbackSchedule, HeavyBall
from .._problem import FiniteProblem, Problem

TARGETS = ("risk", "loss")
SETTINGS = ("rtol", "atol", "max_steps", "checkpoints")


def checkpoint_count(max_steps: int, state_size: int, budget: int = 2**21) -> int:
    r"""Checkpoints for `RecursiveCheckpointAdjoint`: `budget // state_size` clipped to
    $[16, \text{max\_steps}]$. With at least as many checkpoints as accepted steps, reverse mode
    re-runs each step once; with diffrax's default ($\approx\sqrt{2\,\text{max\_steps}}$,
    online treeverse) some steps run twice more (see `benchmarks/tune.py`)."""
    return int(min(max(budget // max(int(state_size), 1), 16), int(max_steps)))


def pick(solution, target: str):
    """The predicted curve of `target` ("risk" or "loss") from a [`Solution`][]."""
    return solution.risk if target == "risk" else solution.loss


def resolve_target(problem, target) -> str:
    r"""`target` checked against `problem`: `"risk"` (the population risk; the default when the
    problem has one) or `"loss"` (the training loss $\tfrac12\|Ax - b\|^2$ of a data set)."""
    finite = isinstance(problem, FiniteProblem)
    population = problem.has_population if finite else True
    if target is None:
        return "risk" if population else "loss"
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
    if target == "risk" and not population:
        raise ValueError("target='risk' needs a problem with a population risk (Sigma/x_star "
                         "or a test set); use target='loss'")
    if target == "loss" and not finite:
        raise ValueError(f"target='loss' needs a training set (a hsgd.FiniteProblem); on "
                         f"streaming data ({type(problem).__name__}) the risk is the loss: use "
                         f"target='risk'")
    return target


def noise_floor(problem, target: str) -> float:
    r"""The lowest value of the target: streaming, the risk at $X = X^*$ (needs $m = m^*$);
    finite data, $\min_x R(x)$ (needs a diagonal $S_v$) or $\min_x \tfrac12\|Ax - b\|^2$.
    NaN where unknown."""
    if isinstance(problem, Problem):
        loss = problem.loss
        if loss.m != loss.m_star:
            return float("nan")
        S = problem.B0()[loss.m:, loss.m:]
        return float(loss.risk(jnp.block([[S, S], [S, S]])))
    if not isinstance(problem, FiniteProblem):
        return float("nan")
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


class Recipe:
    r"""The generic recipe: `hsgd.ode(problem, optimizer, times, **options)` with the options
    the caller set (`rtol`, `atol`, `max_steps`; `checkpoints` as
    `adjoint=diffrax.RecursiveCheckpointAdjoint(checkpoints)`; any `ode_options`), on the time
    grid as given. Subclasses override what differs for a pair."""

    settings: tuple = SETTINGS  # the solver settings a caller may set for this pair

    def name(self, problem, optimizer) -> str:
        return f"({type(problem).__name__}, {type(optimizer).__name__})"

    def grid(self, ts) -> np.ndarray:
        """The output times in the cell's clock (checked)."""
        return check_times(ts)

    def check(self, problem, optimizer):
        """Eager checks of the optimizer against the problem (none by default)."""

    def reduced(self, problem, reduced: bool) -> bool:
        """Whether this pair takes a reduced ODE (never by default)."""
        return False

    def resolve(self, given: dict, ode_problem, reduced: bool) -> dict:
        """The solver settings: those given (None: unset)."""
        return dict(given)

    def options(self, pred) -> dict:
        out = {k: getattr(pred, k) for k in ("rtol", "atol", "max_steps")
               if getattr(pred, k) is not None}
        if pred.checkpoints is not None:
            out["adjoint"] = diffrax.RecursiveCheckpointAdjoint(pred.checkpoints)
        return {**out, **pred.ode_options}

    def predict(self, pred, optimizer):
        """The predicted target curve on the grid for `optimizer` (the template with the
        schedule and hyperparameters in)."""
        sol = ode(pred.ode_problem, optimizer, np.asarray(pred.times), **self.options(pred))
        return pick(sol, pred.target)

    def simulation_times(self, pred) -> np.ndarray:
        return np.asarray(pred.times)

    def critical(self, pred, factors, ts):
        raise NotImplementedError(f"the pair {self.name(pred.problem, pred.optimizer)} has no "
                                  f"critical schedule")


class StreamingSGD(Recipe):
    r"""[`Problem`][] × [`SGD`][] (SPEC §1): `diffrax.Kvaerno5` (L-stable, implicit) with a PID
    controller, whose solution is a smooth function of the schedule, so central differences
    can check its gradient (see [`StreamingPredictor`][hsgd.StreamingPredictor]); for a
    `LeastSquares` loss (unless `reduced=False`) the equivalent per-mode variance ODE
    ([`least_squares_as_finite`][]: same risk, to the solver's tolerance) with
    [`LinearKvaerno5`][]. Defaults: rtol 1e-6, atol 1e-9, max_steps 16384, checkpoints
    [`checkpoint_count`][] (diffrax's default on the reduced path)."""

    def grid(self, ts) -> np.ndarray:
        return np.asarray(ts, dtype=float)

    def reduced(self, problem, reduced: bool) -> bool:
        return bool(reduced) and isinstance(problem.loss, LeastSquares)

    def resolve(self, given: dict, ode_problem, reduced: bool) -> dict:
        out = {"rtol": 1e-6, "atol": 1e-9, "max_steps": 16384,
               **{k: v for k, v in given.items() if v is not None}}
        if given.get("checkpoints") is None:
            out["checkpoints"] = (None if reduced else
                                  checkpoint_count(out["max_steps"], ode_problem.V0.size))
        return out

    def controller(self, pred):
        return diffrax.PIDController(rtol=pred.rtol, atol=pred.atol,
                                     dtmin=1e-9 * jnp.maximum(pred.ts[-1], 1.0))

    def predict(self, pred, optimizer):
        adjoint = diffrax.RecursiveCheckpointAdjoint(pred.checkpoints)
        batch = optimizer.batch
        if pred.ode_options.get("finite_d"):
            # SPEC §8's exact finite-d form (PLRF at a flop budget: hsgd.scaling), on the
            # default StructuredKvaerno5: its gradient matches central differences (1e-6) and
            # a solve is ~100x faster than diffrax.Kvaerno5 on the full state
            return ode(pred.ode_problem, optimizer, pred.ts, adjoint=adjoint,
                       max_steps=pred.max_steps, **pred.ode_options).risk
        if pred.reduced:
            reduced = least_squares_as_finite(pred.ode_problem, batch)
            return batch * ode(reduced, SGD(optimizer.schedule), np.asarray(pred.times),
                               rtol=pred.rtol, adjoint=adjoint, max_steps=pred.max_steps,
                               **pred.ode_options).loss
        # The d -> infinity ODE of SPEC §1, as on the reduced path (the two paths predict the
        # same curve; a coarsened instance now keeps its d, which would select SPEC §8's
        # finite-d form here only).
        options = dict(pred.ode_options)
        if isinstance(pred.ode_problem.loss, LeastSquares):
            options.setdefault("finite_d", False)
        return ode(pred.ode_problem, optimizer, pred.ts, solver=diffrax.Kvaerno5(),
                   stepsize_controller=self.controller(pred), max_steps=pred.max_steps,
                   adjoint=adjoint, **options).risk

    def simulation_times(self, pred) -> np.ndarray:
        return np.asarray(pred.ts)

    def critical(self, pred, factors, ts):
        loss = pred.ode_problem.loss
        if loss.m != loss.m_star:
            raise NotImplementedError("the critical learning rate needs m = m* (SPEC §1)")
        factors = jnp.asarray(factors, dtype=pred.ts.dtype)
        ts = jnp.asarray(ts, dtype=pred.ts.dtype)
        return _critical_solves(pred.ode_problem, factors, ts, pred.optimizer.batch,
                                self.controller(pred), pred.max_steps)


class CriticalRate(eqx.Module):
    r"""The rule $\gamma = c\,\max(\gamma_{\rm crit}(B), 0)$ of SPEC §1 for a public
    [`FeedbackSchedule`][]: `factor` $c$ is an array leaf (vmapped over in the baseline)."""

    factor: Array

    def __call__(self, B, state):
        return self.factor * jnp.maximum(state.gamma_crit, 0.0)


@eqx.filter_jit
def _critical_solves(problem, factors, ts, batch, controller, max_steps):
    r"""Risk and learning rate, $(C, T)$ each, of the ODE driven by the feedback
    $\gamma = c\,\gamma_{\rm crit}(B(t))$ (SPEC §1) for each factor $c$: the public cell
    [`ode`][]`(problem, FeedbackSchedule(CriticalRate(c), batch), ts)`. A solve that fails
    (divergence, step budget) gives NaN."""

    def one(c):
        rule = FeedbackSchedule(CriticalRate(c), batch)
        sol = ode(problem, rule, ts, stepsize_controller=controller, max_steps=max_steps)
        bad = sol.diverged | ~jnp.all(jnp.isfinite(sol.risk))
        return jnp.where(bad, jnp.nan, sol.risk), jnp.where(bad, jnp.nan, sol.gamma)

    return jax.vmap(one)(factors)


def _check_batch(problem: FiniteProblem, batch):
    if batch is None:
        return
    b = float(batch)
    if b != int(round(b)) or not 1 <= int(round(b)) <= problem.n:
        raise ValueError(f"batch must be an integer in [1, n = {problem.n}], got {batch!r}")


class FiniteSGD(Recipe):
    r"""[`FiniteProblem`][] × [`SGD`][] (SPEC §2): the per-mode ODE
    ([`LinearKvaerno5`][], stage equations solved exactly) at batch 1 — with the summed batch
    gradient of the simulator, $n/\beta$ steps per epoch carry the same drift and noise as $n$
    single-row steps, so the optimizer's `batch` only sets the SGD check. Defaults: rtol 1e-8,
    max_steps 4096, diffrax's default checkpoints (more do not pay here: a step is cheap;
    2095 checkpoints made the gradient 5.3x a forward solve against 3.4x, `benchmarks/tune.py`).
    """

    def check(self, problem, optimizer):
        _check_batch(problem, optimizer.batch)

    def resolve(self, given: dict, ode_problem, reduced: bool) -> dict:
        defaults = {"rtol": 1e-8, "atol": None, "max_steps": 4096, "checkpoints": None}
        return {k: given[k] if given.get(k) is not None else v for k, v in defaults.items()}

    def predict(self, pred, optimizer):
        adjoint = diffrax.RecursiveCheckpointAdjoint(checkpoints=pred.checkpoints)
        sol = ode(pred.ode_problem, optimizer.replace(batch=1), np.asarray(pred.times),
                  rtol=pred.rtol, atol=pred.atol, adjoint=adjoint, max_steps=pred.max_steps,
                  **pred.ode_options)
        return pick(sol, pred.target)


class FiniteHeavyBall(Recipe):
    r"""[`FiniteProblem`][] × [`HeavyBall`][] (SPEC §3): the exact recursion (one `lax.scan`,
    no solver settings) on **iterations**: interior output times are rounded to integers, the
    horizon must be one."""

    settings = ()

    def grid(self, ts) -> np.ndarray:
        ts_np = check_times(ts)
        ks = np.rint(ts_np).astype(np.int64)
        if abs(ts_np[-1] - ks[-1]) > 1e-9 * max(1.0, ts_np[-1]):
            raise ValueError(f"the horizon of the momentum recursion is an iteration count, got "
                             f"{ts_np[-1]}")  # interior times are rounded to iterations
        if np.any(np.diff(ks) <= 0):
            raise ValueError("ts must round to strictly increasing iterations (use fewer "
                             "output times or a longer horizon)")
        return ks

    def check(self, problem, optimizer):
        _check_batch(problem, optimizer.batch)
        optimizer.fraction(problem.n)

    def predict(self, pred, optimizer):
        sol = ode(pred.ode_problem, optimizer, np.asarray(pred.times), **pred.ode_options)
        return pick(sol, pred.target)


GENERIC = Recipe()
_RECIPES = {(Problem, SGD): StreamingSGD(), (FiniteProblem, SGD): FiniteSGD(),
            (FiniteProblem, HeavyBall): FiniteHeavyBall()}


def recipe_for(problem, optimizer) -> Recipe:
    """The recipe of (type(problem), type(optimizer)): problem types by inheritance, optimizer
    types exactly (as in the registry); [`Recipe`][] (generic) for every other pair."""
    for p in type(problem).__mro__:
        recipe = _RECIPES.get((p, type(optimizer)))
        if recipe is not None:
            return recipe
    return GENERIC
