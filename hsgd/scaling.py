r"""Compute-optimal scaling laws of power-law random features (SPEC §13; arXiv 2405.15074).

PLRF with data exponent $\alpha$, target exponent $\beta$ and $d$ parameters, trained by one-pass
mini-batch SGD (batch $B$, per-iteration stepsize $\eta$), reaches the loss $P(k; d)$ after $k$
iterations; a compute budget of $f = d\,B\,k$ flops buys $k = f/(dB)$ of them. For each budget
the compute-optimal model size and loss are

$$d^*(f) = \arg\min_d P\big(f/(dB); d\big),\qquad P^*(f) = \min_d P\big(f/(dB); d\big),$$

and in the large-$f$ limit $d^*\propto f^{a}$, $P^*\propto f^{-b}$ with exponents that depend
on the phase of $(\alpha, \beta)$. Here $P(k; d)$ is the exact finite-$d$ dynamics (SPEC §8) of
the deterministic PLRF problem ([`Problem.plrf`][hsgd.Problem.plrf]`(deterministic=True)`:
spectrum and target weights of $\hat K$ from the resolvent fixed point, so $d$ and $v$ can be
$10^6$), solved by [`hsgd.ode`][] and `jax.vmap`-ed over $d$: a whole table $P(f; d)$ is one
jitted call, and a phase diagram one `lax.map` of it over $(\alpha, \beta)$.

**The paper's phases** ($\alpha > 1/2$, where $v\to\infty$ is well posed; 2405.15074 Table 2).
With $r = \eta k$ the loss splits into the population bias $F_{pp}\asymp r^{-(2\alpha+2\beta-1)
/(2\alpha)}$, the finite-$d$ limit $F_0\asymp d^{-2\alpha + \max(0, 1-2\beta)}$, the
finite-$d$ bias $F_{ac}\asymp d^{-1}r^{-(1 - 1/(2\alpha))}$ (present when $2\beta > 1$) and the
SGD noise $K_{pp}\asymp r^{-(2 - 1/(2\alpha))}$. Minimising the two dominant terms at $r\propto
f/d$ (for $P = Ar^{-p} + Bd^{-q}$: $a = p/(p+q)$, $b = pq/(p+q)$), with
$\kappa = 2\alpha + 2\beta - 1$:

| phase | region | balance | $a$ ($d^*$) | $b$ ($P^*$) |
|---|---|---|---|---|
| I | $\beta<1/2<\alpha$ | $F_{pp} = F_0$ | $1/(2\alpha+1)$ | $\kappa/(2\alpha+1)$ |
| II | $1/2<\beta<\alpha$ | $F_{pp}=F_{ac}$ | $\beta/(\alpha+\beta)$ | $\kappa/(2\alpha+2\beta)$ |
| III | $1/2<\alpha<\beta$ | $F_{ac} = K_{pp}$ | $1/2$ | $1 - 1/(4\alpha)$ |

([`paper_exponents`][hsgd.scaling.paper_exponents]). $\alpha \le 1/2$ (phases IV and Ib/Ic,
where $v$ must grow with $d$) is not implemented.

**Measuring them.** [`compute_optimal`][hsgd.scaling.compute_optimal] evaluates $P(f; d)$ on a
log grid of $d$, takes each budget's minimum (refined by a parabola in $\log d$ through the
grid's three best points) where it is interior to the grid, and fits $\log d^*$ and $\log P^*$
against $\log f$ by least squares over the budgets in `fit_range`. The fit sees
pre-asymptotic corrections: fit over the largest budgets you can afford.
"""

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._methods import ode
from ._optimizer import SGD
from ._problem import Problem
from ._problem.plrf_equivalent import population_bins
from ._tune import Predictor, baselines, tune

PHASES = ("I", "II", "III")
_LANES = 8  # model sizes solved side by side (vmap) in loss_curves, at most
_MEMORY = 4 * 2**30  # bytes of resolvent work arrays they may hold together


class PhaseExponents(NamedTuple):
    """The phase of $(\\alpha, \\beta)$ and its compute-optimal exponents:
    $d^*\\propto f^{\\texttt{d\\_exponent}}$, $P^*\\propto f^{-\\texttt{loss\\_exponent}}$."""

    phase: str
    d_exponent: float
    loss_exponent: float


