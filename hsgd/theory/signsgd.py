r"""signSGD on least squares with a covariance diagonal in the coordinates (SPEC §11): its
preconditioned spectrum and effective learning rate, its limit risk, and the comparison with SGD
at the best constant stepsize of each.

signSGD's per-mode ODE $v_j' = -2\gamma\sqrt{2\lambda_j/\pi}\,\kappa(\tau^2)\,v_j + \gamma^2$
is SGD's linear part $v_j' = -2\eta\tilde\lambda_jv_j$ on the **preconditioned spectrum**
$\tilde\lambda_j = \sqrt{\lambda_j}$ with the **effective learning rate**
$\eta(t) = \gamma_t\sqrt{2/\pi}\,\kappa(\tau^2(t))$ — for Gaussian noise
$\eta = \gamma\sqrt{2/\pi}\,c_\beta/\sqrt{2h}$, i.e. $\propto\gamma/\sqrt{\text{risk}}$: it grows
as the risk falls — and a noise term $\gamma^2$ that is the same for every mode (not
$\gamma^2\lambda_j\cdot2h/\beta$ as for SGD). At a constant $\gamma$ the fixed point is
$v_j = \gamma/(2\sqrt{2\lambda_j/\pi}\,\kappa)$, so $\tau_\infty^2$ solves
$\tau^2\kappa(\tau^2) = \gamma\sqrt{\pi/2}\,(\operatorname{tr}K^{1/2}/d)/2$: in closed form for
Gaussian noise (SPEC §11), $\tau^2_\infty = c\,s$, $s = (c + \sqrt{c^2 + 4\sigma^2})/2$,
$c = \gamma\sqrt{\pi/2}\,(\operatorname{tr}K^{1/2}/d)/(2c_\beta)$ — $O(\gamma\sigma)$ with
noise, $O(\gamma^2)$ without — and by a monotone root solve for any noise density
($\tau^2\kappa(\tau^2)$ is increasing).
"""

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._dynamics.streaming_signsgd import c_beta, check_noise, is_gaussian, sign_kappa
from .._methods import ode
from .._noise import NoNoise
from .._optimizer import SGD, SignSGD
from .._problem import Problem
from .._schedule import Constant
from .._spectrum import Spectrum


def signsgd_preconditioned_spectrum(problem: Problem) -> Spectrum:
    r"""The spectrum signSGD's linear part sees: $\tilde\lambda_j = \sqrt{\lambda_j}$ with the
    same weights (SPEC §11: $\lambda_j\to\sqrt{\lambda_j}$). Its mean is
    $\operatorname{tr}K^{1/2}/d$, which sets the limit risk; its condition number is the square
    root of $K$'s."""
    spec = problem.spectrum
    return Spectrum(jnp.sqrt(spec.eigenvalues), spec.weights)


def _floor(problem: Problem, dtype):
    return problem.loss._floor(dtype)


def signsgd_kappa(problem: Problem, tau2, batch=1.0):
    r"""$\kappa(\tau^2)$ of SPEC §11 for the problem's noise ($c_\beta/\sqrt{\tau^2 + \sigma^2}$
    for Gaussian noise, $2\,\mathbb{E}_{z\sim N(0,\tau^2)}p_\varepsilon(z)$ for a noise density
    at batch 1), at the excess $\tau^2 = \|x - x^*\|_K^2$. `vmap`s over `tau2`."""
    check_noise(problem.loss, batch)
    return sign_kappa(problem.loss.noise, tau2, batch)


