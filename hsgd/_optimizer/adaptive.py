r"""Adaptive stepsizes as state feedback (SPEC §10): AdaGrad-Norm, the Polyak and exact
line-search oracles, and a user rule.

Each is one-pass SGD, $X_{k+1} = X_k - (\Gamma_k/d)\,G_k$ with $G_k$ the mini-batch mean of
$a\otimes\nabla_xf$, whose stepsize $\Gamma_k$ is a function of what the run has seen. In high
dimension $\Gamma_k$ concentrates on a deterministic function $\Gamma(t)$ of the
low-dimensional summary $B(t)$ and of a few accumulated scalars, so [`ode`][] predicts both the
risk curve and the learning-rate curve (`Solution.gamma`).
"""

import dataclasses
from collections.abc import Callable
from typing import NamedTuple

import equinox as eqx
import jax.numpy as jnp
import numpy as np

from .._checks import is_traced
from .._loss import LeastSquares, Logistic, PhaseRetrieval, Softmax
from .._registry import UnsupportedError
from .._schedule import AbstractSchedule, as_schedule
from .base import AbstractOptimizer, checked_batch


class FeedbackState(NamedTuple):
    r"""What a feedback rule sees at time $t$ (the ODE's deterministic state, or one run's
    current iterate in [`simulate`][] and [`sde`][]).

    - `t`: the time $k/d$; `B` $(p, p)$: $W^\top KW$; `moments`: the loss's [`Moments`][]
      $h, J, I, A$ at $B$; `aux` $(k,)$: the rule's auxiliary scalars (AdaGrad-Norm: $S$);
    - `batch` $\beta$; `mean_eigenvalue` $\operatorname{tr}K/d$; `mean_square_eigenvalue`
      $\operatorname{tr}K^2/d$;
    - `grad_norm2`: $\|\nabla R\|^2 = \operatorname{tr}(J\,W^\top K^2W\,J^\top)$ (needs
      $W^\top K^2W$: NaN unless the rule declares `uses_B2`);
    - `h_star`: the minimal risk (NaN unless the rule needs it).
    """

    t: object
    B: object
    moments: object
    aux: object
    batch: object
    mean_eigenvalue: object
    mean_square_eigenvalue: object
    grad_norm2: object
    h_star: object

    @property
    def risk(self):
        """$h(B)$."""
        return self.moments.h

    @property
    def gamma_crit(self):
        r"""The critical learning rate of SPEC §1,
        $2\beta A(B)/((\operatorname{tr}K/d)\operatorname{tr}I(B))$ ($m = m^*$)."""
        return 2 * self.batch * self.moments.A / (self.mean_eigenvalue
                                                  * jnp.trace(self.moments.I))


def _positive(value, name: str, *, allow_inf: bool = False, zero: bool = False):
    """A float array field, checked when concrete: > 0 (>= 0 with `zero`), finite unless
    `allow_inf`; a `ValueError` naming the value and the fix otherwise."""
    x = jnp.asarray(value, dtype=jnp.result_type(value, float))
    if not is_traced(x):
        v = np.asarray(x)
        ok = (v >= 0 if zero else v > 0) & (np.isfinite(v) | (allow_inf & (v == np.inf)))
        if v.ndim != 0 or not bool(ok):
            bound = ">= 0" if zero else "> 0"
            raise ValueError(f"{name} must be a number {bound}"
                             f"{'' if allow_inf else ' and finite'}, got {name}={value!r}")
    return x


