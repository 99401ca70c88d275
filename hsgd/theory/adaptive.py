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
