r"""Adaptive stepsizes on streaming least squares (SPEC §10): the oracle formulas and
AdaGrad-Norm's late-time behaviour.

Notation: $\bar\lambda = \operatorname{tr}K/d = \sum_j\omega_j\lambda_j$,
$\overline{\lambda^2} = \operatorname{tr}K^2/d$, per-mode errors $P_j = d\,\mathbb{E}(x_j -
x^*_j)^2$ (in the eigenbasis), $2h = \sum_j\omega_j\lambda_jP_j + \sigma^2$, batch $\beta$.

**AdaGrad-Norm, noiseless.** The distance $D = \sum_j\omega_jP_j = \|X - X^*\|^2$ obeys
$D' = -2\Gamma\cdot2h + \Gamma^2\bar\lambda\,2h/\beta$ and the accumulator
$S' = \bar\lambda\,2h/\beta$, so along the solution $dD/dS = \Gamma^2 - 2\beta\Gamma/\bar\lambda$
with $\Gamma = \eta/\sqrt{\bar b_0^2 + S}$ — independent of the spectrum's shape. When the risk
goes to zero fast enough that $S(\infty) < \infty$ (any spectrum bounded away from 0),
$D(\infty) = 0$ and integrating gives, with
$u = \sqrt{\bar b_0^2 + S(\infty)} = \eta/\Gamma_\infty$,

$$D(0) = \frac{4\beta\eta}{\bar\lambda}(u - \bar b_0) - 2\eta^2\log\frac{u}{\bar b_0}:$$

one root $u > \bar b_0$ (the right side is convex in $u$, 0 at $\bar b_0$). For large $D(0)$,
$\Gamma_\infty\approx 4\beta\eta^2/(\bar\lambda D(0))$: inversely proportional to the average
eigenvalue, proportional to the batch. On power laws with $\lambda\to0$ the risk can decay too
slowly for $\int h\,dt < \infty$; then $S\to\infty$ and $\Gamma\to0$ (2405.19585's phase
transition); the formula holds only where $S(\infty)$ is finite.

**AdaGrad-Norm on a power law (derived here).** Let the noiseless gradient-flow risk in
intrinsic time $\tau = \int_0^t\Gamma$ decay like $h(\tau)\approx A\tau^{-\kappa}$ (e.g.
$\kappa = (2\alpha + 2\beta - 1)/(2\alpha)$ for $\lambda_j\propto j^{-2\alpha}$,
$x^*_j\propto j^{-\beta}$; in general the energy $\sum_j\omega_j\lambda_jP_j$ carried by
eigenvalues below $\lambda$ scales like $\lambda^\kappa$). Late in the run $\Gamma\to0$, so the
$\Gamma^2$ noise term is negligible and $h$ follows gradient flow in $\tau$. With
$dS/d\tau = \bar\lambda\,2h/(\beta\Gamma) = \bar\lambda\,2h\sqrt S/(\beta\eta)$ (for
$S\gg\bar b_0^2$): if $\kappa > 1$, $\int h\,d\tau < \infty$, $S(\infty)$ is finite and
$\Gamma\to\Gamma_\infty > 0$, so the risk decays like gradient flow, $t^{-\kappa}$. If
$\kappa < 1$, $\sqrt S\approx\bar\lambda A\tau^{1-\kappa}/(\beta\eta(1-\kappa))$, so
$\Gamma = d\tau/dt\propto\tau^{-(1-\kappa)}$, $\tau\propto t^{1/(2-\kappa)}$ and

$$\Gamma(t)\propto t^{-(1-\kappa)/(2-\kappa)},\qquad h(t)\propto t^{-\kappa/(2-\kappa)}:$$

the stepsize decays and the risk exponent drops from $\kappa$ to $\kappa/(2-\kappa)$ — the
phase transition of 2405.19585 at $\kappa = 1$ (at $\kappa = 1$ itself, logarithmic
corrections). [`adagrad_norm_power_law_exponents`][hsgd.theory.adagrad_norm_power_law_exponents]
returns both exponents; tests/test_adaptive.py checks them on the ODE.

**AdaGrad-Norm with label noise $\sigma > 0$.** $2h\to\sigma^2$, so
$S(t) = \bar\lambda\sigma^2t/\beta\,(1 + o(1))$ and

$$\Gamma(t)\sim\eta\sqrt{\frac{\beta}{\bar\lambda\,\sigma^2\,t}},$$

with a relative correction $O(t^{-1/2})$ (the excess risk, itself $O(\Gamma)$, and $\bar b_0^2$
enter $S$ at order $t^{1/2}$ and $1$). The batch multiplies the late stepsize by $\sqrt\beta$
(and divides the noise term of SPEC §1 by $\beta$).
"""