class AbstractFeedback(AbstractOptimizer):
    r"""One-pass SGD with a state-feedback stepsize $\Gamma = \text{rule}(\text{state})$
    (SPEC §10). Subclasses give `gamma(state)` (the stepsize from a [`FeedbackState`][]), and
    optionally auxiliary scalars with their rates (`num_aux`, `aux_rate`). Every cell
    ([`ode`][], [`simulate`][], [`sde`][]) on a streaming [`Problem`][] is shared by the
    subclasses; the `schedule` is the rule's base rate (a time-dependent multiplier)."""

    batch: eqx.AbstractVar[object]
    num_aux = 0
    uses_B2 = False
    needs_h_star = False

    def gamma(self, state: FeedbackState):
        r"""$\Gamma$ at `state`."""
        raise NotImplementedError

    def aux_rate(self, state: FeedbackState, gamma):
        """$da/dt$ of the auxiliary scalars (shape `(num_aux,)`)."""
        return jnp.zeros((0,), state.B.dtype)

    def _schedule_field(self) -> str:
        return "scale"

    @property
    def schedule(self) -> AbstractSchedule:
        return getattr(self, self._schedule_field())

    def replace(self, **changes) -> "AbstractFeedback":
        """A copy with the given fields changed; `schedule=` sets the base rate (the field
        `eta` of [`AdaGradNorm`][], `scale` of the others), so [`tune`][] tunes it."""
        if "schedule" in changes:
            changes[self._schedule_field()] = changes.pop("schedule")
        return dataclasses.replace(self, **changes)

    def for_simulation(self, problem) -> "AbstractFeedback":
        """`batch` rounded to the nearest integer (a tuned or vmapped batch is a float)."""
        batch = int(round(float(self.batch)))
        return self if isinstance(self.batch, int) else self.replace(batch=batch)

    def check_problem(self, problem):
        """Refuse (an [`UnsupportedError`][]) what the rule cannot be evaluated on."""


class AdaGradNorm(AbstractFeedback):
    r"""AdaGrad-Norm (SPEC §10): $b_{k+1}^2 = b_k^2 + \|G_k\|^2$, $x_{k+1} = x_k -
    (\eta/b_{k+1})G_k$, the current gradient included. In hsgd's scaling
    ($x\leftarrow x - (\Gamma_k/d)G_k$, $b_0 = d\,\bar b_0$):

    $$\Gamma_k = \frac{\eta(k/d)}{\sqrt{\bar b_0^2 + S_k}},\qquad
    S_k = \frac1{d^2}\sum_{i\le k}\|G_i\|^2,$$

    whose deterministic equivalent is SPEC §1's per-mode ODE with $\gamma_t = \Gamma(t)$ and

    $$\frac{dS}{dt} = \frac{\operatorname{tr}K}{d}\,\frac{\operatorname{tr}I(B)}{\beta},\qquad
    \Gamma(t) = \frac{\eta(t)}{\sqrt{\bar b_0^2 + S(t)}},\qquad S(0) = 0.$$

    **Arguments:**

    - `eta`: $\eta > 0$ — a float (an array leaf: `vmap`, `grad` and [`tune`][] go through it)
      or an [`AbstractSchedule`][] $\eta(t)$ (a warm-up, say; the plain rule is a constant).
    - `b0`: $\bar b_0 > 0$, the initial accumulator in units of $d$ ($b_0 = d\,\bar b_0$; the
      first stepsize is $\Gamma(0) = \eta/\bar b_0$). $\bar b_0 = 0$ has no $O(1)$ limit
      (SPEC §10) and is refused.
    - `batch`: $\beta\ge1$ samples per step (averaged). The accumulator grows $1/\beta$ as fast.

    Example: `hsgd.ode(problem, hsgd.AdaGradNorm(1.0, 0.5), ts).gamma`.
    """

    eta: AbstractSchedule
    b0: object
    batch: object = 1
    num_aux = 1

    def __init__(self, eta=1.0, b0=1.0, batch=1):
        if isinstance(eta, int | float | np.ndarray | jnp.ndarray) and not is_traced(eta):
            _positive(eta, "eta")
        self.eta = as_schedule(eta)
        self.b0 = _positive(b0, "b0")
        self.batch = checked_batch(batch)

    def _schedule_field(self) -> str:
        return "eta"

    def gamma(self, state):
        eta = self.eta(state.t).astype(state.B.dtype)
        return eta / jnp.sqrt(self.b0.astype(state.B.dtype) ** 2 + state.aux[0])

    def aux_rate(self, state, gamma):
        return (state.mean_eigenvalue * jnp.trace(state.moments.I) / state.batch)[None]

    def tunable(self, problem) -> dict[str, tuple[float, float]]:
        r"""`b0` $\bar b_0\in(10^{-3}, 10^3)$ and `batch` $\in(1, 256)$ (the ODE is smooth in
        both); $\eta$ is the schedule ([`tune`][]'s family `"constant"` tunes it)."""
        return {"b0": (1e-3, 1e3), "batch": (1.0, 256.0)}


