r"""The deterministic equivalent of one-pass SGD (SPEC §1): a per-mode ODE integrated by diffrax.

Per eigen-direction $j$ of $K$ the $p\times p$ matrix $V_j$ solves

$$\frac{dV_j}{dt} = -\gamma_t\lambda_j\,(G V_j + V_j G^\top) + \frac{\gamma_t^2\lambda_j}{\beta}E_m,
\qquad B(t) = \sum_j \omega_j\lambda_j V_j(t),$$

with $G = \begin{pmatrix}J(B)\\0\end{pmatrix}$, $E_m = \operatorname{blockdiag}(I(B), 0)$, time
$t = k/d$ ($k$ SGD iterations, step $\gamma_k/d$, mini-batch $\beta$). The risk is $h(B(t))$, any
statistic $g(W^\top q(K) W)$ is $g(\sum_j \omega_j q(\lambda_j) V_j(t))$, and the critical
learning rate is
$\gamma_{\rm crit} = 2\beta A(B)/((\operatorname{tr}K/d)\, \operatorname{tr} I(B))$.
"""

from collections.abc import Callable

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from .._blowup import after_first, nan_where
from .._loss.least_squares import LeastSquares
from .._optimizer import SGD
from .._problem import FiniteProblem, Problem
from .._registry import register
from .._results import Solution
from .streaming_exact import check_finite_d, exact_recursion
from .structured import (
    AbstractModeDynamics,
    ModeSystem,
    StructuredKvaerno5,
    _mT,
    checked_times,
    contract,
    default_tolerances,
    initial_state,
    min_step,
    output_controller,
)


class Statistic(eqx.Module):
    r"""A statistic $\varphi(X) = g(W^\top q(K) W)$ with deterministic equivalent
    $g\big(\sum_j \omega_j q(\lambda_j) V_j(t)\big)$ (SPEC §1).

    **Arguments:**

    - `g`: function of the $p\times p$ matrix, returning a scalar (or any array).
    - `q`: function of the eigenvalue (vectorised), default $q \equiv 1$.

    Example — the squared norm of the student, $\|X\|^2$ for $m = 1$:
    `Statistic(lambda S: S[0, 0])`; the cosine with the target in the $K$-geometry is
    available directly from `Solution.B`.
    """

    g: Callable = eqx.field(static=True)
    q: Callable = eqx.field(static=True, default=jnp.ones_like)

    def __call__(self, eigenvalues, weights, V):
        return self.g(jnp.tensordot(weights * self.q(eigenvalues), V, axes=1))


def _identity(lam):
    return lam


def drift(problem: Problem, V, gamma, batch, inv_d=None):
    r"""The right-hand side $dV_j/dt$ for all modes (exposed for solvers and tests).

    With `inv_d` $= 1/d$ (least squares only) it adds the finite-$d$ self-interaction of
    SPEC §8, $(1 + 1/\beta)(\gamma^2\lambda_j^2/d)\,GV_jG^\top$."""
    lam = problem.spectrum.eigenvalues
    loss = problem.loss
    m, p = loss.m, loss.p
    B = problem.spectrum.weighted_sum(V, q=_identity)
    mom = loss.moments(B)
    G = jnp.zeros((p, p), V.dtype).at[:m, :].set(mom.J)
    E = jnp.zeros((p, p), V.dtype).at[:m, :m].set(mom.I)
    GV = jnp.einsum("ab,jbc->jac", G, V)
    lin = GV + jnp.swapaxes(GV, -1, -2)
    out = -gamma * lam[:, None, None] * lin + (gamma**2 / batch) * lam[:, None, None] * E
    if inv_d is not None:
        GVG = jnp.einsum("jac,bc->jab", GV, G)
        out = out + ((1 + 1 / batch) * gamma**2 * inv_d) * lam[:, None, None] ** 2 * GVG
    return out


def _observe(problem: Problem, V, gamma, batch, statistics):
    return _finish(problem, _snapshot(problem, V, statistics), gamma, batch)


