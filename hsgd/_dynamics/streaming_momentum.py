r"""The deterministic equivalent of streaming momentum, the linear family of SPEC §9, for any loss.

For $y_{k+1} = (1 - \delta/d)\,y_k + (\bar\gamma_1/d)\,G_k$,
$x_{k+1} = x_k - (\bar\gamma_2/d)\,G_k - (\bar\gamma_3/d)\,y_k$ ([`LinearMomentum`][]), per
eigen-direction $j$ the second moments $V_j = d\,(\tilde W^\top u_j)(\tilde W^\top u_j)^\top$ of
$\tilde W = [X \mid Y \mid X^*]$ solve, in $t = k/d$,

$$\frac{dV_j}{dt} = A_jV_j + V_jA_j^\top + \frac{\lambda_j}{\beta}N(B),\qquad
A_j = \begin{pmatrix}-\bar\gamma_2\lambda_jJ_x & -\bar\gamma_3 I_m & -\bar\gamma_2\lambda_jJ_*\\
\bar\gamma_1\lambda_jJ_x & -\delta I_m & \bar\gamma_1\lambda_jJ_*\\ 0 & 0 & 0\end{pmatrix},$$

$N(B) = (cc^\top)\otimes I(B)$ on the $(x, y)$ blocks, $c = (-\bar\gamma_2, \bar\gamma_1)$, and
$B = \sum_j\omega_j\lambda_jV_j$ restricted to the $X$, $X^*$ blocks; $h$, $J = [J_x\mid J_*]$
and $I$ are the loss's Gaussian moments of SPEC §1 at that $B$; risk $= h(B(t))$.

The state is held in error coordinates $[X - X^* \mid Y \mid X^*]$ when $m = m^*$ (as for SGD,
[`SGDModes`][]: the decaying risk is a state variable), where the target coupling becomes
$J_x + J_*$ — zero for least squares, whose per-mode system is then SPEC §9's three scalars
$P_j = d\,\mathbb{E}e_j^2$, $C_j = d\,\mathbb{E}e_jy_j$, $Q_j = d\,\mathbb{E}y_j^2$:

$$P' = -2\bar\gamma_2\lambda P - 2\bar\gamma_3C + \bar\gamma_2^2\lambda\,\frac{2h}\beta,\quad
C' = -(\bar\gamma_2\lambda + \delta)C - \bar\gamma_3Q + \bar\gamma_1\lambda P
- \bar\gamma_1\bar\gamma_2\lambda\,\frac{2h}\beta,\quad
Q' = -2\delta Q + 2\bar\gamma_1\lambda C + \bar\gamma_1^2\lambda\,\frac{2h}\beta,$$

$2h = \sum_j\omega_j\lambda_jP_j + \sigma^2$: the free block of mode $j$ is exactly
$\begin{pmatrix}P_j & C_j\\ C_j & Q_j\end{pmatrix}$ (in units of $s_j$). The system is posed as an
[`AbstractModeDynamics`][] with $2m\times 2m$ free blocks and integrated by
[`StructuredKvaerno5`][] (L-stable, error-controlled, differentiable), the coupling summary
being SGD's (the $X - X^*$ and $X^*$ blocks of $B$).

**Exact finite $d$** (least squares, `finite_d=True`, the default when the problem's $d$ is
known, as for SGD, SPEC §8). Per iteration the exact recursion of the per-mode moments is
$V_{k+1} = MV_kM^\top + \dots$ with $M = I + A/d$ and the gradient's fourth moment (Isserlis:
the mode's own contribution $\lambda_j^2P_j$ beside the $2h$ of all modes); its generator
$d(M(\cdot)M^\top - \cdot)$ is the ODE above plus

$$\frac1d\Big(A_jV_jA_j^\top + \frac{\lambda_j^2}\beta\,P_j\,cc^\top\Big)$$

on the free block — a self-interaction of each mode that the $d\to\infty$ form drops (the
SGD case $\bar\gamma_1 = \bar\gamma_3 = 0$ is SPEC §8's $(1 + 1/\beta)\gamma^2\lambda_j^2/d$).
It enters the solver as `ModeSystem.F_self` ($R_1 = A_j/\sqrt d$) and `F_feedback`
($P_j$ feeding $\lambda_j^2cc^\top/(\beta d)$), solved exactly per stage. Against an
exact Isserlis recursion at $d = 32$ it is within 0.66% where the $d\to\infty$ form is 16%
low (tests).
"""

import dataclasses

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp

from .._optimizer import SGD, HeavyBall
from .._optimizer.linear_momentum import (
    DANAConstant,
    DANADecaying,
    LinearMomentum,
    Scaled,
    check_coefficients,
    dimension_of,
)
from .._problem import Problem
from .._registry import register
from .._results import Solution
from .streaming_sgd import (
    SGDModes,
    _assemble,
    _initial_step,
    _resolve_finite_d,
    ode as sgd_ode,
)
from .structured import (
    ModeSystem,
    StructuredKvaerno5,
    checked_times,
    default_tolerances,
    initial_state,
    output_controller,
)


