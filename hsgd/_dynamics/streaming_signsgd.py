r"""The deterministic equivalent of one-pass signSGD (SPEC §11): least squares, and logistic
regression at batch 1.

For $K$ diagonal in the coordinates (hsgd's eigenbasis), $x \leftarrow x - (\gamma/d)
\operatorname{sign}(G)$ with $G$ the mini-batch mean of $a\otimes\nabla_x f$ has, per mode $j$,
the error second moment $v_j = d\,\mathbb{E}(x_j - x^*_j)^2$ obeying

$$\frac{dv_j}{dt} = -2\gamma_t\sqrt{\frac{2\lambda_j}{\pi}}\,\kappa(\tau^2)\,v_j + \gamma_t^2,
\qquad \tau^2 = \sum_j\omega_j\lambda_jv_j = \|x - x^*\|_K^2,$$

with the risk $\tfrac12(\tau^2 + \mathbb{E}\varepsilon^2)$ (the excess risk $\tau^2/2$ when the
noise has no variance) and

- Gaussian noise $N(0, \sigma^2)$ (or none), any batch $\beta$:
  $\kappa = c_\beta/\sqrt{\tau^2 + \sigma^2}$, $c_\beta = \sqrt2\,\Gamma(\frac{\beta+1}2)/
  \Gamma(\frac\beta2)$;
- any symmetric noise density $p_\varepsilon$, $\beta = 1$:
  $\kappa = 2\,\mathbb{E}_{z\sim N(0,\tau^2)}\,p_\varepsilon(z)$ (the residual's density at 0,
  twice), by quadrature ([`sign_kappa`][hsgd._dynamics.streaming_signsgd.sign_kappa]).

The moments of $x - x^*$ against $x^*$ (needed for $B$) decay at the same rate:
$c_j' = -\gamma\sqrt{2\lambda_j/\pi}\,\kappa\,c_j$. Stiff on power laws (rates
$\gamma\sqrt{\lambda_j}\kappa$ spanning the spectrum, $\kappa$ growing as the risk falls), so
the system is posed as an [`AbstractModeDynamics`][] (one unknown per mode, the coupling
summary $\tau^2$) and integrated by [`StructuredKvaerno5`][]: error-controlled, L-stable and
differentiable.

**Logistic regression, batch 1** (SPEC §11's remark). With $y\in\{0, 1\}$ and
$\sigma(r)\in(0, 1)$, $\operatorname{sign}(a_j(\sigma(a^\top x) - y)) =
\operatorname{sign}(a_j)(1 - 2y)$ exactly: the sign does not depend on the iterate, so
$J_s = [0, -2s^*]$ with $s^* = \mathbb{E}\sigma'(x^*)$, a constant of the problem. The mean
sign is $\mathbb{E}[\operatorname{sign}G_j] = -2s^*\sqrt{2\lambda_j/\pi}\,x^*_j$ (to
$O(d^{-3/2})$) and $\operatorname{sign}G_j\operatorname{sign}G_k = \operatorname{sign}a_j
\operatorname{sign}a_k$ has mean 0 for $j\ne k$ and 1 for $j = k$, so per mode, with
$r_j = \sqrt{2\lambda_j/\pi}$ and $e = x - x^*$,

$$c_j' = 2\gamma r_js^*\,d\,x_j^{*2},\qquad v_j' = 4\gamma r_js^*\,c_j + \gamma^2:$$

the iterate drifts along $K^{1/2}x^*$ at a constant rate and diffuses at $\gamma^2$ per mode,
with no feedback (no fixed point: the risk $h(B)$ falls, then rises again as $x$ overshoots and
its noise accumulates). Closed form for a constant $\gamma$: $c_j(t) = c_j(0) +
2\gamma r_js^*t\,d\,x_j^{*2}$, $v_j(t) = v_j(0) + 4\gamma r_js^*t\,c_j(0) +
(2\gamma r_js^*t)^2d\,x_j^{*2} + \gamma^2t$. For $\beta > 1$ the sign of a batch sum depends on
the iterate and $J_s$ has no closed form here (refused).
"""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from .._blowup import after_first, nan_where
from .._expectations import trapezoid_normal_nodes
from .._loss.least_squares import LeastSquares
from .._loss.logistic import Logistic
from .._noise import GaussianNoise, NoNoise
from .._optimizer.sign_sgd import SignSGD
from .._problem import Problem
from .._registry import register
from .._results import Solution
from .structured import (
    AbstractModeDynamics,
    ModeSystem,
    StructuredKvaerno5,
    checked_times,
    contract,
    default_tolerances,
    initial_state,
    output_controller,
)