import jax.numpy as jnp


def _mean(spectrum, q=None):
    lam = spectrum.eigenvalues
    return jnp.sum(spectrum.weights * (lam if q is None else q(lam)))


def polyak_stepsize(spectrum, errors, noise_std=0.0, batch=1.0):
    r"""SPEC §10's Polyak oracle on least squares,
    $\Gamma_P = \beta\sum_j\omega_j\lambda_jP_j/(2\bar\lambda\cdot2h)$, from the per-mode errors
    $P_j$ (`errors`, one per mode of `spectrum`)."""
    lam, w = spectrum.eigenvalues, spectrum.weights
    excess = jnp.sum(w * lam * errors)
    two_h = excess + jnp.asarray(noise_std) ** 2
    return batch * excess / (2 * _mean(spectrum) * two_h)


def line_search_stepsize(spectrum, errors, noise_std=0.0, batch=1.0):
    r"""SPEC §10's exact line search on least squares,
    $\Gamma_L = \beta\sum_j\omega_j\lambda_j^2P_j/(\overline{\lambda^2}\cdot2h)$."""
    lam, w = spectrum.eigenvalues, spectrum.weights
    two_h = jnp.sum(w * lam * errors) + jnp.asarray(noise_std) ** 2
    return batch * jnp.sum(w * lam**2 * errors) / (_mean(spectrum, lambda x: x**2) * two_h)


def adagrad_norm_limit_stepsize(spectrum, distance0, eta, b0, batch=1.0, iterations: int = 60):
    r"""AdaGrad-Norm's limiting stepsize $\Gamma_\infty = \eta/u$ on noiseless least squares
    (module docstring): $u > \bar b_0$ the root of
    $\frac{4\beta\eta}{\bar\lambda}(u - \bar b_0) - 2\eta^2\log(u/\bar b_0) = D(0)$,
    $D(0) = \|X_0 - X^*\|^2$ (`distance0`). Newton's method from a point right of the root
    (the function is convex and increasing there, so the iterates decrease monotonically to it);
    traceable and differentiable."""
    lbar = _mean(spectrum)
    A = 4 * batch * eta / lbar
    C = 2 * eta**2
    # log y <= 2 sqrt(y) gives F(u) >= A(u - b0) - 2C sqrt(u / b0): u0 with that bound = D0.
    s = (2 * C / jnp.sqrt(b0) + jnp.sqrt(4 * C**2 / b0 + 4 * A * (A * b0 + distance0))) / (2 * A)
    u = jnp.maximum(s**2, jnp.maximum(b0, C / A))
    for _ in range(iterations):
        F = A * (u - b0) - C * jnp.log(u / b0) - distance0
        u = u - F / (A - C / u)
    return eta / u


def adagrad_norm_noisy_stepsize(spectrum, t, eta, noise_std, batch=1.0):
    r"""AdaGrad-Norm's late-time stepsize with label noise $\sigma > 0$ (module docstring):
    $\Gamma(t)\sim\eta\sqrt{\beta/(\bar\lambda\sigma^2t)}$ (relative error $O(t^{-1/2})$)."""
    return eta * jnp.sqrt(batch / (_mean(spectrum) * jnp.asarray(noise_std) ** 2 * t))


def adagrad_norm_power_law_exponents(kappa):
    r"""The late-time exponents of AdaGrad-Norm on noiseless least squares whose gradient-flow
    risk decays like $\tau^{-\kappa}$ (module docstring): returns `(gamma_exponent,
    risk_exponent)` with $\Gamma(t)\propto t^{\,\text{gamma\_exponent}}$ and
    $h(t)\propto t^{\,\text{risk\_exponent}}$ —
    $(-(1-\kappa)/(2-\kappa),\ -\kappa/(2-\kappa))$ for $\kappa < 1$ (the stepsize decays),
    $(0, -\kappa)$ for $\kappa > 1$ ($\Gamma\to\Gamma_\infty$, see
    [`adagrad_norm_limit_stepsize`][hsgd.theory.adagrad_norm_limit_stepsize]). Traceable."""
    kappa = jnp.asarray(kappa)
    hard = kappa < 1
    return (jnp.where(hard, -(1 - kappa) / (2 - kappa), 0.0),
            jnp.where(hard, -kappa / (2 - kappa), -kappa))