class MomentumModes(SGDModes):
    r"""SPEC §9's per-mode ODE in the form [`StructuredKvaerno5`][] solves: free blocks
    $[X - X^*\mid Y]$ ($2m\times 2m$; $[X\mid Y]$ when $m\ne m^*$), the target block and the
    summary as in [`SGDModes`][] (whose loss moments, $B$ and outputs it reuses), the linear
    system of the module docstring. `schedule` is $\bar\gamma_2$."""

    gamma1: object = None
    gamma3: object = None
    delta: object = None

    @classmethod
    def from_momentum(cls, problem: Problem, optimizer: LinearMomentum, batch,
                      finite_d: bool = False):
        """The dynamics and the initial blocks `(F, C)` (mode axis last; $Y_0 = 0$);
        `finite_d`: least squares' exact finite-$d$ terms (module docstring; needs
        `problem.d`)."""
        base, F0, C0 = SGDModes.from_problem(problem, optimizer.gamma2, batch, finite_d)
        fields = {f.name: getattr(base, f.name) for f in dataclasses.fields(base)}
        dyn = cls(**fields, gamma1=optimizer.gamma1, gamma3=optimizer.gamma3,
                  delta=optimizer.delta)
        m, J = F0.shape[0], F0.shape[-1]
        zero = jnp.zeros((m, m, J), F0.dtype)
        F = jnp.concatenate([jnp.concatenate([F0, zero], axis=1),
                             jnp.concatenate([zero, zero], axis=1)], axis=0)
        C = jnp.concatenate([C0, jnp.zeros_like(C0)], axis=0)
        return dyn, F, C

    def summary_linear(self, F, C):
        m = self.m
        return super().summary_linear(F[:m, :m], C[:m])

    def coefficients(self, t, dtype):
        return tuple(s(t).astype(dtype) for s in (self.gamma1, self.schedule, self.gamma3,
                                                   self.delta))

    def system(self, t, u, aux):
        dtype = u.dtype
        g1, g2, g3, dl = self.coefficients(t, dtype)
        mom = self.moments(u)
        m = self.m
        Jx, Jt = mom.J[:, :m], mom.J[:, m:]
        if self.error_coords:
            Jt = Jx + Jt
        lam = self.lam
        J = lam.shape[0]
        eye = jnp.broadcast_to(jnp.eye(m, dtype=dtype)[:, :, None], (m, m, J))
        Jxl = Jx[:, :, None] * lam
        A = jnp.concatenate([jnp.concatenate([-g2 * Jxl, -g3 * eye], axis=1),
                             jnp.concatenate([g1 * Jxl, -dl * eye], axis=1)], axis=0)
        Jtl = Jt[:, :, None] * lam
        A_target = None if self._target_decoupled else jnp.concatenate([-g2 * Jtl, g1 * Jtl],
                                                                        axis=0)
        c = jnp.stack([-g2, g1])
        cc = (c[:, None] * c[None, :])
        noise = jnp.kron(cc, mom.I)  # (2m, 2m)
        forcing = noise[:, :, None] * (lam / (self.batch * self.scale))
        F_self = F_feedback = None
        if self.inv_d is not None:
            # Least squares at finite d (module docstring): F' += (A F A^T + (lam^2/beta)
            # P c c^T) / d, i.e. R_1 = A/sqrt(d) and P feeding (lam^2/(beta d)) c c^T.
            F_self = (jnp.sqrt(self.inv_d) * A)[None]
            F_feedback = cc[:, :, None] * (self.inv_d / self.batch * lam**2)
        return ModeSystem(A=A, A_target=A_target, target=self.target, forcing=forcing,
                          aux_rate=jnp.zeros((0,), dtype), F_self=F_self,
                          F_feedback=F_feedback,
                          **self._factored_forcing(mom.I, cc,
                                                   lam / (self.batch * self.scale)))

    @property
    def controlled(self):
        # The summary, the risk and the distance read the X - X* block alone: the velocity's
        # moments are held to the tolerance where they enter it (the step count of SGD's ODE at
        # the same accuracy of the risk: DANA-like at 1e4 modes 163 steps against SGD's 151,
        # 207 when Y's moments were held to rtol of their own; benchmarks/momentum_streaming.py).
        return self.m

    def snapshot(self, problem: Problem, y, statistics):
        m = self.m
        return super().snapshot(problem, dict(y, F=y["F"][:m, :m], C=y["C"][:m]), statistics)


