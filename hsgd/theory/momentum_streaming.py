r"""Streaming momentum (SPEC §9): the effective stepsize of heavy ball, the stability region of the
linear family with constant coefficients, and power-law exponents of SGD and DANA.

**Effective stepsize** (SPEC §9). With a fixed (not $d$-scaled) momentum the auxiliary variable
follows the gradient adiabatically, and the $d\to\infty$ limit is SGD with
$\Gamma_{\rm eff} = d(\gamma_2 + \gamma_1\gamma_3/\Delta) = \bar\gamma_2 + \bar\gamma_1
\bar\gamma_3/\delta$; heavy ball ($\Delta = 1 - \Delta_{\rm hb}$, $\gamma_1 = 1$,
$\gamma_2 = \gamma/d$, $\gamma_3 = \gamma\Delta_{\rm hb}/d$) has $\Gamma_{\rm eff} =
\gamma/(1 - \Delta_{\rm hb})$.

**Stability** (least squares, constant scaled coefficients, derived here from SPEC §9's three
scalars). Each mode's drift matrix $A = \begin{pmatrix}-\bar\gamma_2\lambda & -\bar\gamma_3\\
\bar\gamma_1\lambda & -\delta\end{pmatrix}$ is stable for non-negative coefficients with
$\bar\gamma_2\lambda + \delta > 0$ and $\bar\gamma_2\lambda\delta + \bar\gamma_1\bar\gamma_3
\lambda > 0$; at finite $d$ the three scalars' generator gains $(AVA^\top +
(\lambda^2/\beta)P\,cc^\top)/d$ (the exact recursion's, SPEC §9) and the test is Routh–Hurwitz
on that $3\times3$ generator. The noise $2h/\beta$ feeds back through
$2h = \sum_j\omega_j\lambda_jP_j + \sigma^2$; with $p_j$ the stationary $P_j$ of the three
scalars for a unit forcing
($2h/\beta = 1$), the risk stays bounded iff

$$\kappa = \frac1\beta\sum_j\omega_j\lambda_j\,p_j < 1,\qquad 2h_\infty = \frac{\sigma^2}
{1 - \kappa}.$$

For SGD ($\bar\gamma_1 = \bar\gamma_3 = 0$) $p_j = \bar\gamma_2/2$ and this is SPEC §1's
$\gamma < 2\beta/(\operatorname{tr}K/d)$ (§8 without the finite-$d$ term); for large $\delta$
it tends to SGD's at $\Gamma_{\rm eff}$.

**Exponents on power laws** (eigenvalues $\lambda_j\propto j^{-2\alpha}$, target weights
$\lambda_jx^{*2}_j\propto j^{-2\alpha-2\beta_t}$, the PLRF parametrisation of SPEC §13; the
drift-limited regime, before the noise floor and before the finite-$d$ plateau). SGD removes the
modes with $\lambda_j\,\gamma k\gtrsim 1$, so the excess risk after $k$ iterations is
$\sum_{j > J}j^{-2\alpha-2\beta_t}$ with $J\sim k^{1/(2\alpha)}$:

$$\mathcal R_{\rm SGD}(k)\propto k^{-\rho},\qquad \rho = \frac{2\alpha + 2\beta_t - 1}{2\alpha}.$$

DANA-decaying's momentum makes mode $j$ an oscillator $e'' + \frac{\delta}{t}e' +
\bar\gamma_1\bar\gamma_3(t)\lambda_je = 0$ with $\bar\gamma_1\bar\gamma_3\propto
k^{-1/(2\alpha)}$: the mode is removed once its phase $\int\sqrt{\bar\gamma_1\bar\gamma_3
\lambda_j}\,dt\gtrsim1$, i.e. $\lambda_j k^{2 - 1/(2\alpha)}\gtrsim 1$, so the exponent is
multiplied by $2 - 1/(2\alpha)$:

$$\mathcal R_{\rm DANA}(k)\propto k^{-\rho\,(2 - 1/(2\alpha))}.$$

**Sources.** $\Gamma_{\rm eff}$: SPEC §9 (checked there against runs). The stability condition:
derived here from SPEC §9's equations (the three-scalar form is exact per mode for least
squares), checked in `tests/test_momentum_streaming.py` against the long-time ODE. The SGD
exponent is the standard drift-limited power-law rate (cf. 2405.15074); the DANA exponent is
the heuristic above, **stated in the spirit of 2505.16098's claim that DANA-decaying improves
the exponent, not taken from that paper's formulas** (not available here). The ODE supports
both: at $\alpha = 0.75$, $\beta_t = 0.5$ (noiseless, $10^6$ modes, $d\to\infty$ form) SGD's
local slope is 1.003–1.005 over $k\in[10^3, 10^7]$ ($\rho = 1$), DANA-decaying's rises towards
$4/3$ from below, slowly — 1.196, 1.238, 1.270, 1.292, 1.309, 1.333 at $k = 10^3, 5\cdot10^3,
2\cdot10^4, 10^5, 5\cdot10^5, 2\cdot10^6$, before the spectrum's cutoff steepens it
(`benchmarks/momentum_streaming.py`; a fitted exponent over a finite window is below the
asymptotic one).
"""