# The trapezoid rule for kappa with a general density: z = tau e^s, s in [_S_LOW, _S_HIGH].
_S_LOW, _S_HIGH, _S_STEP = -40.0, 4.0, 0.125


def c_beta(batch):
    r"""$c_\beta = \sqrt2\,\Gamma(\frac{\beta+1}2)/\Gamma(\frac\beta2) = \mathbb{E}\|z\|$,
    $z\sim N(0, I_\beta)$ ($c_1 = \sqrt{2/\pi}$, $c_\beta\to\sqrt\beta$); continuous in
    $\beta$ (traceable)."""
    batch = jnp.asarray(batch, dtype=jnp.result_type(batch, float))
    return jnp.sqrt(2.0) * jnp.exp(jax.scipy.special.gammaln((batch + 1.0) / 2.0)
                                   - jax.scipy.special.gammaln(batch / 2.0))


def is_gaussian(noise) -> bool:
    """Whether κ has the closed form of Gaussian noise (any batch)."""
    return isinstance(noise, GaussianNoise | NoNoise)


def check_noise(loss, batch):
    r"""A `ValueError`/`TypeError` unless SPEC §11's ODE applies to `loss` at `batch`: a
    [`LeastSquares`][] loss whose noise is Gaussian (any $\beta$) or has a `density`
    ($\beta = 1$)."""
    if not isinstance(loss, LeastSquares):
        raise TypeError(f"SignSGD's deterministic equivalent (SPEC §11) is implemented for "
                        f"LeastSquares only, got {type(loss).__name__}: for other losses the "
                        f"sign-gradient map J_s has no closed form here (not checked)")
    noise = loss.noise
    if is_gaussian(noise):
        return
    if not (callable(getattr(noise, "density", None))
            or callable(getattr(noise, "residual_density_at_zero", None))):
        raise ValueError(f"SignSGD's ODE needs the noise density (kappa = 2 E p_eps(z), SPEC "
                         f"§11): {noise!r} has no density (nor residual_density_at_zero) method")
    if isinstance(batch, jax.core.Tracer) or float(batch) != 1.0:
        raise ValueError(f"SignSGD's ODE with non-Gaussian noise ({noise!r}) exists for "
                         f"batch = 1 only (SPEC §11: for batch > 1 the sign map needs the "
                         f"batch-fold expectation E[r u_1/||u||], no closed form, not checked); "
                         f"got batch={batch!r}")


def check_loss(loss, batch):
    r"""A `ValueError`/`TypeError` unless signSGD's ODE (and homogenized SDE) exist for `loss`
    at `batch`: least squares as [`check_noise`][hsgd._dynamics.streaming_signsgd.check_noise]
    says, or [`Logistic`][] at batch 1 (module docstring)."""
    if isinstance(loss, Logistic):
        if isinstance(batch, jax.core.Tracer) or float(batch) != 1.0:
            raise ValueError(f"SignSGD's ODE for Logistic exists for batch = 1 only (the sign "
                             f"of a batch sum depends on the iterate; SPEC §11, not checked): "
                             f"got batch={batch!r}")
        return
    if not isinstance(loss, LeastSquares):
        raise TypeError(f"SignSGD's deterministic equivalent (SPEC §11) is implemented for "
                        f"LeastSquares and Logistic (batch 1), got {type(loss).__name__}: for "
                        f"other losses the sign-gradient map J_s has no closed form here (not "
                        f"checked)")
    check_noise(loss, batch)


def logistic_target_slope(B_target):
    r"""$s^* = \mathbb{E}\,\sigma'(x^*)$, $x^*\sim N(0, B_{**})$: the logistic sign map is
    $J_s = [0, -2s^*]$ at batch 1 (module docstring). On the trapezoid rule of
    [`trapezoid_normal_nodes`][] (error below $10^{-40}$ for $B_{**}\le 100$)."""
    dtype = jnp.result_type(B_target, float)
    z, w = (jnp.asarray(a, dtype) for a in trapezoid_normal_nodes())
    sig = jax.nn.sigmoid(jnp.sqrt(jnp.maximum(B_target, 0.0)) * z)
    return (sig * (1.0 - sig)) @ w