def paper_exponents(alpha: float, beta: float) -> PhaseExponents:
    r"""The compute-optimal exponents of 2405.15074 for SGD on PLRF at $(\alpha, \beta)$, $\alpha >
    1/2$ (module docstring's table): phase I ($\beta < 1/2$), II ($1/2 < \beta < \alpha$), III
    ($\beta > \alpha$). On a boundary ($\beta = 1/2$ or $\beta = \alpha$) the two formulas agree
    (the table is continuous there) and the lower phase's name is returned."""
    alpha, beta = float(alpha), float(beta)
    if not (np.isfinite(alpha) and np.isfinite(beta)) or alpha <= 0.5 or beta <= 0:
        raise ValueError(f"the compute-optimal phases are implemented for alpha > 1/2 and "
                         f"beta > 0 (v -> infinity well posed), got alpha={alpha!r}, "
                         f"beta={beta!r}; alpha <= 1/2 needs v growing with d (phases IV, "
                         f"Ib, Ic of 2405.15074)")
    if beta <= 0.5:
        return PhaseExponents("I", 1.0 / (2 * alpha + 1),
                              (2 * alpha + 2 * beta - 1) / (2 * alpha + 1))
    if beta <= alpha:
        return PhaseExponents("II", beta / (alpha + beta),
                              (2 * alpha + 2 * beta - 1) / (2 * (alpha + beta)))
    return PhaseExponents("III", 0.5, 1.0 - 1.0 / (4 * alpha))


def default_eta(alpha, batch=1):
    r"""The per-iteration stepsize used when none is given: half the smaller of the two
    stability limits of SPEC §8 on PLRF, $\eta = \tfrac12\min\!\big(\frac{2B}{(B+1)\lambda_{\max}},
    \frac{B}{\operatorname{tr}\hat K}\big)$ with the population values $\lambda_{\max}\approx1$ (the
    spike $j = 1$) and $\operatorname{tr}\hat K\approx\sum_j j^{-2\alpha}$ ($= \zeta(2\alpha)$,
    $v\to\infty$). It does not depend on $d$, as the paper's exponents assume."""
    alpha = jnp.asarray(alpha, float)
    zeta = jnp.sum(jnp.arange(1, 200_001, dtype=alpha.dtype) ** (-2 * alpha))
    # the tail beyond 2e5 by the integral (alpha > 1/2)
    zeta = zeta + 200_000.5 ** (1 - 2 * alpha) / (2 * alpha - 1)
    b = jnp.asarray(batch, alpha.dtype)
    return 0.5 * jnp.minimum(2 * b / (b + 1), b / zeta)


def _optimizer_for(optimizer, eta, alpha, batch, d):
    if optimizer is not None:
        return optimizer(d)
    eta = default_eta(alpha, batch) if eta is None else eta
    return SGD(eta * d, batch=batch)


def loss_curves(alpha, beta, ds, flops, *, v: int = 10**6, batch=1, eta=None, optimizer=None,
                num_modes: int = 2048):
    r"""The table $P(f; d)$, shape `(len(ds), len(flops))`: the PLRF loss after $k = f/(dB)$
    iterations of one-pass SGD (the exact finite-$d$ dynamics of SPEC §8 on
    [`Problem.plrf`][hsgd.Problem.plrf]`(alpha, beta, v, d, deterministic=True)`), one jitted
    call, `jax.vmap`-ed over $d$ in batches of up to 8
    (`lax.map(..., batch_size=...)`, sized to ~4 GB of work arrays). Budgets with $k < 1$ are NaN.

    **Arguments:** `alpha`, `beta` (may be traced), `ds` model sizes ($< v$), `flops` budgets
    $f = dBk$ (increasing), `v` the data dimension (static; the equivalent bins it, so $10^6$
    costs what $10^4$ does), `batch` $B$, `eta` the per-iteration stepsize (default
    [`default_eta`][hsgd.scaling.default_eta]), or `optimizer`: a function `d -> optimizer`
    traceable in `d` (its `batch` sets the flops), for momentum or schedules; `num_modes` of
    the deterministic spectrum.
    """
    if not isinstance(ds, jax.core.Tracer):
        arr = np.asarray(ds, float)
        if np.any(arr >= v) or np.any(arr < 1):
            raise ValueError(f"loss_curves needs 1 <= d < v = {v}, got ds from "
                             f"{arr.min()} to {arr.max()}; raise v or lower ds")
    ds = jnp.asarray(ds, float)
    flops = jnp.asarray(flops, ds.dtype)
    return _loss_table(alpha, beta, ds, flops, int(v), batch, eta, optimizer, int(num_modes))