def _snapshot(problem: Problem, V, statistics):
    """The cheap part of an observation (linear in V): B, the unweighted sum S (for the
    distance) and the statistics. `_solve` saves only this at the output times, so the
    quadrature behind the moments runs once per saved time after the solve instead of inside
    the solver's save loop (which, under `vmap`, runs for every point whenever any point of the
    batch crosses an output time)."""
    lam, w = problem.spectrum.eigenvalues, problem.spectrum.weights
    snap = dict(B=problem.spectrum.weighted_sum(V, q=_identity),
                statistics={k: s(lam, w, V) for k, s in statistics.items()})
    m = problem.loss.m
    if m == problem.loss.m_star:
        P = jnp.concatenate([jnp.eye(m), -jnp.eye(m)], axis=1).astype(V.dtype)
        snap["distance"] = jnp.trace(P @ problem.spectrum.weighted_sum(V) @ P.T)
    return snap


def _finish(problem: Problem, snap, gamma, batch):
    """The observation from a snapshot: risk, distance and critical learning rate."""
    B = snap["B"]
    loss = problem.loss
    mom = loss.error_moments(B, snap["E"]) if "E" in snap else loss.moments(B)
    if loss.m == loss.m_star:
        distance = snap["distance"]
        gamma_crit = 2 * batch * mom.A / (problem.spectrum.mean() * jnp.trace(mom.I))
    else:
        distance = gamma_crit = jnp.full((), jnp.nan, B.dtype)
    return dict(risk=mom.h, B=B, distance=distance, gamma=gamma, gamma_crit=gamma_crit,
                statistics=snap["statistics"])


def least_squares_as_finite(problem: Problem, batch) -> FiniteProblem:
    r"""One-pass SGD on least squares as the finite-data variance ODE (SPEC §1 → §2).

    For `LeastSquares` ($J(B) = (1, -1)$, $I(B) = 2h$) the ODE above closes on the per-mode
    error second moments $u_j = (V_j)_{11} - 2(V_j)_{12} + (V_j)_{22}$:

    $$u_j' = -2\gamma_t\lambda_ju_j + \frac{\gamma_t^2\lambda_j}{\beta}\Big(\sigma^2
    + \sum_k\omega_k\lambda_ku_k\Big),\qquad h = \tfrac12\Big(\sigma^2 + \sum_k\omega_k\lambda_k
    u_k\Big),$$

    which is the finite-data ODE of `hsgd._dynamics.finite_sgd.ode` (with
    $E e^2 = m^2 + \operatorname{Var}
    e$) for $n = 1$, counts $\nu_j = \omega_j/\beta$, no ridge, $L_{\min} = \sigma^2/(2\beta)$
    and $e_j(0)^2 = u_j(0)$: its training loss is $\psi = h/\beta$. Diagonal plus rank one, so
    [`LinearKvaerno5`][] solves its stages exactly — much cheaper than a Newton iteration on
    the $J\times p\times p$ system, forward and in reverse mode. `batch` may be traced.

    This is the $d\to\infty$ form (SPEC §1): it has no finite-$d$ self-interaction (SPEC §8),
    so it matches `hsgd.ode(..., finite_d=False)`.
    """
    if not isinstance(problem.loss, LeastSquares):
        raise TypeError(f"least_squares_as_finite needs a LeastSquares loss, got "
                        f"{type(problem.loss).__name__}")
    V0 = problem.V0
    dtype = V0.dtype
    batch = jnp.asarray(batch, dtype)
    u0 = jnp.maximum(V0[:, 0, 0] - 2.0 * V0[:, 0, 1] + V0[:, 1, 1], 0.0)
    lam = problem.spectrum.eigenvalues.astype(dtype)
    sigma = problem.loss.noise.std.astype(dtype)
    return FiniteProblem(eigenvalues=lam, counts=problem.spectrum.weights.astype(dtype) / batch,
                         init_error=jnp.sqrt(u0), x_opt_coords=jnp.zeros_like(lam),
                         loss_min=0.5 * sigma**2 / batch, ridge=jnp.zeros((), dtype), n=1)