def sign_kappa(noise, tau2, batch=1):
    r"""$\kappa(\tau^2)$ of SPEC §11: $J_s = \kappa\,[1, -1]$, the slope of the expected
    gradient sign in the residual.

    - [`GaussianNoise`][] $\sigma$ (or [`NoNoise`][]), batch $\beta$:
      $c_\beta/\sqrt{\tau^2 + \sigma^2}$.
    - a noise with `residual_density_at_zero` ([`SampledNoise`][hsgd.SampledNoise]), $\beta = 1$:
      twice it.
    - a noise with a symmetric `density`, $\beta = 1$: $2\,\mathbb{E}_{z\sim N(0,\tau^2)}
      p_\varepsilon(z) = 4\int_0^\infty p_\varepsilon(\tau e^s)\,\phi(e^s)\,e^s\,ds$ by the
      trapezoid rule on $s\in[-40, 4]$, step $1/8$ (353 nodes; exponentially accurate for a
      density analytic near the real axis: Student-$t$ with $\nu\in\{0.7, 1.5, 4, 30\}$
      agrees with scipy's adaptive quadrature to $4\times10^{-15}$ for $\tau$ from $10^{-8}$
      to 30 times the scale, and to the reference's own accuracy ($\le 10^{-8}$) up to
      $10^{3}$ times).

    Elementwise in `tau2` (any shape); traceable and differentiable."""
    dtype = jnp.result_type(tau2, float)
    tau2 = jnp.maximum(jnp.asarray(tau2, dtype), 0.0)
    tiny = jnp.finfo(dtype).tiny
    if is_gaussian(noise):
        var = jnp.zeros((), dtype) if isinstance(noise, NoNoise) else \
            noise.std.astype(dtype) ** 2
        return c_beta(jnp.asarray(batch, dtype)) / jnp.sqrt(jnp.maximum(tau2 + var, tiny))
    tau = jnp.sqrt(jnp.maximum(tau2, tiny))
    if callable(getattr(noise, "residual_density_at_zero", None)):  # e.g. SampledNoise
        return 2.0 * noise.residual_density_at_zero(tau)
    s = jnp.asarray(np.arange(_S_LOW, _S_HIGH + _S_STEP / 2, _S_STEP), dtype)
    x = jnp.exp(s)
    phi = jnp.exp(-0.5 * x**2) / np.sqrt(2 * np.pi)
    return 4.0 * _S_STEP * jnp.sum(noise.density(tau[..., None] * x) * (phi * x), axis=-1)


