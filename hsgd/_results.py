r"""One result type per method, the same for every (problem, optimizer) pair.

- [`Solution`][]: what [`ode`][] and [`volterra`][] return — one deterministic curve.
- [`Runs`][]: what [`simulate`][] and [`sde`][] return — `R` runs (or paths) over `T` times.

The common fields mean the same thing in every cell: `ts` the requested times in the cell's
clock (streaming: $t = k/d$; finite SGD: epochs $t = k\beta/n$; heavy ball: iterations $k$),
`risk` the population risk (NaN where the problem has none), `loss` the training loss
$\tfrac12\|Ax - b\|^2$ where a training set exists (`None` for streaming data, whose training
loss *is* the risk), `diverged` and `divergence_time` (inf when it did not; values from then on
are NaN). `Runs.mean()` is the mean **risk** over runs everywhere (`mean("loss")` for the
training loss). Cell-specific fields are `None` where a cell does not produce them.
"""

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float

from ._blowup import after_first, nan_where
from ._custom_types import Times


class Solution(eqx.Module):
    r"""The deterministic equivalent on the requested times `ts`.

    Every cell:

    - `ts` $(T,)$; `risk` $(T,)$; `loss` $(T,)$ or `None`; `gamma` $(T,)$ the learning rate;
    - `diverged`, `divergence_time` (inf if it did not); values after divergence are NaN;
    - `num_steps`: steps taken (solver steps, or iterations for a recursion).

    Streaming [`Problem`][] × [`SGD`][] (SPEC §1):

    - `B` $(T, p, p)$ = $W^\top K W$, so `risk` $= h(B)$; `distance` $(T,)$:
      $\|X - X^*\|^2$ (when $m = m^*$, else NaN); `gamma_crit` $(T,)$ the critical learning rate
      (NaN when $m\ne m^*$); `statistics`: dict name → $(T, \dots)$ of the requested
      [`Statistic`][]s;
    - `error_estimate` $(T,)$: [`StructuredKvaerno5`][]'s own estimate of the integration
      error in $B$ (accumulated local estimates of $\max|B|$; NaN with another solver).
    - least squares with `recursion=True` (the exact finite-$d$ recursion, SPEC §8):
      `iterations` the integer $k = \operatorname{round}(td)$ of each time, `loss_path`
      $(K+1,)$ the risk $h_k$ at every iteration $k = 0..K$ (for window averages), `num_steps`
      $= K$; `error_estimate` is `None` (nothing is integrated);
    - `moment_error`: the estimated relative error of the loss's Gaussian moments
      $h, J, I, A$ (its quadrature rule), the maximum over the saved times (`None` for closed
      forms and fixed rules; see [`hsgd.ode`][]'s `expectation_rtol`).

    [`FiniteProblem`][] × [`SGD`][] (SPEC §2, ODE or Volterra): `loss` $\psi(t)$, a sum over the
    $n$ rows; `Gamma` $(T,)$ the schedule's integral.

    [`FiniteProblem`][] × [`HeavyBall`][] (SPEC §3, the exact recursion): `ts` the iterations
    $k$ (as floats; `iterations` as integers), `epochs` $k\zeta$, `batch_fraction` $\zeta$,
    `momentum` $\Delta$, `loss_path` $(K+1,)$ $\psi_k$ at every iteration up to the last
    requested; `divergence_time` is an iteration.
    """

    ts: Times
    risk: Float[Array, " T"]
    loss: Float[Array, " T"] | None
    gamma: Float[Array, " T"]
    diverged: Bool[Array, ""]
    divergence_time: Float[Array, ""]
    num_steps: Array | None = None
    B: Float[Array, "T p p"] | None = None
    distance: Float[Array, " T"] | None = None
    gamma_crit: Float[Array, " T"] | None = None
    statistics: dict | None = None
    error_estimate: Float[Array, " T"] | None = None
    Gamma: Float[Array, " T"] | None = None
    iterations: Array | None = None
    epochs: Float[Array, " T"] | None = None
    batch_fraction: Float[Array, ""] | None = None
    momentum: Float[Array, ""] | None = None
    loss_path: Float[Array, " K"] | None = None
    moment_error: Float[Array, ""] | None = None

    @property
    def divergence_iteration(self):
        """`divergence_time` of a recursion over iterations (heavy ball): the iteration."""
        return self.divergence_time

    def cosine(self) -> Float[Array, " T"]:
        r"""The cosine with the target in the $K$-geometry ($m = m^* = 1$, streaming):
        $\langle X, X^*\rangle_K / (\|X\|_K\|X^*\|_K) = B_{12}/\sqrt{B_{11}B_{22}}$."""
        if self.B is None:
            raise ValueError("cosine() needs B, which only streaming solutions carry")
        return self.B[:, 0, 1] / jnp.sqrt(self.B[:, 0, 0] * self.B[:, 1, 1])