def signsgd_effective_lr(problem: Problem, gamma, risk, batch=1.0):
    r"""$\eta = \gamma\sqrt{2/\pi}\,\kappa(\tau^2)$, the learning rate of SGD on the
    [preconditioned spectrum][hsgd.theory.signsgd_preconditioned_spectrum] that has signSGD's
    drift, at the risk `risk` as hsgd reports it ($\tau^2 = 2\,\text{risk} -
    \mathbb{E}\varepsilon^2$, the noise part dropped where it is infinite). For Gaussian noise
    $\eta = \gamma\sqrt{2/\pi}\,c_\beta/\sqrt{2\,\text{risk}}$. Example, along an ODE solution:
    `signsgd_effective_lr(prob, sol.gamma, sol.risk)`. `vmap`s over `gamma`, `risk`."""
    risk = jnp.asarray(risk)
    dtype = jnp.result_type(risk, float)
    tau2 = jnp.maximum(2.0 * risk - _floor(problem, dtype), 0.0)
    return jnp.asarray(gamma, dtype) * np.sqrt(2.0 / np.pi) * signsgd_kappa(problem, tau2, batch)


def signsgd_fixed_point(problem: Problem, gamma, batch=1.0):
    r"""$\tau^2_\infty$, the excess $\|x - x^*\|_K^2$ at signSGD's fixed point for a constant
    $\gamma$ (module docstring): the closed form $c\,s$ for Gaussian or no noise, else the root
    of $\tau^2\kappa(\tau^2) = \gamma\sqrt{\pi/2}\,(\operatorname{tr}K^{1/2}/d)/2$ (bisection in
    $\log\tau^2$, then two Newton steps, so the result is differentiable in $\gamma$).
    `vmap`s over `gamma`."""
    loss = problem.loss
    check_noise(loss, batch)
    spec = problem.spectrum
    dtype = spec.eigenvalues.dtype
    gamma = jnp.asarray(gamma, dtype)
    m_half = jnp.sum(spec.weights * jnp.sqrt(spec.eigenvalues))
    target = gamma * np.sqrt(np.pi / 2.0) * m_half / 2.0
    noise = loss.noise
    if is_gaussian(noise):
        var = jnp.zeros((), dtype) if isinstance(noise, NoNoise) else noise.std.astype(dtype)**2
        c = target / c_beta(jnp.asarray(batch, dtype))
        return c * (c + jnp.sqrt(c**2 + 4.0 * var)) / 2.0

    def g(y):  # log(tau^2 kappa(tau^2)) - log(target), increasing in y = log tau^2
        return y + jnp.log(sign_kappa(noise, jnp.exp(y), batch)) - jnp.log(target)

    def bisect(_, bracket):
        lo, hi = bracket
        mid = 0.5 * (lo + hi)
        up = g(mid) > 0
        return jnp.where(up, lo, mid), jnp.where(up, mid, hi)

    lo, hi = jax.lax.fori_loop(0, 90, bisect, (jnp.asarray(-120.0, dtype),
                                               jnp.asarray(120.0, dtype)))
    y = jax.lax.stop_gradient(0.5 * (lo + hi))
    for _ in range(2):
        y = y - g(y) / jax.grad(g)(y)
    return jnp.exp(y)


def signsgd_limit_risk(problem: Problem, gamma, batch=1.0):
    r"""The risk at signSGD's fixed point, $\tfrac12(\tau^2_\infty + \mathbb{E}\varepsilon^2)$
    (the excess $\tfrac12\tau^2_\infty$ for a noise without a variance; see
    [`signsgd_fixed_point`][hsgd.theory.signsgd_fixed_point]). There is no critical stepsize:
    it is finite for every $\gamma$, $O(\gamma\sigma)$ with Gaussian noise, $O(\gamma^2)$
    without (SPEC §11)."""
    tau2 = signsgd_fixed_point(problem, gamma, batch)
    return 0.5 * (tau2 + _floor(problem, tau2.dtype))


class SignSGDComparison(NamedTuple):
    r"""[`signsgd_vs_sgd`][hsgd.theory.signsgd_vs_sgd]: the best constant stepsize of each
    optimizer on the problem at the horizon and the risk it reaches (predicted by the ODEs;
    `sgd_risk` is `inf` and `sgd_gamma` NaN where SGD's ODE does not exist, i.e. a noise
    without a variance), and `ratio` = `signsgd_risk / sgd_risk` (< 1: signSGD wins)."""

    horizon: float
    sgd_gamma: float
    sgd_risk: float
    signsgd_gamma: float
    signsgd_risk: float
    ratio: float
    excess: bool