class SignSGDModes(AbstractModeDynamics):
    r"""SPEC §11's per-mode ODE (least squares) in the form [`StructuredKvaerno5`][] solves.

    State per mode (mode axis last, scaled by $s_j = \operatorname{tr}U_j(0)$ as in
    [`SGDModes`][]): `F` $= v_j/s_j$ (the error second moment), `C` $= c_j/s_j$ with
    $c_j = d\,\mathbb{E}(x_j - x_j^*)x_j^*$, and the constant target block $d\,x_j^{*2}/s_j$.
    Linear system at the summary $u = \tau^2$: $A_j = -\gamma\sqrt{2\lambda_j/\pi}\,
    \kappa(\tau^2)$, $\bar A_j = 0$ (the error decouples from the target), forcing
    $N_j = \gamma^2/s_j$. Not affine in $\tau^2$ (two Newton corrections per stage).
    Logistic (batch 1, `target_slope` $= s^*$): $A_j = 0$, $\bar A_j = 2\gamma s^*
    \sqrt{2\lambda_j/\pi}$, the same forcing, independent of the summary.
    """

    noise: object
    schedule: object
    batch: Array
    rate: Array  # sqrt(2 lambda_j / pi)
    scale: Array
    target: Array
    weighted: Array
    mass: Array
    target_slope: Array | None = None  # s* for Logistic; None for least squares
    affine: bool = eqx.field(static=True, default=False)

    @classmethod
    def from_problem(cls, problem: Problem, schedule, batch):
        """The dynamics and the initial blocks `(F, C)` (mode axis last) of a problem."""
        V0 = jnp.moveaxis(problem.V0, 0, -1)  # (2, 2, J)
        dtype = V0.dtype
        Vxx, Vxt, Vtt = V0[:1, :1], V0[:1, 1:], V0[1:, 1:]
        E, C = Vxx - 2.0 * Vxt + Vtt, Vxt - Vtt
        w = problem.spectrum.weights.astype(dtype)
        lam = problem.spectrum.eigenvalues.astype(dtype)
        tr = (E + Vtt)[0, 0]
        mean_tr = jnp.sum(w * tr)
        scale = jnp.maximum(tr, 1e-6 * jnp.where(mean_tr > 0, mean_tr, 1.0))
        logistic = isinstance(problem.loss, Logistic)
        slope = logistic_target_slope(problem.B0()[1, 1]) if logistic else None
        dyn = cls(noise=problem.loss.noise, schedule=schedule, batch=batch,
                  rate=jnp.sqrt(2.0 * lam / np.pi), scale=scale, target=Vtt / scale,
                  weighted=w * lam * scale, mass=w * scale, target_slope=slope,
                  affine=logistic)
        return dyn, E / scale, C / scale

    def summary_linear(self, F, C):
        return contract(F, self.weighted).reshape(1)

    def summary_offset(self):
        return jnp.zeros((1,), self.weighted.dtype)

    @property
    def forcing_only(self) -> bool:
        return self.target_slope is not None

    def kappa(self, tau2):
        return sign_kappa(self.noise, tau2, self.batch)

    def system(self, t, u, aux):
        dtype = u.dtype
        g = self.schedule(t).astype(dtype)
        forcing = ((g**2) / self.scale)[None, None, :]
        if self.target_slope is None:  # least squares
            A = (-g * self.kappa(u[0]) * self.rate)[None, None, :]
            A_target = jnp.zeros((1, 1, 1), dtype)
        else:  # logistic, batch 1: no feedback
            A = jnp.zeros((1, 1, 1), dtype)
            A_target = (2.0 * g * self.target_slope.astype(dtype) * self.rate)[None, None, :]
        return ModeSystem(A=A, A_target=A_target, target=self.target, forcing=forcing,
                          aux_rate=jnp.zeros((0,), dtype))

    def error_weights(self):
        # The weights of tau^2 (the risk) and of the distance, each normalised by its sum.
        w = jnp.stack([self.weighted, self.mass])
        total = jnp.sum(w, axis=1, keepdims=True)
        return w / jnp.where(total > 0, total, 1.0)

    def snapshot(self, problem: Problem, y, statistics):
        r"""$\tau^2$, $B$, the distance and the statistics from the solver state."""
        F, C = y["F"], y["C"]
        tau2 = contract(F, self.weighted)[0, 0]
        Ce = contract(C, self.weighted)[0, 0]
        Bt = contract(self.target, self.weighted)[0, 0]
        B = jnp.stack([jnp.stack([tau2 + 2.0 * Ce + Bt, Ce + Bt]), jnp.stack([Ce + Bt, Bt])])
        snap = dict(tau2=tau2, B=B, distance=contract(F, self.mass)[0, 0])
        if statistics:
            Vxt = C + self.target
            Vxx = F + 2.0 * C + self.target
            V = jnp.concatenate([jnp.concatenate([Vxx, Vxt], axis=1),
                                 jnp.concatenate([Vxt, self.target], axis=1)], axis=0)
            V = jnp.moveaxis(V * self.scale, -1, 0)
            lam = problem.spectrum.eigenvalues
            w = problem.spectrum.weights.astype(F.dtype)
            snap["statistics"] = {k: s(lam, w, V) for k, s in statistics.items()}
        else:
            snap["statistics"] = {}
        return snap