class Runs(eqx.Module):
    r"""Independent runs of the optimiser ([`simulate`][]) or paths of homogenized SGD
    ([`sde`][]): arrays over runs `R` and times `T`.

    Every cell: `ts` $(T,)$; `risk` $(R, T)$ the population risk of each run (NaN without a
    population); `loss` $(R, T)$ the training loss $\tfrac12\|Ax - b\|^2$ (finite data; `None`
    for streaming); `diverged` $(R,)$, `divergence_time` $(R,)$ (inf when a run did not
    diverge; its values from then on are NaN).

    Streaming: `risk_se` $(R, T)$ the standard error of each risk value (0 where the loss's
    risk is exact, see `hsgd._risk`), `B` $(R, T, p, p)$, `distance` $(R, T)$ (NaN when
    $m\ne m^*$); `gamma` $(R, T)$ each run's stepsize where it is state feedback (SPEC §10,
    e.g. [`AdaGradNorm`][]; `None` for a schedule).
    """

    ts: Times
    risk: Float[Array, "R T"]
    diverged: Bool[Array, " R"]
    divergence_time: Float[Array, " R"]
    loss: Float[Array, "R T"] | None = None
    risk_se: Float[Array, "R T"] | None = None
    B: Float[Array, "R T p p"] | None = None
    distance: Float[Array, "R T"] | None = None
    gamma: Float[Array, "R T"] | None = None

    @classmethod
    def from_paths(cls, ts, risk, B, distance, bound, failed=None, risk_se=None,
                   gamma=None) -> "Runs":
        r"""Collect recorded streaming paths: a path has diverged from the first time its risk
        is not finite, $\max|B|$ reaches `bound` or `failed` (R, T) is set; from then on its
        risk (and `risk_se`, default 0) is NaN."""
        bad = ~jnp.isfinite(risk) | ~(jnp.max(jnp.abs(B), axis=(-1, -2)) < bound)
        if failed is not None:
            bad = bad | failed
        bad, diverged, divergence_time = after_first(ts, bad)
        risk_se = jnp.zeros_like(risk) if risk_se is None else risk_se
        return cls(ts=ts, risk=nan_where(bad, risk), B=B, distance=distance,
                   diverged=diverged, divergence_time=divergence_time,
                   risk_se=nan_where(bad, risk_se),
                   gamma=None if gamma is None else nan_where(bad, gamma))

    def _values(self, of: str):
        values = getattr(self, of, None) if of in ("risk", "loss") else None
        if values is None:
            raise ValueError(f"of must be 'risk' or 'loss' (one these runs record), got {of!r}")
        return values

    def mean(self, of: str = "risk") -> Float[Array, " T"]:
        """Mean over runs of the risk (default) or, with `of="loss"`, the training loss."""
        return jnp.mean(self._values(of), axis=0)

    def std(self, of: str = "risk") -> Float[Array, " T"]:
        """Standard deviation over runs of the risk (default) or the training loss."""
        values = self._values(of)
        return jnp.std(values, axis=0, ddof=1 if values.shape[0] > 1 else 0)

    def estimate_se(self) -> Float[Array, " T"]:
        r"""The part of the standard error of `mean()` due to the risk estimates alone,
        $\sqrt{\sum_r \mathrm{SE}_r^2}/R$ (0 when the risk is exact). The run-to-run spread
        `std()` already contains it."""
        if self.risk_se is None:
            return jnp.zeros(self.risk.shape[1:], self.risk.dtype)
        return jnp.sqrt(jnp.sum(self.risk_se**2, axis=0)) / self.risk_se.shape[0]