@eqx.filter_jit
def _final_risks(problem, optimizer_type, gammas, ts, batch):
    """The ODE's risk at `ts[-1]` for each constant stepsize of `gammas` (one compiled,
    vmapped solve per problem structure and grid size)."""
    return jax.vmap(lambda g: ode(problem, optimizer_type(Constant(g), batch), ts).risk[-1])(
        gammas)


def _best_constant(risk_at, low, high, num):
    """The best of `num` log-spaced constants in [low, high], refined once on a grid between
    its neighbours; `risk_at` maps an array of stepsizes to risks (NaN/inf: unusable)."""
    grid = np.geomspace(low, high, num)
    values = np.asarray(risk_at(grid))
    values = np.where(np.isfinite(values), values, np.inf)
    i = int(np.argmin(values))
    fine = np.geomspace(grid[max(i - 1, 0)], grid[min(i + 1, num - 1)], num)
    fine_values = np.asarray(risk_at(fine))
    fine_values = np.where(np.isfinite(fine_values), fine_values, np.inf)
    j = int(np.argmin(fine_values))
    if fine_values[j] <= values[i]:
        return float(fine[j]), float(fine_values[j])
    return float(grid[i]), float(values[i])


def signsgd_vs_sgd(problem: Problem, horizon: float, *, batch: int = 1, num: int = 13,
                   excess: bool = True) -> SignSGDComparison:
    r"""signSGD against SGD, each at its **best constant stepsize** for the horizon $T$: the
    constant $\gamma$ minimising the ODE's risk at $T$ (SPEC §1 for SGD, §11 for signSGD), by a
    log-spaced grid of `num` stepsizes and one refinement between the best one's neighbours
    (SGD on $(10^{-3}, 1)\cdot\gamma_{\rm crit}$, $\gamma_{\rm crit} = 2\beta/(\operatorname{tr}
    K/d)$; signSGD on $(10^{-4}, 10)$).

    With `excess` (default) the risks compared are the excess risks $h - \tfrac12
    \mathbb{E}\varepsilon^2$ (the same constant is dropped for both). Where the noise has no
    variance (Student-$t$, $\nu\le2$) SGD's ODE does not exist (SPEC §11): `sgd_risk` is inf —
    the theory does not predict SGD there, whose excess risk is dominated by rare huge jumps;
    signSGD's is finite.

    Cost: $4\,\text{num}$ ODE solves (each `vmap`ped over the grid).
    """
    horizon = float(horizon)
    ts = jnp.asarray([0.0, horizon], problem.dtype)
    loss = problem.loss
    drop = 0.5 * float(_floor(problem, problem.dtype)) if excess else 0.0

    def sign_risk(gammas):
        return _final_risks(problem, SignSGD, jnp.asarray(gammas, problem.dtype), ts,
                            batch) - drop

    sign_gamma, sign_value = _best_constant(sign_risk, 1e-4, 10.0, num)
    finite = loss.has_finite_variance()
    if finite:
        def sgd_risk(gammas):
            return _final_risks(problem, SGD, jnp.asarray(gammas, problem.dtype), ts,
                                batch) - drop

        crit = 2.0 * batch / float(problem.spectrum.mean())
        sgd_gamma, sgd_value = _best_constant(sgd_risk, 1e-3 * crit, 0.999 * crit, num)
    else:
        sgd_gamma, sgd_value = float("nan"), float("inf")
    return SignSGDComparison(horizon=horizon, sgd_gamma=sgd_gamma, sgd_risk=sgd_value,
                             signsgd_gamma=sign_gamma, signsgd_risk=sign_value,
                             ratio=sign_value / sgd_value, excess=bool(excess))
