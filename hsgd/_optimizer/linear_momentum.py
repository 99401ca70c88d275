r"""Streaming momentum: the linear first-order family (SPEC §9) and its presets (DANA, heavy ball).

$$y_{k+1} = (1 - \Delta_k)\,y_k + \gamma_{1,k}G_k,\qquad
x_{k+1} = x_k - \gamma_{2,k}G_k - \gamma_{3,k}\,y_k,\qquad y_0 = 0,$$

with $G_k$ the mini-batch mean of $a\otimes\nabla_x f$ on fresh samples. **Convention** (one,
used by every method): the user gives the *scaled* coefficients of SPEC §9 as functions of the
problem's time $t = k/d$,

$$\Delta_k = \frac{\delta(k/d)}{d},\quad \gamma_{1,k} = \frac{\bar\gamma_1(k/d)}{d},\quad
\gamma_{2,k} = \frac{\bar\gamma_2(k/d)}{d},\quad \gamma_{3,k} = \frac{\bar\gamma_3(k/d)}{d},$$

so $\bar\gamma_2$ is SGD's learning rate $\gamma$ of SPEC §1 and [`LinearMomentum`][] with
$\bar\gamma_1 = \bar\gamma_3 = 0$ is [`SGD`][]. The presets that are stated per iteration
([`DANAConstant`][], [`DANADecaying`][], heavy ball) convert once, in
`LinearMomentum.from_iteration` (multiply by $d$, and evaluate at $k = td$).
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._checks import is_traced
from .._dtype import as_float
from .._schedule import AbstractSchedule, as_schedule
from .base import AbstractOptimizer, checked_batch

COEFFICIENTS = ("gamma1", "gamma2", "gamma3", "delta")


class Fixed(AbstractSchedule):
    r"""A constant coefficient $c\ge 0$ (zero allowed, unlike [`Constant`][]):
    $c(t) = c$. What a plain number given to [`LinearMomentum`][] becomes."""

    value: jnp.ndarray

    def __init__(self, value):
        value = as_float(value)
        if not is_traced(value):
            v = np.asarray(value)
            if v.ndim != 0 or not (np.isfinite(v) and v >= 0):
                raise ValueError(f"a momentum coefficient must be a finite number >= 0, got "
                                 f"{value!r}")
        self.value = value

    def __call__(self, t):
        return self.value * jnp.ones_like(jnp.asarray(t, dtype=self.value.dtype))


class PowerDecay(AbstractSchedule):
    r"""$c(t) = s\,(1 + r t)^{-p}$: a per-iteration $c_0(1 + k)^{-p}$ at $k = r t$ (with
    $r = d$), scaled by $s$. Array leaves $s, r, p$ (`vmap`, `grad` go through them)."""

    scale: jnp.ndarray
    rate: jnp.ndarray
    exponent: jnp.ndarray

    def __init__(self, scale, rate, exponent):
        self.scale, self.rate, self.exponent = as_float(scale), as_float(rate), \
            as_float(exponent)

    def __call__(self, t):
        return self.scale * (1.0 + self.rate * t) ** (-self.exponent)


class Scaled(AbstractSchedule):
    r"""$c(t) = f\cdot s(t)$ for a schedule $s$ and a factor $f$ (an array leaf)."""

    schedule: AbstractSchedule
    factor: jnp.ndarray

    def __call__(self, t):
        return self.factor * self.schedule(t)


def as_coefficient(x, name: str) -> AbstractSchedule:
    """A coefficient schedule: a number (zero allowed) → `Fixed`; a schedule or a callable as
    [`as_schedule`][] makes it."""
    if isinstance(x, AbstractSchedule):
        return x
    if isinstance(x, bool):
        raise TypeError(f"{name} cannot be a bool")
    if np.ndim(x) == 0 and not callable(x):
        try:
            return Fixed(x)
        except ValueError as e:
            raise ValueError(f"{name}: {e} (got {name}={x!r})") from None
        except TypeError:
            pass
    try:
        return as_schedule(x)
    except TypeError as e:
        raise TypeError(f"{name}: {e}") from None


class LinearMomentum(AbstractOptimizer):
    r"""The linear first-order (momentum) family on streaming data (SPEC §9):

    $$y_{k+1} = \Big(1 - \frac{\delta(t_k)}{d}\Big)y_k + \frac{\bar\gamma_1(t_k)}{d}G_k,\qquad
    x_{k+1} = x_k - \frac{\bar\gamma_2(t_k)}{d}G_k - \frac{\bar\gamma_3(t_k)}{d}y_k,\qquad
    t_k = k/d,\ y_0 = 0,$$

    $G_k$ the mean over a mini-batch of $\beta$ fresh samples of $a\otimes\nabla_xf(a^\top x_k;
    a^\top x^*, \varepsilon)$. The coefficients are the *scaled* ones of SPEC §9 (module
    docstring): $\bar\gamma_2$ is SGD's learning rate, and $\bar\gamma_1 = \bar\gamma_3 = 0$
    is [`SGD`][]`(gamma2)`. Only $\delta$, $\bar\gamma_2$ and the product
    $\bar\gamma_1\bar\gamma_3$ are invariant under $y\to cy$.

    The deterministic equivalent ([`ode`][], `hsgd._dynamics.streaming_momentum`) tracks per
    mode the second moments of $[X - X^* \mid Y \mid X^*]$:
    $V_j' = A_jV_j + V_jA_j^\top + (\lambda_j/\beta)\,N(B)$ with
    $A_j = \begin{pmatrix}-\bar\gamma_2\lambda_jJ_x & -\bar\gamma_3 I\\
    \bar\gamma_1\lambda_jJ_x & -\delta I\end{pmatrix}$ on the free blocks and
    $N = cc^\top\otimes I(B)$, $c = (-\bar\gamma_2, \bar\gamma_1)$, for any loss.

    **Arguments** (each a number — zero allowed —, an [`AbstractSchedule`][] or a callable
    $t\mapsto c$; every schedule's array leaves are leaves of the optimizer, so `vmap`,
    `grad` and [`tune`][] go through them):

    - `gamma1`: $\bar\gamma_1(t)\ge 0$, the gradient's weight in the momentum $y$.
    - `gamma2`: $\bar\gamma_2(t)\ge 0$, the direct gradient step (also `schedule`).
    - `gamma3`: $\bar\gamma_3(t)\ge 0$, the momentum's weight in the step.
    - `delta`: $\delta(t)\ge 0$, the momentum's decay rate per unit time ($\Delta_k =
      \delta/d$ per iteration).
    - `batch`: $\beta\ge 1$ samples per step (gradients averaged; continuous in the ODE).

    Presets: [`LinearMomentum.heavy_ball`][hsgd.LinearMomentum.heavy_ball],
    [`LinearMomentum.from_iteration`][hsgd.LinearMomentum.from_iteration],
    [`DANAConstant`][], [`DANADecaying`][]; [`HeavyBall`][] on a streaming [`Problem`][] maps
    onto this family.

    Example: `hsgd.ode(problem, hsgd.LinearMomentum(1.0, 1.0, 0.3, lambda t: 1 / (1 + t)), ts)`.
    """

    gamma1: AbstractSchedule
    gamma2: AbstractSchedule
    gamma3: AbstractSchedule
    delta: AbstractSchedule
    batch: object = 1

    def __init__(self, gamma1, gamma2, gamma3, delta, batch=1):
        self.gamma1 = as_coefficient(gamma1, "gamma1")
        self.gamma2 = as_coefficient(gamma2, "gamma2")
        self.gamma3 = as_coefficient(gamma3, "gamma3")
        self.delta = as_coefficient(delta, "delta")
        self.batch = checked_batch(batch)

    @property
    def schedule(self) -> AbstractSchedule:
        r"""$\bar\gamma_2(t)$, the direct (SGD) learning rate: what [`tune`][] replaces."""
        return self.gamma2

    def coefficients(self) -> tuple:
        r"""$(\bar\gamma_1, \bar\gamma_2, \bar\gamma_3, \delta)$, the scaled schedules."""
        return (self.gamma1, self.gamma2, self.gamma3, self.delta)

    def replace(self, **changes) -> "LinearMomentum":
        """A copy with fields changed; `schedule=` means `gamma2=`."""
        if "schedule" in changes:
            changes["gamma2"] = changes.pop("schedule")
        return super().replace(**changes)

    def tunable(self, problem) -> dict[str, tuple[float, float]]:
        r"""What [`tune`][] may optimise jointly with $\bar\gamma_2(t)$ (its `schedule`):
        `batch` $\beta\in(1, 256)$ (the ODE's noise is $\propto 1/\beta$) and each of
        $\bar\gamma_1\in(0, 10)$, $\bar\gamma_3\in(0, 10)$, $\delta\in(0, 100)$ that is a
        constant (`Fixed`); a coefficient given as another schedule keeps its shape."""
        out = {"batch": (1.0, 256.0)}
        for name, high in (("gamma1", 10.0), ("gamma3", 10.0), ("delta", 100.0)):
            if isinstance(getattr(self, name), Fixed):
                out[name] = (0.0, high)
        return out

    def for_simulation(self, problem) -> "LinearMomentum":
        """`batch` rounded to the nearest integer (a tuned or vmapped batch is a float)."""
        batch = int(round(float(self.batch)))
        return self if isinstance(self.batch, int) else self.replace(batch=batch)

    def linear(self, problem) -> "LinearMomentum":
        """This optimizer as the family on `problem` (itself; presets override)."""
        return self

    @classmethod
    def from_iteration(cls, d, gamma1, gamma2, gamma3, Delta, batch=1) -> "LinearMomentum":
        r"""The family from per-iteration coefficients $\gamma_{i,k}$, $\Delta_k$ given as
        functions of the iteration $k$ (numbers or callables $k\mapsto c$) in dimension $d$:
        the scaled coefficients are $\bar\gamma_i(t) = d\,\gamma_{i,k = td}$ and
        $\delta(t) = d\,\Delta_{k = td}$ (SPEC §9), converted once here."""
        d = float(d)

        def scaled(c, name):
            if callable(c) and not isinstance(c, AbstractSchedule):
                return Scaled(as_schedule(lambda t: c(d * t)), jnp.asarray(d))
            return Scaled(as_coefficient(c, name), as_float(d))

        return cls(scaled(gamma1, "gamma1"), scaled(gamma2, "gamma2"),
                   scaled(gamma3, "gamma3"), scaled(Delta, "Delta"), batch)

    @classmethod
    def heavy_ball(cls, gamma, momentum, d, batch=1) -> "LinearMomentum":
        r"""Streaming heavy ball $x_{k+1} = x_k - \frac{\gamma(t_k)}{d}G_k +
        \Delta_{\rm hb}(x_k - x_{k-1})$ in dimension $d$ as the family (SPEC §9):
        $\delta = d(1 - \Delta_{\rm hb})$, $\bar\gamma_1 = d$, $\bar\gamma_2 = \gamma$,
        $\bar\gamma_3 = \gamma\Delta_{\rm hb}$ (exact: $x_{k+1} - x_k = -\frac\gamma d y_{k+1}$).
        In the limit $d\to\infty$ it is SGD at $\Gamma_{\rm eff} = \gamma/(1-\Delta_{\rm hb})$
        ([`heavy_ball_effective_stepsize`][hsgd.theory.heavy_ball_effective_stepsize])."""
        from .heavy_ball import check_momentum

        momentum = as_float(check_momentum(momentum))
        gamma = as_schedule(gamma)
        d = as_float(float(d))
        return cls(Fixed(d), gamma, Scaled(gamma, momentum), Scaled(Fixed(d), 1.0 - momentum),
                   batch)


def dimension_of(problem, dimension=None) -> float:
    r"""The dimension $d$ the scaled coefficients refer to: `dimension` when given, else the
    problem's instance dimension, else its number of modes (an explicit spectrum has one mode
    per coordinate)."""
    if dimension is not None:
        return float(dimension)
    d = getattr(problem, "d", None)
    return float(d if d is not None else problem.spectrum.num_modes)


def check_coefficients(optimizer, ts):
    r"""A `ValueError` naming the coefficient, the time and the value unless every coefficient
    of the family is finite and $\ge 0$ at `ts` and on 1025 points of $[0, \max t]$ (concrete
    schedules only; inside `jit` the solver checks at `ts`)."""
    from .._checks import probe_times

    if is_traced(optimizer, ts):
        return
    probe = jnp.asarray(probe_times(np.asarray(ts)))
    for name, s in zip(COEFFICIENTS, optimizer.coefficients()):
        if is_traced(s):
            continue
        values = np.asarray(jax.vmap(s)(probe.astype(jnp.result_type(float))))
        bad = ~(np.isfinite(values) & (values >= 0))
        if np.any(bad):
            i = int(np.argmax(bad))
            raise ValueError(f"the momentum coefficient {name} must be finite and >= 0 at every "
                             f"time, got {name}(t = {float(probe[i]):.4g}) = {values[i]!r}; fix "
                             f"its schedule")


def _exponent_checks(alpha, target_exponent):
    for name, v in (("alpha", alpha), ("target_exponent", target_exponent)):
        if not is_traced(v) and not (np.ndim(v) == 0 and np.isfinite(float(v))):
            raise ValueError(f"{name} must be a finite number, got {name}={v!r}")
    if not is_traced(alpha) and not float(alpha) > 0.25:
        raise ValueError(f"alpha (the data exponent: eigenvalues ~ j^(-2 alpha)) must be > 1/4, "
                         f"got alpha={alpha!r}")


def _dimension_and_trace(problem, dimension):
    """$d$ (`dimension_of`) and
    $\\operatorname{tr}K = d\\sum_j\\omega_j\\lambda_j$."""
    d = dimension_of(problem, dimension)
    return d, d * problem.spectrum.mean()


class _DANA(AbstractOptimizer):
    r"""What the two DANA presets share (SPEC §9; 2505.16098): per iteration, in the
    problem's own normalisation (tr K as it is; the PLRF one of SPEC §13 has
    $\operatorname{tr}K = O(1)$),

    $$\gamma_1 = 1,\quad \gamma_2 = c_2\min\Big(\frac2{\beta+1}, \frac1{\operatorname{tr}K}\Big),
    \quad \Delta_k = \frac{\delta}{1 + k},\quad
    \delta = \max\Big(2 + \frac{2\beta_t - 1}{\alpha},\ 2 - \frac1\alpha\Big) + 1.$$
    """

    alpha: object
    target_exponent: object
    batch: object = 1
    gamma2_factor: object = 0.375
    gamma3_factor: object = 0.1
    dimension: object = None

    def __init__(self, alpha, target_exponent, batch=1, gamma2_factor=0.375,
                 gamma3_factor=0.1, dimension=None):
        _exponent_checks(alpha, target_exponent)
        for name, v in (("gamma2_factor", gamma2_factor), ("gamma3_factor", gamma3_factor)):
            if not is_traced(v) and not (np.ndim(v) == 0 and float(v) > 0):
                raise ValueError(f"{name} must be a number > 0, got {name}={v!r}")
        if dimension is not None and not (float(dimension) >= 1):
            raise ValueError(f"dimension must be >= 1 (or None: the problem's), got "
                             f"dimension={dimension!r}")
        self.alpha = as_float(alpha)
        self.target_exponent = as_float(target_exponent)
        self.batch = checked_batch(batch)
        self.gamma2_factor = as_float(gamma2_factor)
        self.gamma3_factor = as_float(gamma3_factor)
        self.dimension = dimension

    @property
    def schedule(self) -> AbstractSchedule:
        r"""The constant $\gamma_2$ factor $c_2$ (the preset's coefficients depend on the
        problem: see `linear`)."""
        return Fixed(self.gamma2_factor)

    def replace(self, **changes):
        """A copy with fields changed; `schedule=` (what generic code passes back) must be the
        constant `Fixed` factor `schedule` returns: it sets `gamma2_factor`."""
        if "schedule" in changes:
            schedule = changes.pop("schedule")
            if not isinstance(schedule, Fixed):
                raise TypeError(f"{type(self).__name__} has no schedule of its own (its "
                                f"coefficients follow from alpha, target_exponent and the "
                                f"problem); tune LinearMomentum (from .linear(problem)) instead, "
                                f"got schedule={schedule!r}")
            changes["gamma2_factor"] = schedule.value
        return super().replace(**changes)

    def momentum_delta(self):
        r"""$\delta = \max(2 + (2\beta_t - 1)/\alpha,\ 2 - 1/\alpha) + 1$."""
        a, b = self.alpha, self.target_exponent
        return jnp.maximum(2.0 + (2.0 * b - 1.0) / a, 2.0 - 1.0 / a) + 1.0

    def _gamma3_per_iteration(self, d, trace):
        raise NotImplementedError

    def linear(self, problem) -> LinearMomentum:
        r"""The preset's coefficients on `problem` as a [`LinearMomentum`][] (scaled as SPEC
        §9: $\bar\gamma_1 = d$, $\bar\gamma_2 = d\gamma_2$, $\delta(t) = d\,\delta/(1 + dt)$,
        $\bar\gamma_3(t) = d\,\gamma_{3,k=dt}$)."""
        d, trace = _dimension_and_trace(problem, self.dimension)
        gamma2 = self.gamma2_factor * jnp.minimum(2.0 / (self.batch + 1.0), 1.0 / trace)
        delta = PowerDecay(d * self.momentum_delta(), d, 1.0)
        return LinearMomentum(Fixed(d), Fixed(d * gamma2), self._gamma3(d, trace),
                              delta, self.batch)

    def for_simulation(self, problem):
        batch = int(round(float(self.batch)))
        return self if isinstance(self.batch, int) else eqx.tree_at(
            lambda o: o.batch, self, batch)


class DANAConstant(_DANA):
    r"""DANA-constant (dimension-adapted Nesterov acceleration, arXiv 2505.16098) as the
    linear family of [`LinearMomentum`][], per iteration $k$:

    $$\gamma_1 = 1,\quad \gamma_2 = c_2\min\Big(\frac2{\beta+1}, \frac1{\operatorname{tr}K}
    \Big),\quad \gamma_3 = \frac{c_3}{d\operatorname{tr}K},\quad
    \Delta_k = \frac{\delta}{1+k},\quad \delta = \max\Big(2 + \frac{2\beta_t - 1}\alpha,\
    2 - \frac1\alpha\Big) + 1,$$

    $c_2 = 0.375$, $c_3 = 0.1$ by default, $\beta$ the batch, $\alpha$ the data exponent
    (eigenvalues $\propto j^{-2\alpha}$, as in PLRF, SPEC §13) and $\beta_t$ the target
    exponent. Scaled once to SPEC §9's coefficients of $t = k/d$ (`linear`).

    **Sources.** The update form (Gen-Mom-SGD: $y_k = (1-\Delta)y_{k-1} + \gamma_1 g$,
    $\theta_{k+1} = \theta_k - \gamma_2 g - \gamma_3 y$, SGD as $\gamma_1 = \gamma_3 = 0$) was
    confirmed against a summary of 2505.16098 (the paper's $x$-step uses the updated $y$,
    which has the same $t = k/d$ limit, SPEC §9). **The numerical settings above are taken
    from the issue text (hsgd issue 15), not confirmed against the paper** (no access to it
    here).

    **Arguments:** `alpha` ($> 1/4$), `target_exponent` $\beta_t$, `batch`, `gamma2_factor`
    $c_2$, `gamma3_factor` $c_3$, `dimension` $d$ (default: the problem's instance dimension,
    else its number of modes).
    """

    def _gamma3(self, d, trace):
        return Fixed(d * self.gamma3_factor / (d * trace))


class DANADecaying(_DANA):
    r"""DANA-decaying (arXiv 2505.16098) as the linear family of [`LinearMomentum`][], per
    iteration $k$: as [`DANAConstant`][] but

    $$\gamma_{3,k} = c_3\,(1 + k)^{-1/(2\alpha)}\qquad (c_3 = 0.1),$$

    so the effective learning rate $\gamma_1\gamma_3/\Delta\propto k^{1 - 1/(2\alpha)}$ grows
    with the iteration (the source of DANA's better exponent). Scaled to SPEC §9:
    $\bar\gamma_3(t) = d\,c_3(1 + dt)^{-1/(2\alpha)}$, $\delta(t) = d\delta/(1 + dt)$,
    $\bar\gamma_1 = d$.

    **Sources.** As [`DANAConstant`][]: the update form confirmed against a summary of
    2505.16098; **$c_2$, $c_3$, $\delta$ and the decay exponent $1/(2\alpha)$ are from the issue
    text, not confirmed against the paper.**

    **Arguments:** as [`DANAConstant`][].
    """

    def _gamma3(self, d, trace):
        return PowerDecay(d * self.gamma3_factor, d, 1.0 / (2.0 * self.alpha))