@register("ode", Problem, SignSGD)
def ode(problem: Problem, optimizer: SignSGD, ts, *, statistics: dict | None = None,
        rtol: float | None = None, atol: float | None = None,
        stepsize_controller: diffrax.AbstractStepSizeController | None = None,
        adjoint: diffrax.AbstractAdjoint | None = None, max_steps: int = 100_000) -> Solution:
    r"""Solve signSGD's deterministic equivalent (SPEC §11) on the times `ts`: the cell
    [`Problem`][] × [`SignSGD`][] of [`hsgd.ode`][].

    $$v_j' = -2\gamma_t\sqrt{2\lambda_j/\pi}\,\kappa(\tau^2)\,v_j + \gamma_t^2,\qquad
    \tau^2 = \sum_j\omega_j\lambda_jv_j,$$

    ($\kappa$: [`sign_kappa`][hsgd._dynamics.streaming_signsgd.sign_kappa]), integrated by
    [`StructuredKvaerno5`][] with error control on $\tau^2$ and the distance.

    **Arguments:**

    - `problem`: a [`Problem`][] with a [`LeastSquares`][] loss — noise Gaussian or none (any
      batch), or any noise law with a symmetric `density` (e.g. [`StudentTNoise`][], any
      $\nu > 0$) at batch 1 — or a [`Logistic`][] loss at batch 1 (module docstring: the sign
      does not feed back). Other losses are refused: SPEC §11 gives no closed form for them.
    - `optimizer`: [`SignSGD`][] (learning rate $\gamma(t)\ge 0$, batch $\beta$).
    - `ts`: non-decreasing output times $t = k/d\ge 0$.
    - `statistics`: optional dict name → [`Statistic`][] of the per-mode $V_j$.
    - `rtol`, `atol`: the solver's tolerances on the aggregates (default $10^{-7}$,
      $10^{-12}$; float32 $10^{-5}$, $10^{-8}$).
    - `stepsize_controller`, `adjoint`, `max_steps`: passed to `diffrax.diffeqsolve`
      (default `RecursiveCheckpointAdjoint()`: `jax.grad` works).

    **Returns:** a [`Solution`][]: `risk` $\tfrac12(\tau^2 + \mathbb{E}\varepsilon^2)$ (the
    excess risk $\tfrac12\tau^2$ for a noise without a variance, see [`LeastSquares`][]; for
    [`Logistic`][] the population risk $h(B)$), `B`,
    `distance` $\|x - x^*\|^2$, `gamma`, `error_estimate`; `gamma_crit` is NaN (signSGD has no
    critical learning rate: its steps are bounded, SPEC §11). It does not diverge.

    Example:

    ```python
    spec = hsgd.Spectrum.power_law(2000, 0.5)
    prob = hsgd.Problem.isotropic(hsgd.LeastSquares(noise=hsgd.StudentTNoise(1.5, 0.5)), spec)
    sol = hsgd.ode(prob, hsgd.SignSGD(0.5), jnp.linspace(0, 20, 41))
    ```
    """
    check_loss(problem.loss, optimizer.batch)
    statistics = {} if statistics is None else dict(statistics)
    dtype = problem.V0.dtype
    ts = checked_times(ts, rtol, atol, dtype)
    rtol, atol = default_tolerances(rtol, atol, dtype, atol64=1e-12)
    return _solve(problem, optimizer.schedule, ts, jnp.asarray(optimizer.batch, dtype),
                  statistics, rtol, atol, stepsize_controller, adjoint, int(max_steps))


@eqx.filter_jit
def _solve(problem, schedule, ts, batch, statistics, rtol, atol, stepsize_controller, adjoint,
           max_steps):
    gammas = jax.vmap(schedule)(ts)
    ts = eqx.error_if(ts, jnp.any(ts < 0) | jnp.any(jnp.diff(ts) < 0),
                      "ts must be non-negative and non-decreasing")
    ts = eqx.error_if(ts, ~jnp.all(gammas >= 0),
                      "the learning rate must be non-negative and finite at every output time")
    batch = eqx.error_if(batch, ~(batch >= 1), "batch must be >= 1")
    dyn, F0, C0 = SignSGDModes.from_problem(problem, schedule, batch)
    y0 = initial_state(dyn, F0, C0, jnp.zeros((0,), F0.dtype))
    # error_norm reads the leaves the error control fills (the per-mode ones are zero), so it
    # is the max norm of the whole estimate
    stepsize_controller = output_controller(stepsize_controller, ts, rtol, atol)
    adjoint = diffrax.RecursiveCheckpointAdjoint() if adjoint is None else adjoint

    def save(t, y, args):
        return dict(args.snapshot(problem, y, statistics), error=y["acc"])

    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(lambda t, y, args: args.field(t, y)), StructuredKvaerno5(), t0=0.0,
        t1=ts[-1], dt0=None, y0=y0, args=dyn, saveat=diffrax.SaveAt(ts=ts, fn=save),
        stepsize_controller=stepsize_controller, adjoint=adjoint, max_steps=max_steps,
        throw=False)
    out = sol.ys
    loss = problem.loss
    if isinstance(loss, Logistic):
        risk = jax.vmap(loss.risk)(out["B"])
    else:
        risk = 0.5 * (out["tau2"] + loss._floor(out["tau2"].dtype))
    ok = sol.result == diffrax.RESULTS.successful
    risk = eqx.error_if(risk, ~ok, "the signSGD ODE solver failed (max_steps reached or step "
                        "size collapsed); pass a larger max_steps")
    bad = ~jnp.isfinite(risk) | (jnp.arange(ts.shape[0]) >= jnp.sum(jnp.isfinite(sol.ts)))
    bad, diverged, divergence_time = after_first(ts, bad)

    def mask(x):
        return nan_where(bad, x)

    return Solution(
        ts=ts, risk=mask(risk), loss=None, B=mask(out["B"]), distance=mask(out["distance"]),
        gamma=gammas, gamma_crit=jnp.full(ts.shape, jnp.nan, ts.dtype),
        statistics=jax.tree_util.tree_map(mask, out["statistics"]), diverged=diverged,
        divergence_time=divergence_time, num_steps=sol.stats["num_accepted_steps"],
        error_estimate=mask(out["error"]))