@register("ode", Problem, LinearMomentum)
def ode(problem: Problem, optimizer: LinearMomentum, ts, *, statistics: dict | None = None,
        rtol: float | None = None, atol: float | None = None,
        stepsize_controller: diffrax.AbstractStepSizeController | None = None,
        adjoint: diffrax.AbstractAdjoint | None = None, max_steps: int = 200_000,
        blowup: float = 1e6, finite_d: bool | None = None) -> Solution:
    r"""Solve streaming momentum's deterministic equivalent (SPEC §9, module docstring) on the
    times `ts`: the cells [`Problem`][] × [`LinearMomentum`][] (and its presets
    [`DANAConstant`][], [`DANADecaying`][]) of [`hsgd.ode`][].

    $$V_j' = A_jV_j + V_jA_j^\top + \frac{\lambda_j}\beta\,(cc^\top)\otimes I(B),\qquad
    \text{risk} = h(B),\quad B = \sum_j\omega_j\lambda_jV_j,$$

    any loss (its $J$, $I$, $h$ as for SGD), integrated by [`StructuredKvaerno5`][] with error
    control on the aggregates of the moments (as SGD's default solve).

    **Arguments:**

    - `problem`: a [`Problem`][].
    - `optimizer`: [`LinearMomentum`][] (scaled coefficients $\bar\gamma_1, \bar\gamma_2,
      \bar\gamma_3, \delta$ of $t$, batch $\beta$), or a preset resolved on `problem`.
    - `ts`: non-decreasing output times $t = k/d\ge 0$.
    - `statistics`: optional dict name → [`Statistic`][] of the $[X\mid X^*]$ moments.
    - `rtol`, `atol`: the controller's tolerances on the aggregates (default $10^{-7}$,
      $10^{-18}$; float32 $10^{-5}$, $10^{-8}$), as for SGD.
    - `stepsize_controller`, `adjoint`, `max_steps`: passed to `diffrax.diffeqsolve` (default
      adjoint `RecursiveCheckpointAdjoint()`: `jax.grad` works through every coefficient).
    - `blowup`: stop and report divergence once $\max|B|$ exceeds `blowup`$\times(1 +
      \max|B(0)|)$.
    - `finite_d`: least squares' exact finite-$d$ terms (module docstring); default: on for
      least squares when the problem's $d$ is known, as for SGD; `False` is the
      $d\to\infty$ form.

    **Returns:** a [`Solution`][]: `risk`, `B`, `distance`, `gamma` $=\bar\gamma_2(t)$ (the
    direct step), `gamma_crit` NaN (SGD's critical rate does not apply), `error_estimate`.

    Example:

    ```python
    spec = hsgd.Spectrum.power_law(1000, 1.5)
    prob = hsgd.Problem.random(hsgd.LeastSquares(0.1), spec, jax.random.PRNGKey(0))
    opt = hsgd.LinearMomentum(1.0, 1.0, 0.3, lambda t: 1.0 / (1.0 + t))
    sol = hsgd.ode(prob, opt, jnp.geomspace(0.1, 20, 12))
    ```
    """
    optimizer = optimizer.linear(problem)
    statistics = {} if statistics is None else dict(statistics)
    dtype = problem.V0.dtype
    ts = checked_times(ts, rtol, atol, dtype)
    check_coefficients(optimizer, ts)
    rtol, atol = default_tolerances(rtol, atol, dtype)
    finite_d = _resolve_finite_d(problem, finite_d)
    return _solve(problem, optimizer, ts, jnp.asarray(optimizer.batch, dtype), statistics,
                  rtol, atol, stepsize_controller, adjoint, int(max_steps), float(blowup),
                  finite_d)


@eqx.filter_jit
def _solve(problem, optimizer, ts, batch, statistics, rtol, atol, stepsize_controller, adjoint,
           max_steps, blowup, finite_d=False):
    coeffs = jnp.stack([jax.vmap(s)(ts).astype(ts.dtype) for s in optimizer.coefficients()])
    ts = eqx.error_if(ts, jnp.any(ts < 0) | jnp.any(jnp.diff(ts) < 0),
                      "ts must be non-negative and non-decreasing")
    ts = eqx.error_if(ts, ~jnp.all(coeffs >= 0),
                      "the momentum coefficients gamma1, gamma2, gamma3, delta must be finite "
                      "and >= 0 at every output time")
    batch = eqx.error_if(batch, ~(batch >= 1), "batch must be >= 1")
    dyn, F0, C0 = MomentumModes.from_momentum(problem, optimizer, batch, finite_d)
    y0 = initial_state(dyn, F0, C0, jnp.zeros((0,), F0.dtype))
    stepsize_controller = output_controller(stepsize_controller, ts, rtol, atol)
    adjoint = diffrax.RecursiveCheckpointAdjoint() if adjoint is None else adjoint
    bound = blowup * (1 + jnp.max(jnp.abs(problem.B0())))

    def blew_up(t, y, args, **kwargs):
        return ~(jnp.max(jnp.abs(y["u"])) < bound)

    def save(t, y, args):
        return dict(args.snapshot(problem, y, statistics), error=y["acc"])

    term = diffrax.ODETerm(lambda t, y, args: args.field(t, y))
    solver = StructuredKvaerno5()
    sol = diffrax.diffeqsolve(
        term, solver, t0=0.0, t1=ts[-1],
        dt0=_initial_step(stepsize_controller, term, solver, ts, y0, dyn), y0=y0, args=dyn,
        saveat=diffrax.SaveAt(ts=ts, fn=save), stepsize_controller=stepsize_controller,
        adjoint=adjoint, event=diffrax.Event(blew_up), max_steps=max_steps, throw=False)
    error = sol.ys.pop("error")
    out = _assemble(problem, ts, coeffs[1], batch, sol, bound, error)
    return eqx.tree_at(lambda s: s.gamma_crit, out, jnp.full(ts.shape, jnp.nan, ts.dtype))