import jax.numpy as jnp
import numpy as np


def heavy_ball_effective_stepsize(gamma, momentum):
    r"""$\Gamma_{\rm eff} = \gamma/(1 - \Delta_{\rm hb})$: streaming heavy ball with a fixed
    momentum $\Delta_{\rm hb}\in[0, 1)$ is, as $d\to\infty$, SGD at this stepsize (SPEC §9),
    noise included. Relative corrections $O(\Gamma_{\rm eff}\lambda_{\max}/(d(1-\Delta_{\rm
    hb})))$."""
    return jnp.asarray(gamma) / (1.0 - jnp.asarray(momentum))


def effective_stepsize(gamma1, gamma2, gamma3, delta):
    r"""$\Gamma_{\rm eff} = \bar\gamma_2 + \bar\gamma_1\bar\gamma_3/\delta$ of the linear family
    in SPEC §9's scaled coefficients when the momentum relaxes fast ($\delta\gg
    \Gamma_{\rm eff}\lambda_{\max}$): the SGD stepsize it reduces to."""
    return jnp.asarray(gamma2) + jnp.asarray(gamma1) * jnp.asarray(gamma3) / jnp.asarray(delta)


def _generator(lam, g1, g2, g3, dl, batch, inv_d):
    r"""The per-mode linear generator $M$ ($3\times3$, on $(P, C, Q)$) of SPEC §9's three
    scalars at fixed $2h$, with least squares' finite-$d$ terms $(AVA^\top +
    (\lambda^2/\beta)P\,cc^\top)/d$ when `inv_d` $= 1/d > 0$, and the unit forcing $f$
    ($2h/\beta = 1$): $(P, C, Q)' = M(P, C, Q) + f$. Leading axes: those of `lam`."""
    lam = jnp.asarray(lam)
    zero = jnp.zeros_like(lam)
    a, b, e, g = -g2 * lam, -g3 + zero, g1 * lam, -dl + zero
    m = lam**2 / batch  # the multiplicative noise's weight on P
    M = jnp.stack([
        jnp.stack([2 * a + inv_d * (a * a + g2**2 * m), 2 * b + inv_d * 2 * a * b,
                   inv_d * b * b + zero], -1),
        jnp.stack([e + inv_d * (a * e - g1 * g2 * m), a + g + inv_d * (a * g + b * e),
                   b + inv_d * b * g], -1),
        jnp.stack([inv_d * (e * e + g1**2 * m), 2 * e + inv_d * 2 * e * g,
                   2 * g + inv_d * g * g], -1)], -2)
    f = jnp.stack([g2**2 * lam, -g1 * g2 * lam, g1**2 * lam], -1)
    return M, f


def _inv_d(d):
    return 0.0 if d is None else 1.0 / jnp.asarray(d)


def _unit_response(lam, g1, g2, g3, dl, batch=1, inv_d=0.0):
    r"""The stationary $P$ of SPEC §9's three scalars for a unit forcing $2h/\beta = 1$, per
    mode (a 3x3 linear solve each; `lam` any shape)."""
    M, f = _generator(lam, g1, g2, g3, dl, batch, inv_d)
    return jnp.linalg.solve(M, -f[..., None])[..., 0, 0]