class SGDModes(AbstractModeDynamics):
    r"""The per-mode ODE of one-pass SGD (SPEC §1) in the form [`StructuredKvaerno5`][] solves.

    When $m = m^*$ the moments are those of $[X - X^* \mid X^*]$ (error coordinates:
    $U_j = PV_jP^\top$, $P = \begin{pmatrix}I & -I\\0 & I\end{pmatrix}$), in which the drift
    reads $C' = -\gamma\lambda J_xC - \gamma\lambda(J_x + J_*)T$,
    $F' = -\gamma\lambda(J_xF + FJ_x^\top + (J_x + J_*)C^\top + C(J_x + J_*)^\top)
    + \frac{\gamma^2\lambda}{\beta}I(B)$: for least squares ($J_x + J_* = 0$) the error block
    decouples from the target, and the decaying risk is a state variable instead of the
    difference $B_{11} - 2B_{12} + B_{22}$. Otherwise $U_j = V_j$.

    Least squares at finite $d$ (`inv_d` $= 1/d$, SPEC §8): the error block gains the exact
    self-interaction, $F_j' \mathrel{+}= (1 + 1/\beta)(\gamma^2\lambda_j^2/d)\,F_j$, so that
    $dv_j/dt = -(2\gamma\lambda_j - (1 + 1/\beta)\gamma^2\lambda_j^2/d)\,v_j
    + (\gamma^2\lambda_j/\beta)\,2h$ (the $C$ block, a first moment, is unchanged); it enters
    as the free block's own generator (`ModeSystem.A_free`), so the stage solves stay exact.
    `inv_d = None` is the $d\to\infty$ form of SPEC §1. Mode $j$ is stored in units
    of $s_j = \operatorname{tr}U_j(0)$ (floored at $10^{-6}$ of the mean), so the solver's
    tolerances are relative to each mode's own size; the mode axis is last. The summary is the
    upper triangle of $B_{xx}$ and $B_{x*}$ ($B_{**}$ is constant).
    """

    loss: object
    schedule: object
    batch: Array
    lam: Array
    scale: Array
    target: Array
    B_target: Array
    weighted: Array
    mass: Array
    error_coords: bool = eqx.field(static=True)
    affine: bool = eqx.field(static=True)
    inv_d: Array | None = None

    @classmethod
    def from_problem(cls, problem: Problem, schedule, batch, finite_d: bool = False):
        """The dynamics and the initial blocks `(F, C)` (mode axis last) of a problem;
        `finite_d`: the exact finite-$d$ form of least squares (SPEC §8; needs `problem.d`)."""
        loss = problem.loss
        m, ms = loss.m, loss.m_star
        V0 = jnp.moveaxis(problem.V0, 0, -1)  # (p, p, J)
        ec = m == ms
        if ec:
            Vxx, Vxt, Vtt = V0[:m, :m], V0[:m, m:], V0[m:, m:]
            U = jnp.concatenate([
                jnp.concatenate([Vxx - Vxt - _mT(Vxt) + Vtt, Vxt - Vtt], axis=1),
                jnp.concatenate([_mT(Vxt) - Vtt, Vtt], axis=1)], axis=0)
        else:
            U = V0
        dtype = V0.dtype
        w = problem.spectrum.weights.astype(dtype)
        lam = problem.spectrum.eigenvalues.astype(dtype)
        tr = jnp.trace(U)
        mean_tr = jnp.sum(w * tr)
        scale = jnp.maximum(tr, 1e-6 * jnp.where(mean_tr > 0, mean_tr, 1.0))
        Us = U / scale
        target = Us[m:, m:]
        weighted = w * lam * scale
        inv_d = None
        if finite_d:
            check_finite_d(problem)
            inv_d = jnp.asarray(1.0 / problem.d, dtype)
        dyn = cls(loss=loss, schedule=schedule, batch=batch, lam=lam, scale=scale,
                  target=target, B_target=contract(target, weighted), weighted=weighted,
                  mass=w * scale, error_coords=ec, affine=isinstance(loss, LeastSquares),
                  inv_d=inv_d)
        return dyn, Us[:m, :m], Us[:m, m:]

    @property
    def m(self):
        return self.loss.m

    @property
    def forcing_only(self):
        # Least squares: J(B) is constant, only I(B) = 2h(B) depends on the summary.
        return isinstance(self.loss, LeastSquares)

    @property
    def _target_decoupled(self):
        # Least squares in error coordinates: J_x + J_* = 0 exactly (J = [I | -I]), so the
        # target does not drive the blocks (A_target = 0, skipped by the solver).
        return self.error_coords and isinstance(self.loss, LeastSquares)

    def _blocks(self, F, C):
        """The per-mode $V_{xx}$, $V_{x*}$ blocks (scaled) in the original coordinates."""
        if self.error_coords:
            return F + C + _mT(C) + self.target, C + self.target
        return F, C

    def summary_linear(self, F, C):
        # The weighted sums of the state blocks themselves: in error coordinates E = Cov(x - x*)
        # and Cov(x - x*, x*), so the decaying E is never a difference of large numbers.
        # Upper triangle of F and all of C, by static slices (no gather).
        SF = contract(F, self.weighted)
        return jnp.concatenate([SF[a, a:] for a in range(self.m)]
                               + [contract(C, self.weighted).ravel()])

    def summary_offset(self):
        m = self.m
        return jnp.zeros(m * (m + 1) // 2 + m * self.loss.m_star, self.B_target.dtype)

    def _unpack(self, u):
        m = self.m
        k = m * (m + 1) // 2
        # Rows of the upper triangle (static slices), mirrored.
        starts = np.cumsum([0] + [m - a for a in range(m)])
        Sxx = jnp.stack([jnp.concatenate([jnp.zeros((a,), u.dtype), u[starts[a]:starts[a + 1]]])
                         for a in range(m)])
        Sxx = Sxx + jnp.triu(Sxx, 1).T
        # B's part of the summary only (a subclass may append more sums after it).
        return Sxx, u[k:k + m * self.loss.m_star].reshape(m, -1)

    def B(self, u):
        """$B$ $(p, p)$ from the summary vector."""
        Sxx, Sxt = self._unpack(u)
        if self.error_coords:  # x = (x - x*) + x*
            Sxx, Sxt = Sxx + Sxt + Sxt.T + self.B_target, Sxt + self.B_target
        return jnp.concatenate([jnp.concatenate([Sxx, Sxt], axis=1),
                                jnp.concatenate([Sxt.T, self.B_target], axis=1)], axis=0)

    def moments(self, u):
        """The loss's moments at the summary (from the error block when there is one)."""
        if self.error_coords:
            return self.loss.error_moments(self.B(u), self._unpack(u)[0])
        return self.loss.moments(self.B(u))

    def learning_rate(self, t, u, aux, mom):
        r"""$\gamma$ at $(t, u, a)$ given the loss's moments at $u$, and the auxiliary rates
        $a'$: the schedule $\gamma(t)$ and none for SGD. The hook through which a state-feedback
        stepsize (SPEC §10, [`AdaptiveModes`][hsgd._dynamics.streaming_adaptive.AdaptiveModes])
        reuses this per-mode system."""
        return self.schedule(t).astype(u.dtype), jnp.zeros((0,), u.dtype)

    def system(self, t, u, aux):
        dtype = u.dtype
        mom = self.moments(u)
        g, aux_rate = self.learning_rate(t, u, aux, mom)
        m = self.m
        Jx, Jt = mom.J[:, :m], mom.J[:, m:]
        if self.error_coords:
            Jt = Jx + Jt
        rate = -g * self.lam
        A = Jx[:, :, None] * rate
        A_free = None
        if self.inv_d is not None:  # SPEC §8: F' += (1 + 1/beta) g^2 lam^2 / d F
            self_rate = (1 + 1 / self.batch) * g**2 * self.inv_d * self.lam**2
            A_free = A + 0.5 * jnp.eye(m, dtype=dtype)[:, :, None] * self_rate
        noise = (g**2 / self.batch) * self.lam / self.scale
        return ModeSystem(A=A, A_target=None if self._target_decoupled else Jt[:, :, None] * rate,
                          target=self.target, forcing=mom.I[:, :, None] * noise,
                          aux_rate=aux_rate, A_free=A_free,
                          **self._factored_forcing(mom.I, jnp.eye(m, dtype=dtype), noise))

    def _factored_forcing(self, cov, outer, noise):
        r"""For least squares (`forcing_only`), the forcing
        $N_j = (\mathrm{outer}\otimes I)\,\mathrm{noise}_j$ factored as
        $\sum_{ab}I_{ab}\,(\mathrm{outer}\otimes E_{ab})\,\mathrm{noise}_j$ (`ModeSystem`): only
        the residual covariance $I$ (`cov`) depends on the summary."""
        if not self.forcing_only:
            return {}
        m = cov.shape[0]
        units = jnp.eye(m * m, dtype=cov.dtype).reshape(m * m, m, m)
        basis = jnp.stack([jnp.kron(outer, e) for e in units])
        return dict(forcing_coef=cov.ravel(), forcing_basis=basis[..., None] * noise)

    def error_weights(self):
        # B's weights (so the risk) and the distance's (in error coordinates), each normalised
        # by its sum, so that the aggregates start at O(1) (every scaled mode has trace 1) and
        # atol is relative to the problem's own size.
        w = jnp.stack([self.weighted, self.mass])
        total = jnp.sum(w, axis=1, keepdims=True)
        return w / jnp.where(total > 0, total, 1.0)

    def error_floor(self):
        # The free-target block enters B_x* = sum_j w_j C_j + B_** (and the distance) next to
        # the target's own aggregate; in error coordinates it decays to zero, so its error is
        # held relative to the target's aggregate (entry (a, b): that of T_bb) instead.
        m, ms = self.m, self.loss.m_star
        diag = jnp.stack([self.target[b, b] for b in range(ms)])  # (m*, J)
        T = contract(jnp.abs(diag)[:, None, :], self.error_weights())  # (m*, W)
        W = T.shape[-1]
        return dict(F=jnp.zeros((m, m, W), T.dtype),
                    C=jnp.broadcast_to(T[None], (m, ms, W)))

    def snapshot(self, problem: Problem, y, statistics):
        r"""B, the distance $\|X - X^*\|^2$ and the statistics from the solver state."""
        F, C = y["F"], y["C"]
        u = y["u"]  # the summary, kept up to date by the solver
        snap = dict(B=self.B(u))
        if self.error_coords:
            snap["E"] = self._unpack(u)[0]
        w = problem.spectrum.weights.astype(F.dtype)
        if self.error_coords:
            snap["distance"] = contract(jnp.trace(F), self.mass)
        if statistics:
            Vxx, Vxt = self._blocks(F, C)
            V = jnp.concatenate([jnp.concatenate([Vxx, Vxt], axis=1),
                                 jnp.concatenate([_mT(Vxt), self.target], axis=1)], axis=0)
            V = jnp.moveaxis(V * self.scale, -1, 0)
            lam = problem.spectrum.eigenvalues
            snap["statistics"] = {k: s(lam, w, V) for k, s in statistics.items()}
        else:
            snap["statistics"] = {}
        return snap


@register("ode", Problem, SGD)
def ode(problem: Problem, optimizer: SGD, ts, *, statistics: dict | None = None,
        rtol: float | None = None, atol: float | None = None,
        solver: diffrax.AbstractSolver | None = None,
        stepsize_controller: diffrax.AbstractStepSizeController | None = None,
        dt0=None, adjoint: diffrax.AbstractAdjoint | None = None, max_steps: int = 200_000,
        blowup: float = 1e6, finite_d: bool | None = None, recursion: bool = False) -> Solution:
    r"""Solve the deterministic equivalent of one-pass SGD (SPEC §1) on the times `ts`: the
    cell [`Problem`][] × [`SGD`][] of [`hsgd.ode`][].

    Least squares on a problem with a finite $d$ (an instance:
    [`Problem.random`][hsgd.Problem.random], [`Problem.from_arrays`][hsgd.Problem.from_arrays],
    [`Problem.plrf`][hsgd.Problem.plrf]) is solved at that $d$ by default: the exact
    continuous form of SPEC §8,

    $$\frac{dv_j}{dt} = -\Big(2\gamma\lambda_j - \big(1 + \tfrac1\beta\big)
    \frac{\gamma^2\lambda_j^2}{d}\Big)v_j + \frac{\gamma^2\lambda_j}{\beta}\,2h,\qquad
    2h = \sum_j\omega_j\lambda_jv_j + \sigma^2,$$

    whose self-interaction term the $d\to\infty$ ODE drops (relative size
    $\gamma\lambda_j/d$: negligible for bounded $\lambda$, 10–30% on power laws whose top
    eigenvalues are $O(d)$). `finite_d=False` solves the $d\to\infty$ form instead;
    `recursion=True` runs the exact per-iteration recursion of SPEC §8 instead of any ODE
    ([`exact_recursion`][hsgd._dynamics.streaming_exact.exact_recursion]: exact also during the
    first iterations of modes with $\gamma\lambda_j/d = O(1)$, $O(d)$ per iteration). Both
    finite-$d$ forms diverge exactly where SPEC §8's bound
    ([`hsgd.theory.finite_d_stability`][]) fails, and report it (`diverged`,
    `divergence_time`).

    The default solver, when the positive eigenvalues span more than a factor 100 (power laws:
    stiff), is [`StructuredKvaerno5`][] (SPEC §6): L-stable, with the stiff per-mode linear part
    solved exactly inside each implicit stage, error control on the aggregates of the moments of
    $X - X^*$ that the outputs are made of, and the solve stepping onto every output time. It
    is right on stiff spectra ($\gamma\lambda_{\max}t$ up to $10^{12}$) at a cost linear in
    the number of modes. On narrower spectra the default is `diffrax.Tsit5()` (explicit, cheaper
    there); pass `solver=hsgd.StructuredKvaerno5()` to use the structured solver anyway.

    **Arguments:**

    - `problem`: a [`Problem`][] (loss, spectrum, initial per-mode moments).
    - `optimizer`: [`SGD`][]: its learning rate $\gamma(t) \ge 0$ and mini-batch size
      $\beta$ (SGD averages $\beta$ per-sample gradients; continuous here).
    - `ts`: increasing output times $t = k/d \ge 0$ (the solve starts at 0).
    - `statistics`: optional dict name → [`Statistic`][].
    - `rtol`, `atol`: tolerances. For [`StructuredKvaerno5`][]: on the weighted aggregates of the
      moments, which start at $O(1)$ (`atol` is relative to their initial size); default
      $10^{-7}$ and $10^{-18}$, so the control stays relative until an aggregate has fallen
      eleven decades (the noiseless risk of the stiff benchmark falls nine by $t = 10$ at
      $10^6$ modes; each mode is held in its own units, so float64 resolves that) (float32:
      $10^{-5}$, $10^{-8}$, where rounding limits the resolution).
      On the stiff benchmark the global error of the risk is then about `rtol` itself
      (`benchmarks/stiff.py`). With another `solver` they go to its `PIDController`
      (defaults $10^{-7}$, $10^{-10}$).
    - `solver`: [`StructuredKvaerno5`][], or any diffrax solver integrating $V_j$ directly
      (e.g. `diffrax.Tsit5()`: explicit, for non-stiff spectra only). Default: see above.
    - `stepsize_controller`, `dt0`, `adjoint`, `max_steps`: passed to `diffrax.diffeqsolve`.
      Default adjoint `RecursiveCheckpointAdjoint()` (so `jax.grad` works).
    - `blowup`: the solve stops and reports divergence when $\max|B|$ exceeds
      `blowup` $\times (1 + \max|B(0)|)$.
    - `finite_d`: the exact finite-$d$ form (SPEC §8; least squares with an instance only).
      Default: `True` for least squares when `problem.d` is known, else `False`.
    - `recursion`: run the exact per-iteration recursion (least squares with an instance;
      `ts` rounded to iterations $k = \operatorname{round}(td)$; only `blowup` applies).

    **Returns:** a [`Solution`][].

    Example:

    ```python
    spec = hsgd.Spectrum.power_law(2000, 0.5)
    prob = hsgd.Problem.isotropic(hsgd.Logistic(), spec, target_norm=2.0)
    sol = hsgd.ode(prob, hsgd.SGD(1.0, batch=4), jnp.linspace(0, 10, 50))
    sol.risk
    ```
    """
    schedule, batch = optimizer.schedule, optimizer.batch
    statistics = {} if statistics is None else dict(statistics)
    if recursion:
        if finite_d is False:
            raise ValueError("recursion=True is the exact finite-d recursion (SPEC §8); it has "
                             "no d -> infinity form: drop finite_d=False or recursion=True")
        if statistics:
            raise ValueError("recursion=True records risk, B and distance; statistics need "
                             "the ODE (recursion=False)")
        return exact_recursion(problem, optimizer, ts, blowup=blowup)
    finite_d = _resolve_finite_d(problem, finite_d)
    ts = checked_times(ts, rtol, atol, problem.V0.dtype)
    batch = jnp.asarray(batch, dtype=problem.V0.dtype)
    single = problem.V0.dtype == jnp.float32
    if solver is None and not _stiff(problem):
        solver = diffrax.Tsit5()
    if solver is None or isinstance(solver, StructuredKvaerno5):
        rtol, atol = default_tolerances(rtol, atol, ts.dtype)
        solver = StructuredKvaerno5() if solver is None else solver
        return _solve_structured(problem, schedule, ts, batch, statistics, solver, rtol, atol,
                                 stepsize_controller, adjoint, max_steps, blowup, finite_d)
    rtol = (1e-5 if single else 1e-7) if rtol is None else float(rtol)
    atol = (1e-8 if single else 1e-10) if atol is None else float(atol)
    return _solve(problem, schedule, ts, batch, statistics, solver, stepsize_controller, dt0,
                  adjoint, max_steps, blowup, rtol, atol, finite_d)


def _resolve_finite_d(problem: Problem, finite_d) -> bool:
    """`finite_d` given, or the default: least squares with a known d."""
    if finite_d is None:
        return isinstance(problem.loss, LeastSquares) and problem.d is not None
    if finite_d:
        check_finite_d(problem)
    return bool(finite_d)


# Spectra spanning more than this ratio (positive eigenvalues) are solved by
# StructuredKvaerno5 by default; narrower ones by Tsit5, which is cheaper there.
STIFF_RATIO = 100.0


def _stiff(problem: Problem) -> bool:
    """Whether the default solve should be the structured stiff one: the positive eigenvalues
    span more than `STIFF_RATIO` (or the spectrum is traced, when it cannot be told)."""
    lam = problem.spectrum.eigenvalues
    if isinstance(lam, jax.core.Tracer):
        return True
    lam = np.asarray(lam)
    lam = lam[lam > 0]
    return lam.size > 0 and float(lam.max()) > STIFF_RATIO * float(lam.min())


def _initial_step(controller, term, solver, ts, y0, args):
    """diffrax's own first step (Hairer's estimate from two evaluations of the field, for an
    adaptive controller; None otherwise) computed outside differentiation. Selected inside
    the solve, its reverse-mode derivative is NaN on stiff problems (the second evaluation, at
    $y_0 + h_0f(y_0)$ with a far too large $h_0$, overflows: measured on logistic regression
    over a power law of $10^4$ modes, every solver), and the first step is a tuning choice
    whose derivative is not wanted anyway."""
    inner = controller.controller if isinstance(
        controller, diffrax.ClipStepSizeController) else controller
    if not isinstance(inner, diffrax.AbstractAdaptiveStepSizeController):
        return None
    t0 = jnp.zeros((), ts.dtype)
    t1, _ = controller.init(term, t0, ts[-1], y0, None, args, solver.func,
                            solver.error_order(term))
    return jax.lax.stop_gradient(t1 - t0)


def _check(ts, batch, gammas):
    ts = eqx.error_if(ts, jnp.any(ts < 0) | jnp.any(jnp.diff(ts) < 0),
                      "ts must be non-negative and non-decreasing")
    batch = eqx.error_if(batch, ~(batch >= 1), "batch must be >= 1")
    ts = eqx.error_if(ts, ~jnp.all(gammas >= 0),
                      "the learning rate must be non-negative and finite at every output time")
    return ts, batch


@eqx.filter_jit
def _solve_structured(problem, schedule, ts, batch, statistics, solver, rtol, atol,
                      stepsize_controller, adjoint, max_steps, blowup, finite_d=False):
    gammas = jax.vmap(schedule)(ts)
    ts, batch = _check(ts, batch, gammas)
    dyn, F0, C0 = SGDModes.from_problem(problem, schedule, batch, finite_d)
    y0 = initial_state(dyn, F0, C0, jnp.zeros((0,), F0.dtype))
    return integrate_modes(problem, dyn, y0, ts, gammas, batch, statistics, solver, rtol, atol,
                           stepsize_controller, adjoint, max_steps, blowup)


def integrate_modes(problem, dyn, y0, ts, gammas, batch, statistics, solver, rtol, atol,
                    stepsize_controller, adjoint, max_steps, blowup) -> Solution:
    r"""Solve an [`SGDModes`][] system (or a subclass) from the solver state `y0` on `ts`
    (call inside `jit`): the error-controlled, output-clipped controller, the blow-up event on
    the summary, the snapshots at `ts`, assembled into a [`Solution`][]. `gammas` $(T,)$ is the
    learning rate reported; `None` saves the dynamics' own
    ([`SGDModes.learning_rate`][hsgd.SGDModes.learning_rate]) at each output time — a feedback
    stepsize (SPEC §10)."""
    stepsize_controller = output_controller(stepsize_controller, ts, rtol, atol)
    adjoint = diffrax.RecursiveCheckpointAdjoint() if adjoint is None else adjoint
    bound = blowup * (1 + jnp.max(jnp.abs(problem.B0())))

    def blew_up(t, y, args, **kwargs):
        return ~(jnp.max(jnp.abs(y["u"])) < bound)

    def save(t, y, args):
        out = dict(args.snapshot(problem, y, statistics), error=y["acc"])
        if gammas is None:
            out["gamma"] = args.learning_rate(t, y["u"], y["aux"], args.moments(y["u"]))[0]
        return out

    term = diffrax.ODETerm(lambda t, y, args: args.field(t, y))
    sol = diffrax.diffeqsolve(
        term, solver, t0=0.0, t1=ts[-1],
        dt0=_initial_step(stepsize_controller, term, solver, ts, y0, dyn), y0=y0, args=dyn,
        saveat=diffrax.SaveAt(ts=ts, fn=save),
        stepsize_controller=stepsize_controller, adjoint=adjoint,
        event=diffrax.Event(blew_up), max_steps=max_steps, throw=False)
    error = sol.ys.pop("error")
    if gammas is None:
        gammas = sol.ys.pop("gamma")
    return _assemble(problem, ts, gammas, batch, sol, bound, error)


@eqx.filter_jit
def _solve(problem, schedule, ts, batch, statistics, solver, stepsize_controller, dt0, adjoint,
           max_steps, blowup, rtol, atol, finite_d=False):
    gammas = jax.vmap(schedule)(ts)
    ts, batch = _check(ts, batch, gammas)
    inv_d = jnp.asarray(1.0 / problem.d, problem.V0.dtype) if finite_d else None
    if stepsize_controller is None:
        stepsize_controller = diffrax.PIDController(rtol=rtol, atol=atol, dtmin=min_step(ts))
    adjoint = diffrax.RecursiveCheckpointAdjoint() if adjoint is None else adjoint

    def vector_field(t, V, args):
        prob, sched, beta, inv = args
        return drift(prob, V, sched(t).astype(V.dtype), beta, inv)

    bound = blowup * (1 + jnp.max(jnp.abs(problem.B0())))

    def blew_up(t, V, args, **kwargs):
        B = args[0].spectrum.weighted_sum(V, q=_identity)
        return ~(jnp.max(jnp.abs(B)) < bound)

    def save(t, V, args):
        return _snapshot(args[0], V, statistics)

    term = diffrax.ODETerm(vector_field)
    sol = diffrax.diffeqsolve(
        term, solver, t0=0.0, t1=ts[-1], dt0=dt0, y0=problem.V0,
        args=(problem, schedule, batch, inv_d), saveat=diffrax.SaveAt(ts=ts, fn=save),
        stepsize_controller=stepsize_controller, adjoint=adjoint,
        event=diffrax.Event(blew_up), max_steps=max_steps, throw=False)
    return _assemble(problem, ts, gammas, batch, sol, bound,
                     jnp.full(ts.shape, jnp.nan, problem.V0.dtype))


def _assemble(problem, ts, gammas, batch, sol, bound, error) -> Solution:
    """The `Solution` from the saved snapshots: moments at the saved times (after the solve;
    unreached times hold inf: NaN below), divergence masks, and a loud error if the solver
    failed for any reason other than divergence (e.g. max_steps)."""
    out = jax.vmap(lambda snap, g: _finish(problem, snap, g, batch))(sol.ys, gammas)
    risk = out["risk"]
    bad = ~jnp.isfinite(risk) | ~(jnp.max(jnp.abs(out["B"]), axis=(-1, -2)) < bound)
    bad = bad | (jnp.arange(ts.shape[0]) >= jnp.sum(jnp.isfinite(sol.ts)))
    ok = (sol.result == diffrax.RESULTS.successful) | (sol.result == diffrax.RESULTS.event_occurred)
    risk = eqx.error_if(risk, ~ok, "the ODE solver failed (max_steps reached or step size "
                        "collapsed); pass a larger max_steps or a stiff solver")
    bad, diverged, divergence_time = after_first(ts, bad)  # NaN from the first bad time on

    def mask(x):
        return nan_where(bad, x)

    return Solution(
        ts=ts, risk=mask(risk), loss=None, B=mask(out["B"]), distance=mask(out["distance"]),
        gamma=gammas, gamma_crit=mask(out["gamma_crit"]),
        statistics=jax.tree_util.tree_map(mask, out["statistics"]), diverged=diverged,
        divergence_time=divergence_time, num_steps=sol.stats["num_accepted_steps"],
        error_estimate=mask(error))