for _preset in (DANAConstant, DANADecaying):
    register("ode", Problem, _preset)(ode)


def heavy_ball_family(problem: Problem, optimizer: HeavyBall, limit: bool = False):
    r"""Streaming [`HeavyBall`][] $x_{k+1} = x_k - \frac{\gamma(t_k)}dG_k + \Delta_{\rm hb}(x_k -
    x_{k-1})$ (SPEC §9) as an optimizer of the streaming cells: the family
    [`LinearMomentum.heavy_ball`][hsgd.LinearMomentum.heavy_ball] in the problem's dimension
    $d$, or with `limit=True` its $d\to\infty$ form, [`SGD`][] at
    $\Gamma_{\rm eff}(t) = \gamma(t)/(1 - \Delta_{\rm hb})$."""
    if optimizer.batch is None:
        raise ValueError("HeavyBall on a streaming Problem needs batch= (samples per step); "
                         "batch_fraction applies to finite data only")
    if limit:
        return SGD(Scaled(optimizer.schedule, 1.0 / (1.0 - jnp.asarray(optimizer.momentum))),
                   batch=optimizer.batch)
    return LinearMomentum.heavy_ball(optimizer.schedule, optimizer.momentum,
                                     dimension_of(problem), optimizer.batch)


@register("ode", Problem, HeavyBall)
def heavy_ball_ode(problem: Problem, optimizer: HeavyBall, ts, *, limit: bool = False,
                   statistics: dict | None = None, rtol: float | None = None,
                   atol: float | None = None,
                   stepsize_controller: diffrax.AbstractStepSizeController | None = None,
                   adjoint: diffrax.AbstractAdjoint | None = None, max_steps: int = 200_000,
                   blowup: float = 1e6, finite_d: bool | None = None) -> Solution:
    r"""Streaming heavy ball's deterministic equivalent: the cell [`Problem`][] ×
    [`HeavyBall`][] of [`hsgd.ode`][] (SPEC §9). The optimizer's schedule is $\gamma(t)$ of
    $t = k/d$ (step $\gamma/d$, as SGD's), `momentum` $\Delta_{\rm hb}$, `batch` $\beta$.

    - `limit=False` (default): the family ODE ([`ode`][hsgd._dynamics.streaming_momentum.ode])
      at $\delta = d(1-\Delta_{\rm hb})$, $\bar\gamma_1 = d$, $\bar\gamma_2 = \gamma$,
      $\bar\gamma_3 = \gamma\Delta_{\rm hb}$, $d$ the problem's dimension (its instance's, else
      its number of modes).
    - `limit=True`: the $d\to\infty$ form, SGD's ODE at $\Gamma_{\rm eff} = \gamma/(1 -
      \Delta_{\rm hb})$ (noise with the same factor). The two differ by a relative
      $O(\Gamma_{\rm eff}\lambda_{\max}/(d(1-\Delta_{\rm hb})))$.

    Other options as for the family's [`ode`][hsgd._dynamics.streaming_momentum.ode].
    """
    options = dict(statistics=statistics, rtol=rtol, atol=atol,
                   stepsize_controller=stepsize_controller, adjoint=adjoint,
                   max_steps=max_steps, blowup=blowup)
    family = heavy_ball_family(problem, optimizer, limit)
    if limit:
        if finite_d:
            raise ValueError("limit=True is the d -> infinity form (SGD at gamma/(1 - momentum)):"
                             " it has no finite-d terms; drop finite_d=True or limit=True")
        return sgd_ode(problem, family, ts, solver=StructuredKvaerno5(), finite_d=False,
                       **options)
    return ode(problem, family, ts, finite_d=finite_d, **options)