def streaming_momentum_kappa(spectrum, gamma1, gamma2, gamma3, delta, batch=1, d=None):
    r"""$\kappa = \frac1\beta\sum_j\omega_j\lambda_jp_j$ (module docstring) for constant scaled
    coefficients on a [`Spectrum`][] (least squares): the family is mean-square stable iff
    every mode's generator is stable and $\kappa < 1$, and then the risk floor is
    $h_\infty = \sigma^2/(2(1-\kappa))$. `d`: include least squares' exact finite-$d$ terms
    (the $p_j$ of the exact recursion's fixed point, SPEC §9); `None`: the $d\to\infty$ form.
    Traceable in the coefficients."""
    lam = spectrum.eigenvalues
    w = spectrum.weights
    p = _unit_response(lam, gamma1, gamma2, gamma3, delta, batch, _inv_d(d))
    return jnp.sum(w * lam * p) / batch


def streaming_momentum_stable(spectrum, gamma1, gamma2, gamma3, delta, batch=1, d=None):
    r"""Whether the linear family with these constant scaled coefficients is mean-square
    stable on least squares: every mode's $3\times3$ generator $M_j$ of $(P, C, Q)$ is
    Hurwitz (Routh–Hurwitz on its characteristic polynomial $s^3 + c_2s^2 + c_1s + c_0$:
    $c_2 > 0$, $c_0 > 0$, $c_2c_1 > c_0$) and $\kappa < 1$
    ([`streaming_momentum_kappa`][hsgd.theory.streaming_momentum_kappa]). `d`: at finite $d$
    (the exact recursion's region), else the $d\to\infty$ form."""
    M, _ = _generator(spectrum.eigenvalues, gamma1, gamma2, gamma3, delta, batch, _inv_d(d))
    c2 = -jnp.trace(M, axis1=-2, axis2=-1)
    c1 = (M[..., 0, 0] * M[..., 1, 1] - M[..., 0, 1] * M[..., 1, 0]
          + M[..., 0, 0] * M[..., 2, 2] - M[..., 0, 2] * M[..., 2, 0]
          + M[..., 1, 1] * M[..., 2, 2] - M[..., 1, 2] * M[..., 2, 1])
    c0 = -jnp.linalg.det(M)
    drift_ok = jnp.all((c2 > 0) & (c0 > 0) & (c2 * c1 > c0))
    kappa = streaming_momentum_kappa(spectrum, gamma1, gamma2, gamma3, delta, batch, d)
    return drift_ok & (kappa < 1)


def streaming_momentum_limit_risk(spectrum, noise_std, gamma1, gamma2, gamma3, delta, batch=1,
                                  d=None):
    r"""$h_\infty = \sigma^2/(2(1-\kappa))$: the long-time risk of least squares under the family
    with constant coefficients (inf when $\kappa\ge1$); `d` as for
    [`streaming_momentum_kappa`][hsgd.theory.streaming_momentum_kappa]."""
    kappa = streaming_momentum_kappa(spectrum, gamma1, gamma2, gamma3, delta, batch, d)
    return jnp.where(kappa < 1, 0.5 * jnp.asarray(noise_std)**2 / (1 - kappa), jnp.inf)


def sgd_power_law_exponent(alpha, target_exponent):
    r"""$\rho = (2\alpha + 2\beta_t - 1)/(2\alpha)$: SGD's excess risk $\propto k^{-\rho}$ on a
    power law $\lambda_j\propto j^{-2\alpha}$ with target weights $\lambda_jx^{*2}_j\propto
    j^{-2\alpha-2\beta_t}$ in the drift-limited regime (module docstring)."""
    return (2.0 * alpha + 2.0 * target_exponent - 1.0) / (2.0 * alpha)


def dana_power_law_exponent(alpha, target_exponent):
    r"""$\rho\,(2 - 1/(2\alpha))$: DANA-decaying's exponent by the oscillator heuristic of the
    module docstring (drift-limited regime; not the paper's formula, see Sources)."""
    return sgd_power_law_exponent(alpha, target_exponent) * (2.0 - 1.0 / (2.0 * alpha))


def fitted_exponent(ts, risk, t_min, t_max):
    r"""The slope $-\,d\log\mathcal R/d\log t$ of a least-squares line through the points of
    `(ts, risk)` with $t_{\min}\le t\le t_{\max}$ (NumPy)."""
    ts, risk = np.asarray(ts, float), np.asarray(risk, float)
    keep = (ts >= t_min) & (ts <= t_max) & np.isfinite(risk) & (risk > 0)
    if keep.sum() < 2:
        raise ValueError(f"fitted_exponent needs >= 2 points with {t_min} <= t <= {t_max}")
    slope = np.polyfit(np.log(ts[keep]), np.log(risk[keep]), 1)[0]
    return float(-slope)