class _Oracle(AbstractFeedback):
    """The capped oracles: $\\Gamma = \\min(c(t)\\,\\Gamma_{\\rm rule}, \\text{cap})$."""

    scale: AbstractSchedule
    cap: object
    batch: object = 1

    def _capped(self, state, raw):
        dtype = state.B.dtype
        raw = self.scale(state.t).astype(dtype) * raw
        return jnp.minimum(raw, self.cap.astype(dtype))

    def tunable(self, problem) -> dict[str, tuple[float, float]]:
        """`batch` $\\in(1, 256)$; the multiplier is the schedule."""
        return {"batch": (1.0, 256.0)}


def _check_scale(scale):
    if isinstance(scale, int | float) and not (np.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a number > 0 (the multiplier of the oracle stepsize), "
                         f"got scale={scale!r}")
    return as_schedule(scale)


class Polyak(_Oracle):
    r"""The idealised Polyak stepsize (SPEC §10), a function of the state:

    $$\Gamma_t = \min\Big(c(t)\,\frac{\beta\,(h(B) - h^*)}{(\operatorname{tr}K/d)\,
    \operatorname{tr}I(B)},\ \text{cap}\Big)$$

    (least squares: $\beta\sum_j\omega_j\lambda_jP_j/(2(\operatorname{tr}K/d)\cdot 2h)$ with
    $P_j$ the per-mode error). [`simulate`][] evaluates the same formula at each run's current
    iterate.

    **Arguments:**

    - `cap`: the largest stepsize ($> 0$; default $\infty$).
    - `batch`: $\beta\ge1$.
    - `scale`: the multiplier $c(t) > 0$ (default 1): a float or a schedule.
    - `h_star`: the minimal risk $h^*$; default $h(B^*)$ at $X = X^*$ (the built-in losses are
      well specified: least squares, logistic, softmax, phase retrieval); a [`CustomLoss`][]
      needs it given.
    """

    h_star: object = None
    needs_h_star = True

    def __init__(self, cap=jnp.inf, batch=1, *, scale=1.0, h_star=None):
        self.cap = _positive(cap, "cap", allow_inf=True)
        self.batch = checked_batch(batch)
        self.scale = _check_scale(scale)
        self.h_star = None if h_star is None else jnp.asarray(h_star, float)

    def check_problem(self, problem):
        if self.h_star is None and not isinstance(problem.loss, LeastSquares | Logistic
                                                  | Softmax | PhaseRetrieval):
            raise UnsupportedError(
                f"Polyak needs the minimal risk h*: pass Polyak(h_star=...) for "
                f"{type(problem.loss).__name__} (the default h(B*) at X = X* holds for the "
                f"built-in, well-specified losses only)")

    def gamma(self, state):
        mom = state.moments
        raw = state.batch * (mom.h - state.h_star) / (state.mean_eigenvalue * jnp.trace(mom.I))
        return self._capped(state, jnp.maximum(raw, 0.0))


