r"""Spectra of the data covariance: modes $(\lambda_j, \omega_j)$ with $\sum_j \omega_j = 1$ (SPEC §5).

Problems are posed in the eigenbasis of $K$, so no eigenvectors are stored. An explicit list of
$d$ eigenvalues has $\omega_j = 1/d$; a continuous law (Marchenko–Pastur) or a coarsened
spectrum carries quadrature weights. $\sum_j \omega_j \lambda_j = \operatorname{tr}K/d$.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float


def _concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


class Spectrum(eqx.Module):
    r"""A spectrum: eigenvalues $\lambda_j \ge 0$ and weights $\omega_j > 0$.

    **Arguments:**

    - `eigenvalues`: array `(n,)`.
    - `weights`: array `(n,)`, summing to 1.

    Use the constructors: [`Spectrum.from_eigenvalues`][], [`Spectrum.from_covariance`][],
    [`Spectrum.uniform`][], [`Spectrum.power_law`][], [`Spectrum.marchenko_pastur`][].
    """

    eigenvalues: Float[Array, " n"]
    weights: Float[Array, " n"]

    def __init__(self, eigenvalues, weights):
        lam = jnp.asarray(eigenvalues, dtype=float)
        w = jnp.asarray(weights, dtype=float)
        if lam.ndim != 1 or w.shape != lam.shape:
            raise ValueError(f"eigenvalues and weights must be 1-D of the same length, got "
                             f"shapes {lam.shape} and {w.shape}")
        if lam.shape[0] == 0:
            raise ValueError("a spectrum needs at least one eigenvalue")
        if _concrete(lam) and _concrete(w):
            lam_np, w_np = np.asarray(lam), np.asarray(w)
            bad = np.flatnonzero(~np.isfinite(lam_np))
            if bad.size:
                raise ValueError(f"eigenvalue {bad[0]} is {lam_np[bad[0]]}: eigenvalues must "
                                 "be finite")
            tol = 1e-12 * np.max(np.abs(lam_np))
            bad = np.flatnonzero(lam_np < -tol)
            if bad.size:
                raise ValueError(f"eigenvalue {bad[0]} is {lam_np[bad[0]]}: a covariance "
                                 "spectrum must be non-negative")
            bad = np.flatnonzero(~(w_np > 0) | ~np.isfinite(w_np))
            if bad.size:
                raise ValueError(f"weight {bad[0]} is {w_np[bad[0]]}: weights must be finite "
                                 "and positive")
            lam = jnp.maximum(lam, 0.0)
        self.eigenvalues = lam
        self.weights = w

    @property
    def num_modes(self) -> int:
        return self.eigenvalues.shape[0]

    def mean(self) -> Float[Array, ""]:
        r"""$\sum_j \omega_j\lambda_j = \operatorname{tr}K/d$."""
        return jnp.sum(self.weights * self.eigenvalues)

    def moment(self, q) -> Float[Array, ""]:
        r"""$\sum_j \omega_j q(\lambda_j)$ for a vectorised function $q$."""
        return jnp.sum(self.weights * q(self.eigenvalues))

    @classmethod
    def from_eigenvalues(cls, eigenvalues) -> "Spectrum":
        r"""$d$ explicit eigenvalues, $\omega_j = 1/d$. Example:
        `Spectrum.from_eigenvalues([1.0, 0.5, 0.1])`."""
        lam = jnp.asarray(eigenvalues, dtype=float)
        if lam.ndim != 1:
            raise ValueError(f"eigenvalues must be 1-D, got shape {lam.shape}")
        return cls(lam, jnp.full(lam.shape, 1.0 / max(lam.shape[0], 1)))

    @classmethod
    def from_covariance(cls, K) -> "Spectrum":
        r"""The eigenvalues of a symmetric $d\times d$ covariance $K$ (ω = 1/d)."""
        K = np.asarray(K, dtype=float)
        if K.ndim != 2 or K.shape[0] != K.shape[1]:
            raise ValueError(f"a covariance must be a square matrix, got shape {K.shape}")
        if not np.all(np.isfinite(K)):
            raise ValueError("the covariance contains NaN or inf")
        asym = np.max(np.abs(K - K.T))
        if asym > 1e-10 * max(np.max(np.abs(K)), 1e-300):
            raise ValueError(f"the covariance is not symmetric (max |K - K^T| = {asym:.3g})")
        return cls.from_eigenvalues(np.linalg.eigvalsh(0.5 * (K + K.T))[::-1].copy())

    @classmethod
    def uniform(cls, d: int, low: float, high: float) -> "Spectrum":
        r"""$d$ eigenvalues on the quantile grid of the uniform law on $[\text{low}, \text{high}]$:
        $\lambda_j = \text{low} + (\text{high} - \text{low})(j - \tfrac12)/d$."""
        d = int(d)
        if d < 1:
            raise ValueError(f"d must be >= 1, got {d}")
        if not (low >= 0) or not (high > low):
            raise ValueError(f"uniform needs 0 <= low < high, got low={low}, high={high}")
        j = np.arange(1, d + 1)
        return cls.from_eigenvalues(low + (high - low) * (j - 0.5) / d)

    @classmethod
    def power_law(cls, d: int, alpha: float, normalize: str | None = "mean") -> "Spectrum":
        r"""$\lambda_j = c\, j^{-\alpha}$, $j = 1..d$.

        `normalize="mean"` sets $c$ so that $\operatorname{tr}K/d = 1$ (then $\gamma = O(1)$);
        `"max"` sets $\lambda_1 = 1$; `None` keeps $c = 1$. With `"mean"` and $\alpha \ge 1$
        the top eigenvalue grows like $d/\log d$, which leaves the high-dimensional regime
        ($\|K\|$ must stay $O(1)$ relative to $d$); $\alpha \in [0, 1)$ keeps
        $\lambda_{\max}/d \to 0$.
        """
        d = int(d)
        if d < 1:
            raise ValueError(f"d must be >= 1, got {d}")
        if not (alpha >= 0) or not np.isfinite(alpha):
            raise ValueError(f"alpha must be finite and >= 0, got {alpha}")
        lam = np.arange(1, d + 1, dtype=float) ** (-float(alpha))
        if normalize == "mean":
            lam = lam / lam.mean()
        elif normalize == "max":
            lam = lam / lam[0]
        elif normalize is not None:
            raise ValueError(f"normalize must be 'mean', 'max' or None, got {normalize!r}")
        return cls.from_eigenvalues(lam)

    @classmethod
    def marchenko_pastur(cls, ratio: float, scale: float = 1.0,
                         num_points: int = 256) -> "Spectrum":
        r"""Marchenko–Pastur law with ratio $r = d/n$ and variance `scale` $\sigma^2$: the limit
        spectrum of $\frac1n\sum_i a_i a_i^\top$, $a_i \sim N(0, \sigma^2 I_d)$.

        Density $\sqrt{(b - x)(x - a)}/(2\pi\sigma^2 r x)$ on
        $[a, b] = [\sigma^2(1-\sqrt r)^2, \sigma^2(1+\sqrt r)^2]$, plus an atom of mass
        $1 - 1/r$ at 0 when $r > 1$. Quadrature: $x = c + h\cos\theta$ turns the density into a
        smooth periodic integrand $\propto h^2\sin^2\theta/x$, integrated by the midpoint rule
        in $\theta$ (spectrally accurate) with `num_points` nodes.
        """
        if not (ratio > 0) or not (scale > 0) or int(num_points) < 2:
            raise ValueError(f"marchenko_pastur needs ratio > 0, scale > 0, num_points >= 2; "
                             f"got ratio={ratio}, scale={scale}, num_points={num_points}")
        r, s = float(ratio), float(scale)
        a, b = s * (1 - np.sqrt(r)) ** 2, s * (1 + np.sqrt(r)) ** 2
        c, h = 0.5 * (a + b), 0.5 * (b - a)
        theta = (np.arange(int(num_points)) + 0.5) * np.pi / int(num_points)
        x = c + h * np.cos(theta)
        w = np.sin(theta) ** 2 / x
        mass = min(1.0, 1.0 / r)
        w = mass * w / w.sum()
        if r > 1:
            x = np.concatenate([x, [0.0]])
            w = np.concatenate([w, [1.0 - 1.0 / r]])
        return cls(x, w)

    def bins(self, num_bins: int, log: bool | None = None) -> np.ndarray:
        """Assign each mode to one of at most `num_bins` bins of equal width in λ, or in log λ
        (`log=None`: log when max/min of the positive eigenvalues exceeds 100). Zero
        eigenvalues get a bin of their own; bins are numbered by increasing λ."""
        num_bins = int(num_bins)
        if num_bins < 1:
            raise ValueError(f"num_bins must be >= 1, got {num_bins}")
        lam = np.asarray(self.eigenvalues)
        pos = lam > 0
        index = np.zeros(lam.shape, dtype=np.int64)
        if np.any(pos):
            lp = lam[pos]
            lo, hi = lp.min(), lp.max()
            if log is None:
                log = hi / lo > 100
            n_pos = num_bins - 1 if np.any(~pos) and num_bins > 1 else num_bins
            if log:
                u = (np.log(lp) - np.log(lo)) / max(np.log(hi) - np.log(lo), 1e-300)
            else:
                u = (lp - lo) / max(hi - lo, 1e-300)
            index[pos] = 1 + np.minimum((u * n_pos).astype(np.int64), n_pos - 1)
        _, index = np.unique(index, return_inverse=True)
        return index.reshape(lam.shape)

    def coarsen(self, num_bins: int, log: bool | None = None, values=None):
        r"""Merge modes into at most `num_bins` bins (SPEC §5): $\omega_b = \sum_{j\in b}\omega_j$,
        $\lambda_b = \sum_{j\in b}\omega_j\lambda_j/\omega_b$. With `values` (leading axis $n$)
        also return their $\omega$-weighted bin means, as `(spectrum, coarse_values)`.

        The error of the coarse ODE is $O(\text{bin width})$; measure it with a refinement
        study (see `tests/test_coarsen.py`)."""
        if num_bins >= self.num_modes:
            return self if values is None else (self, values)
        index = self.bins(num_bins, log)
        nb = int(index.max()) + 1
        w = np.asarray(self.weights)
        wb = np.bincount(index, weights=w, minlength=nb)
        lb = np.bincount(index, weights=w * np.asarray(self.eigenvalues), minlength=nb) / wb
        coarse = Spectrum(lb, wb)
        if values is None:
            return coarse
        v = np.asarray(values)
        vb = np.zeros((nb, *v.shape[1:]))
        np.add.at(vb, index, w.reshape((-1,) + (1,) * (v.ndim - 1)) * v)
        vb = vb / wb.reshape((-1,) + (1,) * (v.ndim - 1))
        return coarse, jnp.asarray(vb)
