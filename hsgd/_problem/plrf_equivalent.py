r"""The deterministic equivalent of power-law random features (SPEC §13): the spectrum of
$\hat K = W^\top DW$ and the target's weights on its eigenvectors for large $v$ and $d$, without
sampling $W$.

**Spectrum.** $\hat K$ ($d\times d$) is the Gram matrix of $d$ samples $D^{1/2}g_i$,
$g_i\sim N(0, I_v/d)$: its Stieltjes transform $m(z) = \frac1d\operatorname{tr}(\hat K - z)^{-1}$
has the deterministic limit given by the Marchenko–Pastur/Silverstein fixed point with
population $D = \operatorname{diag}(d_j)$, $d_j = j^{-2\alpha}$:

$$-\frac1{m(z)} = z - \frac1d\sum_{j=1}^{v}\frac{d_j}{1 + d_j\,m(z)},\qquad
\operatorname{Im}z > 0\ \Rightarrow\ \operatorname{Im}m > 0,$$

and the eigenvalue density (fraction of the $d$ eigenvalues) is
$\rho(x) = \frac1\pi\operatorname{Im}m(x + i0)$.

**Target.** With $g = W^\top Db$ the risk weight of an eigenvector $u_k$ is
$\lambda_k(u_k^\top\theta^*)^2 = (u_k^\top g)^2/\lambda_k$ ($\theta^* = \hat K^+g$), and the
push-through identity $D^{1/2}W(\hat K - z)^{-1}W^\top D^{1/2} = I + z(S - z)^{-1}$
($S = D^{1/2}WW^\top D^{1/2}$) with the deterministic equivalent
$(S - z)^{-1}\asymp -z^{-1}(I + m(z)D)^{-1}$ gives the transform of the measure
$\nu = \sum_k(u_k^\top g)^2\delta_{\lambda_k}$:

$$G(z) = g^\top(\hat K - z)^{-1}g \asymp \sum_j d_j^2b_j^2\,\frac{m(z)}{1 + d_j\,m(z)},$$

so the risk weight per unit $x$ is $\frac1{\pi x}\operatorname{Im}G(x + i0)$. At $z = 0$
($v > d$: $\hat K$ is invertible) $m_0 = m(0) > 0$ solves
$\sum_j d_jm_0/(1 + d_jm_0) = d$ (the features' degrees of freedom), the excess risk at
$\theta = 0$ is $\tfrac12G(0)$ and the irreducible loss is

$$P_\infty = \tfrac12\sum_jd_jb_j^2 - \tfrac12G(0) = \tfrac12\sum_j\frac{d_jb_j^2}{1 + d_jm_0}.$$

**Discretisation.** $m$ is computed at $z_k = x_k(1 + ih)$ on $N$ log-spaced points $x_k$ with
log-spacing $h$ (the smoothing equals the grid's resolution, so each isolated top eigenvalue —
a bump of relative width $\sim\sqrt{2/d}$ — keeps its mass on the grid), by Newton's method
continued from the largest $x$ (where $m\approx -1/z$) downward, each iterate kept in the upper
half plane. $\operatorname{Im}m(x + i\epsilon)$ is the density convolved with a Cauchy kernel of
width $\epsilon = x\cdot h/4$, whose $1/(x - \lambda)^2$ tails carry every eigenvalue's mass
upward: read as a density it made $\operatorname{tr}\hat K$ grow like $hd$ (2.2–4.8 for a true
1.64 at $\alpha = 1$, $d$ = 500–3162) and pushed mass above the top of the spectrum. The
first-order deconvolution $\operatorname{Im}m(x + i\epsilon) - \epsilon\operatorname{Re}
m'(x + i\epsilon) = \operatorname{Im}m(x + i0) + O(\epsilon^3)$ (the same for $G$; $m' =
1/\partial_mF$ from the fixed point $F(m, z) = 0$) removes those tails: $\operatorname{tr}\hat K$
within 0.2% and under $10^{-5}$ of an eigenvalue above $1.1\lambda_{\max}$ at the same points.
Each $x_k$ is a mode with weight $\omega_k\propto\rho(x_k)x_kh$ and risk weight
$r_k\propto\operatorname{Im}G(z_k)h/\pi$ (both so deconvolved and clipped at 0), both
normalised (the mass lost to the grid's ends is reported) and $r$ rescaled to the exact $G(0)$,
so the initial risk and $P_\infty$ are exact.
The mass the smoothing leaks above the top eigenvalue is merged into the mode at the median of
the top eigenvalue's bump (no mode lies above the spectrum, so the stepsize limit is the
spectrum's).
The population sum runs over the first $\min(v, 2048)$ indices exactly and over geometric bins
(ratio $1.002$) beyond, so $v$ may be $10^6$ and more at the same cost.

Cost: $N\times$ (Newton iterations) $\times$ (population terms), independent of $d$; about a
second at $N = 4096$ on a CPU. Everything is traceable in `alpha`, `beta` and `d` ($v$ and $N$
fix shapes), so `jax.vmap` over a grid of exponents or dimensions is one call.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .._loss.least_squares import LeastSquares
from .._spectrum import Spectrum

_EXACT = 2048  # population indices summed exactly; geometric bins beyond
_RATIO = 1.002  # the bins' ratio
_NEWTON = 8  # Newton iterations per grid point (continuation: 3-6 suffice)
_SMOOTHING = 0.25  # Im z_k / x_k in units of the grid's log-spacing
_ROBUST = 1e-2  # the smoothing the continuation in x runs at
_RUNGS = 4  # smoothings from _ROBUST down to the target (geometric)


class PLRFEquivalent(NamedTuple):
    r"""The deterministic equivalent of a PLRF instance (module docstring).

    - `eigenvalues` $(N,)$: the grid $x_k$ (increasing).
    - `weights` $(N,)$: $\omega_k$, the fraction of the $d$ eigenvalues at $x_k$ (sum 1).
    - `risk_weights` $(N,)$: $r_k$, the excess risk at $\theta = 0$ carried by the modes at
      $x_k$, times 2 ($\sum_kr_k = G(0) = \theta^{*\top}\hat K\theta^*$).
    - `irreducible_loss`: $P_\infty$.
    - `m0`: $m(0) = \frac1d\operatorname{tr}\hat K^{-1}$.
    - `captured`: the mass of $\rho$ on the grid before normalisation ($\approx 1$; less means
      the grid misses part of the spectrum).
    """

    eigenvalues: Float[Array, " N"]
    weights: Float[Array, " N"]
    risk_weights: Float[Array, " N"]
    irreducible_loss: Float[Array, ""]
    m0: Float[Array, ""]
    captured: Float[Array, ""]

    def loss(self) -> LeastSquares:
        r"""Least squares with Gaussian label noise of variance $2P_\infty$ (SPEC §13)."""
        return LeastSquares(jnp.sqrt(2.0 * self.irreducible_loss))

    def spectrum(self) -> Spectrum:
        r"""The grid as a [`Spectrum`][] (weights $\omega_k$)."""
        return Spectrum(self.eigenvalues, self.weights)

    def moments(self) -> Float[Array, "N 2 2"]:
        r"""$V_k(0)$ for $\theta_0 = 0$: the target block $T_k$ only."""
        T = self.target_moments()
        zero = jnp.zeros_like(T)
        return jnp.stack([jnp.stack([zero, zero], -1), jnp.stack([zero, T], -1)], -2)

    def target_moments(self) -> Float[Array, " N"]:
        r"""$T_k = d\,\overline{(u^\top\theta^*)^2}$ at $x_k$: $r_k/(\omega_kx_k)$, so that
        $\sum_k\omega_kx_kT_k = G(0)$ (0 where a mode has no weight)."""
        denom = self.weights * self.eigenvalues
        tiny = jnp.finfo(denom.dtype).tiny
        return jnp.where(denom > tiny, self.risk_weights / jnp.maximum(denom, tiny), 0.0)


def population_bins(v: int):
    r"""Static binning of the population indices $1..v$: `(bin_of_index, counts)` — the
    first $\min(v, 2048)$ indices one per bin, then geometric bins of ratio $1.002$."""
    v = int(v)
    exact = min(v, _EXACT)
    ids = np.arange(exact)
    if v > exact:
        edges = [exact]
        while edges[-1] < v:
            edges.append(max(edges[-1] + 1, int(np.ceil(edges[-1] * _RATIO))))
        edges[-1] = v
        edges = np.asarray(edges)
        j = np.arange(exact, v)
        ids = np.concatenate([ids, exact + np.searchsorted(edges, j, side="right") - 1])
    counts = np.bincount(ids)
    return ids, counts


def _population(alpha, beta, v: int, dtype):
    """Per bin: counts c, mean d_j, sum d_j^2 b_j^2, sum d_j b_j^2."""
    ids, counts = population_bins(v)
    num = int(counts.shape[0])
    j = jnp.arange(1, v + 1, dtype=dtype)
    dj = j ** (-2.0 * alpha)
    bj2 = j ** (-2.0 * beta)

    def seg(x):
        return jax.ops.segment_sum(x, jnp.asarray(ids), num_segments=num)

    c = jnp.asarray(counts, dtype)
    return c, seg(dj) / c, seg(dj**2 * bj2), seg(dj * bj2)


def _m0(c, dbar, d):
    """m(0) > 0: sum_i c_i dbar_i m / (1 + dbar_i m) = d, by bisection in log m."""

    def g(logm):
        m = jnp.exp(logm)
        return jnp.sum(c * dbar * m / (1.0 + dbar * m)) - d

    def body(_, lohi):
        lo, hi = lohi
        mid = 0.5 * (lo + hi)
        up = g(mid) > 0
        return jnp.where(up, lo, mid), jnp.where(up, mid, hi)

    dtype = dbar.dtype
    lo, hi = jax.lax.fori_loop(0, 200, body, (jnp.asarray(-80.0, dtype),
                                              jnp.asarray(80.0, dtype)))
    return jnp.exp(0.5 * (lo + hi))


def _stieltjes(xs, eps, c, dbar, d):
    r"""m(x(1 + i eps)) at the points xs (decreasing): Newton's method in the upper half plane,
    continued along x at the robust smoothing 1e-2 and, at each x, down a geometric ladder of
    smoothings to `eps` (each rung starts from the previous one's root, so the iterate never
    has to find the branch of a narrow bump from afar)."""

    def residual(m, z):
        s = c * dbar / (1.0 + dbar * m)
        f = -1.0 / m - z + jnp.sum(s) / d
        fp = 1.0 / m**2 - jnp.sum(s * dbar / (1.0 + dbar * m)) / d
        return f, fp

    def newton(m, z):
        def body(_, m):
            f, fp = residual(m, z)
            new = m - f / fp
            # keep the iterate in the upper half plane (the branch of a Stieltjes transform)
            return jnp.where(new.imag > 0, new, new.real + 0.5j * m.imag)

        return jax.lax.fori_loop(0, _NEWTON, body, m)

    ladder = jnp.exp(jnp.linspace(jnp.log(_ROBUST), jnp.log(eps), _RUNGS))

    def step(m_robust, x):
        m_robust = newton(m_robust, x * (1.0 + 1j * ladder[0]))

        def rung(m, e):
            m = newton(m, x * (1.0 + 1j * e))
            return m, None

        m, _ = jax.lax.scan(rung, m_robust, ladder[1:])
        return m_robust, m

    z0 = xs[0] * (1.0 + 1j * _ROBUST)
    _, ms = jax.lax.scan(step, -1.0 / z0, xs.astype(z0.dtype))
    return ms


def plrf_equivalent(alpha, beta, v: int, d, *, num_modes: int = 8192,
                    dtype=None) -> PLRFEquivalent:
    r"""The deterministic equivalent of PLRF with data exponent `alpha`, target exponent
    `beta`, `v` data dimensions and `d` features (module docstring): the spectrum of
    $\hat K$ on `num_modes` log-spaced points, the risk weights of the target on them and
    $P_\infty$.

    Requires $v > d$ ($\hat K$ invertible) and $\alpha > 1/2$ is not needed ($v$ is finite).
    `alpha`, `beta` and `d` may be traced (vmap over them); `v` and `num_modes` are static.
    """
    v, num_modes = int(v), int(num_modes)
    dtype = jnp.result_type(float) if dtype is None else dtype
    c, dbar, tmass, pmass = _population(jnp.asarray(alpha, dtype), jnp.asarray(beta, dtype),
                                        v, dtype)
    d = jnp.asarray(d, dtype)
    m0 = _m0(c, dbar, d)
    top = dbar[0] + jnp.sum(c * dbar) / d
    lo, hi = jnp.log(1e-4 / m0), jnp.log(4.0 * top)
    logx = jnp.linspace(hi, lo, num_modes)
    h = (hi - lo) / (num_modes - 1)
    xs = jnp.exp(logx)
    eps = _SMOOTHING * h
    ms = _stieltjes(xs, eps, c, dbar, d)
    den = 1.0 + dbar[None, :] * ms[:, None]
    G = jnp.sum(tmass[None, :] * ms[:, None] / den, axis=1)
    # First-order deconvolution of the Cauchy smoothing (module docstring): Im f(x + i e) -
    # e Re f'(x + i e) = Im f(x + i0) + O(e^3) tails, with m' = 1 / (dF/dm) from the fixed point.
    dm = 1.0 / (1.0 / ms**2 - jnp.sum(c * dbar**2 / den**2, axis=1) / d)
    dG = jnp.sum(tmass[None, :] / den**2, axis=1) * dm
    mass = (ms.imag - eps * xs * dm.real) / np.pi * xs * h
    risk = (G.imag - eps * xs * dG.real) / np.pi * h
    captured = jnp.sum(mass)
    G0 = jnp.sum(tmass * m0 / (1.0 + dbar * m0))
    weights = jnp.maximum(mass, 0.0) / captured
    risk = jnp.maximum(risk, 0.0)
    risk = risk * (G0 / jnp.sum(risk))
    # The smoothing leaks mass above the top eigenvalue; modes there, however light, would set
    # the stepsize limit (SPEC §8 (i) is per mode). Merge everything above the median of the top
    # eigenvalue's bump (where the mass from the top reaches half an eigenvalue, 1/(2d)) into
    # that mode, and park the emptied modes at its eigenvalue with no weight.
    above = jnp.cumsum(weights)  # xs decreasing: the mass above each point
    top = jnp.argmax(above >= 0.5 / d)
    index = jnp.arange(num_modes)
    merged = index < top
    weights = jnp.where(index == top, above[top], jnp.where(merged, 0.0, weights))
    cum_risk = jnp.cumsum(risk)
    risk = jnp.where(index == top, cum_risk[top], jnp.where(merged, 0.0, risk))
    xs = jnp.where(merged, xs[top], xs)
    tiny = jnp.finfo(dtype).tiny
    weights = jnp.maximum(weights, tiny)
    P_inf = 0.5 * jnp.sum(pmass / (1.0 + dbar * m0))
    return PLRFEquivalent(eigenvalues=xs[::-1], weights=weights[::-1],
                          risk_weights=risk[::-1], irreducible_loss=P_inf, m0=m0,
                          captured=captured)