class LineSearch(_Oracle):
    r"""The idealised exact line search (SPEC §10): the stepsize that minimises $dh/dt$,

    $$\frac{dh}{dt} = -\Gamma\|\nabla R\|^2 + \frac{\Gamma^2}{\beta}
    \frac{\operatorname{tr}K^2}{d}\,\tfrac12\operatorname{tr}\big(\mathbb{E}[\nabla_x^2f]\,
    I(B)\big),\qquad \Gamma_t = \min\Big(c(t)\,\frac{\beta\,\|\nabla R\|^2}
    {(\operatorname{tr}K^2/d)\,\operatorname{tr}(J_x(B)\,I(B))},\ \text{cap}\Big),$$

    with $\|\nabla R\|^2 = \operatorname{tr}(J\,W^\top K^2W\,J^\top)$ and
    $\mathbb{E}[\nabla_x^2f] = J_x$ (Stein's lemma), so every loss with moments has it (least
    squares: $\beta\sum_j\omega_j\lambda_j^2P_j/((\operatorname{tr}K^2/d)\cdot 2h)$). Where
    $\operatorname{tr}(J_xI)\le0$ (a non-convex loss) $dh/dt$ has no minimiser and
    $\Gamma = $ `cap`. It equals $d\cdot\arg\min_\gamma\mathbb{E}R(x - \gamma G)$. The ODE
    carries $W^\top K^2W$ as a second summary; [`simulate`][] evaluates the formula at each run's
    current iterate.

    **Arguments:** `cap` ($> 0$, default $\infty$), `batch` $\beta\ge1$, `scale` the
    multiplier $c(t) > 0$ (default 1).
    """

    uses_B2 = True

    def __init__(self, cap=jnp.inf, batch=1, *, scale=1.0):
        self.cap = _positive(cap, "cap", allow_inf=True)
        self.batch = checked_batch(batch)
        self.scale = _check_scale(scale)

    def gamma(self, state):
        mom = state.moments
        m = mom.I.shape[0]
        curv = jnp.trace(mom.J[:, :m] @ mom.I)
        ok = curv > 0
        raw = state.batch * state.grad_norm2 / (state.mean_square_eigenvalue
                                                * jnp.where(ok, curv, 1.0))
        raw = jnp.where(ok, raw, jnp.inf)
        return self._capped(state, raw)


class FeedbackSchedule(AbstractFeedback):
    r"""A user rule: one-pass SGD with $\Gamma_t = c(t)\cdot\text{fn}(B, \text{state})$, `fn`
    a JAX function of $B = W^\top KW$ and the [`FeedbackState`][] (time, moments, batch,
    spectrum moments; `state.gamma_crit` is SPEC §1's critical rate, so
    `FeedbackSchedule(lambda B, s: 0.5 * s.gamma_crit)` is the critical-rate baseline of
    [`tune`][]). The ODE is SPEC §1's with $\gamma_t$ this rule; [`simulate`][] and [`sde`][]
    evaluate it at each run's current iterate.

    **Arguments:**

    - `fn`: `fn(B, state) -> gamma`, $\ge 0$, branch-free (traced). An `eqx.Module` with array
      leaves makes its parameters differentiable.
    - `batch`: $\beta\ge1$.
    - `scale`: the multiplier $c(t)$ (default 1).
    - `uses_B2`: whether `fn` reads `state.grad_norm2` (the ODE then carries $W^\top K^2W$).
    """

    fn: Callable
    scale: AbstractSchedule
    batch: object = 1
    uses_B2: bool = eqx.field(static=True, default=False)

    def __init__(self, fn, batch=1, *, scale=1.0, uses_B2=False):
        if not callable(fn):
            raise TypeError(f"FeedbackSchedule needs a callable fn(B, state), got {fn!r}")
        self.fn = fn
        self.batch = checked_batch(batch)
        self.scale = _check_scale(scale)
        self.uses_B2 = bool(uses_B2)

    def gamma(self, state):
        g = jnp.asarray(self.fn(state.B, state), state.B.dtype)
        return self.scale(state.t).astype(state.B.dtype) * g