@eqx.filter_jit
def _loss_table(alpha, beta, ds, flops, v, batch, eta, optimizer, num_modes):
    def one(d):
        prob = Problem.plrf(alpha, beta, v, d, deterministic=True, num_modes=num_modes)
        opt = _optimizer_for(optimizer, eta, alpha, batch, d)
        b = jnp.asarray(opt.batch, ds.dtype)
        iterations = flops / (d * b)
        # t = k/d; budgets below one iteration are not reachable at this d
        ts = jnp.maximum(iterations, 1.0) / d
        risk = ode(prob, opt, ts).risk
        return jnp.where(iterations >= 1.0, risk, jnp.nan)

    # vmap in batches: the resolvent of one d holds a few (num_modes x population bins)
    # complex arrays (~0.7 GB at 2048 modes, v = 1e6), so a 40-point grid at once would not fit
    return jax.lax.map(one, ds, batch_size=min(int(ds.shape[0]), _lanes(v, num_modes)))


def _lanes(v: int, num_modes: int) -> int:
    """Model sizes solved side by side: at most 8, and ~4 GB of resolvent work arrays."""
    per_lane = 4 * 16 * num_modes * population_bins(v)[1].size
    return int(max(1, min(_LANES, _MEMORY // per_lane)))


class ComputeOptimal(eqx.Module):
    r"""The compute-optimal frontier of one $(\alpha, \beta)$ (module docstring).

    - `alpha`, `beta`, `batch`; `flops` $(F,)$, `ds` $(D,)$, `loss` $(D, F)$ the table
      $P(f; d)$;
    - `d_opt`, `loss_opt` $(F,)$: $d^*(f)$, $P^*(f)$ (NaN where the minimum is at the grid's
      edge); `interior` $(F,)$ where it is not;
    - `d_exponent`, `loss_exponent`: the fitted $a$, $b$ ($d^*\propto f^a$,
      $P^*\propto f^{-b}$) over `fit_mask` $(F,)$;
    - `paper`: [`PhaseExponents`][hsgd.scaling.PhaseExponents] of 2405.15074 (None outside
      the implemented phases).
    """

    alpha: float
    beta: float
    batch: float
    flops: np.ndarray
    ds: np.ndarray
    loss: np.ndarray
    d_opt: np.ndarray
    loss_opt: np.ndarray
    interior: np.ndarray
    fit_mask: np.ndarray
    d_exponent: float
    loss_exponent: float
    paper: PhaseExponents | None

    def summary(self) -> dict:
        """Measured and paper exponents as a JSON-ready dict."""
        out = {"alpha": self.alpha, "beta": self.beta, "batch": self.batch,
               "d_exponent": self.d_exponent, "loss_exponent": self.loss_exponent,
               "budgets_fitted": int(np.sum(self.fit_mask))}
        if self.paper is not None:
            out.update(phase=self.paper.phase, paper_d_exponent=self.paper.d_exponent,
                       paper_loss_exponent=self.paper.loss_exponent)
        return out

    def figure(self, as_png: bool = False):
        """The loss curves $P(f; d)$ for every $d$ of the grid with the compute-optimal
        envelope, and $d^*(f)$ with its fit (matplotlib figure, or PNG bytes)."""
        from ._plot import scaling_figure

        return scaling_figure(self, as_png=as_png)


def envelope(ds, flops, loss):
    r"""$d^*(f)$, $P^*(f)$ and the interior mask from a table `loss` $(D, F)$ of $P(f; d)$ on
    the increasing grid `ds`: per budget the grid's best point, refined by the vertex of the
    parabola through $\log P$ at its neighbours in $\log d$ (exact for a quadratic), NaN
    where the best point is at the grid's edge or a neighbour is missing."""
    ds, flops, loss = (np.asarray(x, float) for x in (ds, flops, loss))
    x = np.log(ds)
    y = np.log(np.where(np.isfinite(loss) & (loss > 0), loss, np.nan))
    d_opt = np.full(flops.shape, np.nan)
    p_opt = np.full(flops.shape, np.nan)
    for f in range(flops.size):
        col = y[:, f]
        if not np.any(np.isfinite(col)):
            continue
        i = int(np.nanargmin(col))
        if i == 0 or i == ds.size - 1 or not np.all(np.isfinite(col[i - 1:i + 2])):
            continue
        c = np.polyfit(x[i - 1:i + 2], col[i - 1:i + 2], 2)  # through the three points
        xv = -c[1] / (2 * c[0]) if c[0] > 0 else x[i]
        xv = float(np.clip(xv, x[i - 1], x[i + 1]))
        d_opt[f], p_opt[f] = np.exp(xv), np.exp(np.polyval(c, xv))
    return d_opt, p_opt, np.isfinite(d_opt)


def fit_exponents(flops, d_opt, loss_opt, mask):
    r"""Least-squares slopes of $\log d^*$ and $-\log P^*$ against $\log f$ over `mask`
    (NaN with fewer than 3 budgets)."""
    m = np.asarray(mask, bool) & np.isfinite(d_opt) & np.isfinite(loss_opt)
    if m.sum() < 3:
        return float("nan"), float("nan")
    lf = np.log(np.asarray(flops, float)[m])
    a = np.polyfit(lf, np.log(d_opt[m]), 1)[0]
    b = -np.polyfit(lf, np.log(loss_opt[m]), 1)[0]
    return float(a), float(b)


def _default_ds(flops, batch, v):
    top = min(np.sqrt(float(np.max(flops)) / float(batch)), v / 4)
    return np.geomspace(8.0, max(top, 64.0), 48)


def compute_optimal(alpha, beta, flops, *, ds=None, v: int = 10**6, batch=1, eta=None,
                    optimizer=None, num_modes: int = 2048, fit_range=None, max_fit_d=None,
                    fit_decades=None) -> ComputeOptimal:
    r"""The compute-optimal frontier of SGD (or `optimizer`) on PLRF at $(\alpha, \beta)$: the
    table $P(f; d)$ ([`loss_curves`][hsgd.scaling.loss_curves], one jitted call), $d^*(f)$ and
    $P^*(f)$ ([`envelope`][hsgd.scaling.envelope]) and their fitted exponents beside the
    paper's ([`paper_exponents`][hsgd.scaling.paper_exponents]).

    **Arguments:** `flops` the budgets $f = dBk$ (increasing, log-spaced is best); `ds` the
    model sizes (default 48 log-spaced from 8 to $\min(\sqrt{f_{\max}/B}, v/4)$); `fit_range`
    `(f_lo, f_hi)`, the budgets the exponents are fitted over (default all interior ones);
    `max_fit_d`: leave out budgets whose $d^*$ exceeds it (the deterministic spectrum on
    `num_modes` modes resolves $d\lesssim 4096\,(\text{num\_modes}/1024)^2$; past that its
    bias stalls $d^*$); `fit_decades`: fit only the top that many decades of what remains;
    the rest as for [`loss_curves`][hsgd.scaling.loss_curves].

    Measured (`benchmarks/scaling.py`: $d\in[16, 16384]$, 40 sizes, $f\in[10^5, 10^{12}]$,
    2048 modes, `max_fit_d=8192`, `fit_decades=3`): $(a, b)$ = (0.340, 0.528) at
    $(\alpha, \beta) = (1, 0.3)$ against the paper's (0.333, 0.533) (phase I); (0.407, 0.704)
    at (1, 0.7) against (0.412, 0.706) (II); (0.508, 0.650) at (0.7, 0.8) against
    (0.500, 0.643) (III).

    """
    flops = np.asarray(flops, float)
    if flops.ndim != 1 or flops.size < 3 or np.any(np.diff(flops) <= 0) or flops[0] <= 0:
        raise ValueError(f"flops must be at least 3 increasing positive budgets, got {flops!r}")
    ds = _default_ds(flops, batch if optimizer is None else 1, v) if ds is None else \
        np.asarray(ds, float)
    if ds.ndim != 1 or ds.size < 3 or np.any(np.diff(ds) <= 0):
        raise ValueError(f"ds must be at least 3 increasing model sizes, got {ds!r}")
    table = np.asarray(loss_curves(alpha, beta, ds, flops, v=v, batch=batch, eta=eta,
                                   optimizer=optimizer, num_modes=num_modes))
    return _frontier(alpha, beta, batch, ds, flops, table, fit_range, max_fit_d, fit_decades)


def _frontier(alpha, beta, batch, ds, flops, table, fit_range=None, max_fit_d=None,
              fit_decades=None) -> ComputeOptimal:
    d_opt, p_opt, interior = envelope(ds, flops, table)
    mask = interior.copy()
    if max_fit_d is not None:
        mask &= np.nan_to_num(d_opt, nan=np.inf) <= float(max_fit_d)
    if fit_range is not None:
        lo, hi = map(float, fit_range)
        mask &= (flops >= lo) & (flops <= hi)
    if fit_decades is not None and mask.any():
        mask &= flops >= flops[mask].max() / 10 ** float(fit_decades)
    a, b = fit_exponents(flops, d_opt, p_opt, mask)
    try:
        paper = paper_exponents(alpha, beta)
    except ValueError:
        paper = None
    return ComputeOptimal(alpha=float(alpha), beta=float(beta), batch=float(batch), flops=flops,
                          ds=ds, loss=table, d_opt=d_opt, loss_opt=p_opt, interior=interior,
                          fit_mask=mask, d_exponent=a, loss_exponent=b, paper=paper)


def phase_diagram(points, flops, *, ds=None, v: int = 10**6, batch=1, eta=None,
                  num_modes: int = 2048, fit_range=None, max_fit_d=None,
                  fit_decades=None) -> list[ComputeOptimal]:
    r"""[`compute_optimal`][hsgd.scaling.compute_optimal] at each $(\alpha, \beta)$ of `points`
    (a sequence of pairs) on one shared grid of budgets and model sizes: the tables are one
    jitted call (`lax.map` over the points of the `vmap` over $d$), the envelopes and fits
    per point. Compare `res.d_exponent, res.loss_exponent` with `res.paper`."""
    pts = np.asarray(points, float).reshape(-1, 2)
    flops = np.asarray(flops, float)
    ds = _default_ds(flops, batch, v) if ds is None else np.asarray(ds, float)
    if np.any(ds >= v):
        raise ValueError(f"phase_diagram needs d < v = {v}; raise v")
    tables = np.asarray(_phase_tables(jnp.asarray(pts), jnp.asarray(ds), jnp.asarray(flops),
                                      int(v), batch, eta, int(num_modes)))
    return [_frontier(a, b, batch, ds, flops, t, fit_range, max_fit_d, fit_decades)
            for (a, b), t in zip(pts, tables)]


@eqx.filter_jit
def _phase_tables(points, ds, flops, v, batch, eta, num_modes):
    return jax.lax.map(lambda p: _loss_table(p[0], p[1], ds, flops, v, batch, eta, None,
                                             num_modes), points)


def compute_horizon(flops, d, batch=1) -> float:
    r"""The time $t = k/d$ a budget of `flops` $= d\,B\,k$ buys at model size $d$ and batch
    $B$: $T = f/(d^2B)$."""
    f, d, b = float(flops), float(d), float(batch)
    if not (f > 0 and d >= 1 and b >= 1):
        raise ValueError(f"compute_horizon needs flops > 0, d >= 1, batch >= 1; got "
                         f"flops={flops!r}, d={d!r}, batch={batch!r}")
    return f / (d * d * b)


def at_compute(problem: Problem, flops, *, batch=1, eta=None, alpha=None,
               num_times: int = 41) -> Predictor:
    r"""The [`Predictor`][hsgd.Predictor] of SGD on a PLRF `problem` (sampled: it has an
    instance for the SGD check) at a fixed budget of `flops` $= dBk$: horizon
    [`compute_horizon`][hsgd.scaling.compute_horizon], the exact finite-$d$ dynamics of SPEC
    §8 (not the $d\to\infty$ ODE `tune` uses by default on least squares: at PLRF's
    $\gamma\lambda_{\max}/d = O(1)$ the two differ by 10–30%), template stepsize
    $\gamma = \eta d$ with `eta` (default [`default_eta`][hsgd.scaling.default_eta]`(alpha,
    batch)`; `alpha` is needed then). Pass it to [`tune`][], [`baselines`][] (with
    `include=(..., "wsd")`) and [`compare`][]."""
    d = int(problem.d)
    if eta is None:
        if alpha is None:
            raise ValueError("at_compute: give eta (per iteration) or alpha (for default_eta)")
        eta = float(default_eta(alpha, batch))
    T = compute_horizon(flops, d, batch)
    ts = np.linspace(0.0, T, int(num_times))
    return Predictor(problem, ts, SGD(eta * d, batch=batch), ode_options={"finite_d": True})


def tune_at_compute(problem: Problem, flops, family="knots", *, batch=1, eta=None, alpha=None,
                    include=("constant", "cosine", "wsd"), **tune_kwargs):
    r"""Tune SGD's schedule on a PLRF `problem` at a fixed budget of `flops` (issue 19): the
    [`at_compute`][hsgd.scaling.at_compute] predictor, [`tune`][] from the best constant
    stepsize, and the [`baselines`][] named in `include` on the same predictor (the constant
    grid: 40 log values in $\gamma_0\cdot[0.05, 4]$, $\gamma_0 = \eta d$). Returns
    `(TuneResult, dict name -> Candidate)`; check both on SGD with
    [`compare`][]`(result.predictor, {...}, key=...)`. The batch is fixed: at a fixed flop
    budget the horizon depends on it; [`batch_at_compute`][hsgd.scaling.batch_at_compute]
    searches it on a grid."""
    pred = at_compute(problem, flops, batch=batch, eta=eta, alpha=alpha)
    # the constant grid around the template's gamma = eta d (PLRF's gamma is O(d), not O(1))
    gamma0 = float(pred.optimizer.schedule(0.0))
    base = baselines(pred, include=tuple(include), gammas=gamma0 * np.geomspace(0.05, 4.0, 40))
    tune_kwargs.setdefault("init_gamma", base["constant"].parameters["gamma"]
                           if "constant" in base else None)
    res = tune(pred, family, float(pred.ts[-1]), **tune_kwargs)
    return res, base


def batch_at_compute(problem: Problem, flops, batches=(1, 2, 4, 8, 16), family="knots", *,
                     eta=None, alpha=None, include=("constant", "wsd"), **tune_kwargs) -> dict:
    r"""The batch at a fixed flop budget: [`tune_at_compute`][hsgd.scaling.tune_at_compute]
    for each batch $B$ of `batches` (the horizon $f/(d^2B)$ depends on $B$, so the batch is
    searched on a grid, the schedule tuned by gradient at each). Returns a dict with
    `batches`, `tuned` (the predicted final loss of each tuned schedule), `results` (batch ->
    `(TuneResult, baselines)`) and `best` (the batch with the lowest tuned loss).

    In the $d\to\infty$ ODE at a fixed number of samples $Bk$ only $\gamma/B$ matters (SPEC §1:
    substitute $s = Bt$), so every batch reaches the same loss; at finite $d$ the
    self-interaction $(1 + 1/B)\gamma^2\lambda^2$ of SPEC §8 favours larger batches on the top
    modes, which this search measures."""
    batches = [int(b) for b in batches]
    if not batches or any(b < 1 for b in batches):
        raise ValueError(f"batches must be integers >= 1, got {batches!r}")
    results, tuned = {}, []
    for b in batches:
        res, base = tune_at_compute(problem, flops, family, batch=b, eta=eta, alpha=alpha,
                                    include=include, **tune_kwargs)
        results[b] = (res, base)
        tuned.append(float(np.min(res.loss_history)))
    return {"batches": batches, "tuned": tuned, "results": results,
            "best": batches[int(np.argmin(tuned))]}
