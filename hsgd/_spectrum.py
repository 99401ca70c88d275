r"""Spectra of the data covariance: modes $(\lambda_j, \omega_j)$, $\sum_j \omega_j = 1$ (SPEC §5).

Problems are posed in the eigenbasis of $K$ (or of $A^\top A$), so no eigenvectors are stored.
An explicit list of $d$ eigenvalues has $\omega_j = 1/d$; a continuous law (Marchenko–Pastur) or
a coarsened spectrum carries quadrature weights. Either way
$\sum_j \omega_j \lambda_j = \operatorname{tr}K/d$.
"""

import math
import operator
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from ._dtype import as_float, float_dtype

# Negative eigenvalues above -_ROUNDOFF * max|λ| are round-off (e.g. from eigvalsh of a singular
# covariance) and are clipped to 0; anything more negative is an error.
_ROUNDOFF = 1e-12


def _is_traced(*xs) -> bool:
    return any(isinstance(x, jax.core.Tracer) for x in xs)


def _integer(name: str, value, minimum: int) -> int:
    try:
        n = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None
    if n < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {n}")
    return n


def _real(name: str, value) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a real number, got {value!r}") from None
    if not math.isfinite(x):
        raise ValueError(f"{name} must be finite, got {x}")
    return x


class Spectrum(eqx.Module):
    r"""A spectrum: eigenvalues $\lambda_j \ge 0$ and quadrature weights $\omega_j > 0$ with
    $\sum_j \omega_j = 1$ (SPEC §0, §5).

    Averages over the modes are $\sum_j \omega_j q(\lambda_j)$; for an explicit list of $d$
    eigenvalues ($\omega_j = 1/d$) this is $\operatorname{tr} q(K)/d$. A `Spectrum` is a pytree
    (an `eqx.Module` with two array leaves), so it passes through `jax.jit`, `jax.vmap` and
    `jax.grad`.

    **Arguments:**

    - `eigenvalues`: array `(n,)`, finite and $\ge 0$. Negative round-off above
      $-10^{-12}\max_j|\lambda_j|$ is clipped to 0.
    - `weights`: array `(n,)`, finite and $> 0$, summing to 1.
    - `dtype`: the floating dtype of both (default: that of floating `eigenvalues`, else JAX's
      default float; e.g. `jnp.float32` inside a float64 session).

    Both are converted to JAX arrays of that dtype. Concrete inputs are
    validated (a `ValueError` names the offending index and value); traced inputs, inside
    `jit` or `vmap`, are not.

    Usually built with a constructor: [`Spectrum.from_eigenvalues`][],
    [`Spectrum.from_covariance`][], [`Spectrum.uniform`][], [`Spectrum.power_law`][],
    [`Spectrum.marchenko_pastur`][]; and reduced with [`Spectrum.coarsen`][].

    ```python
    spectrum = Spectrum(jnp.array([0.0, 2.0]), jnp.array([0.5, 0.5]))
    spectrum.mean()  # 1.0
    ```
    """

    eigenvalues: Float[Array, " n"]
    weights: Float[Array, " n"]

    def __init__(self, eigenvalues: Float[ArrayLike, " n"], weights: Float[ArrayLike, " n"],
                 dtype=None):
        lam = as_float(eigenvalues, dtype)
        w = jnp.asarray(weights, dtype=lam.dtype)
        if lam.ndim != 1:
            raise ValueError(f"eigenvalues must be 1-D, got shape {lam.shape}")
        if w.shape != lam.shape:
            raise ValueError(f"weights have shape {w.shape} but eigenvalues have shape "
                             f"{lam.shape}: they must match")
        if lam.shape[0] == 0:
            raise ValueError("the spectrum is empty: it needs at least one eigenvalue")
        if not _is_traced(eigenvalues, weights, lam, w):
            lam_np, w_np = np.asarray(lam), np.asarray(w)
            bad = np.flatnonzero(~np.isfinite(lam_np))
            if bad.size:
                j = bad[0]
                raise ValueError(f"eigenvalue {j} is {lam_np[j]}: eigenvalues must be finite")
            tol = _ROUNDOFF * np.max(np.abs(lam_np))
            bad = np.flatnonzero(lam_np < -tol)
            if bad.size:
                j = bad[0]
                raise ValueError(f"eigenvalue {j} is {lam_np[j]}: a covariance spectrum must be "
                                 "non-negative")
            bad = np.flatnonzero(~(w_np > 0) | ~np.isfinite(w_np))
            if bad.size:
                j = bad[0]
                raise ValueError(f"weight {j} is {w_np[j]}: weights must be finite and positive")
            total = float(np.sum(w_np))
            if abs(total - 1.0) > 1e-6:
                raise ValueError(f"weights sum to {total:.10g}: a spectrum's weights must sum to "
                                 "1 (they are the fractions of modes; tr K/d = sum w lam)")
            if np.any(lam_np < 0):
                lam = jnp.maximum(lam, 0.0)
        self.eigenvalues = lam
        self.weights = w

    @property
    def num_modes(self) -> int:
        """The number of modes $n$ (quadrature nodes), a Python `int`."""
        return self.eigenvalues.shape[0]

    def mean(self) -> Float[Array, ""]:
        r"""The first moment $\sum_j \omega_j \lambda_j = \operatorname{tr}K/d$."""
        return jnp.sum(self.weights * self.eigenvalues)

    def weighted_sum(self, values, q=None):
        r"""$\sum_j \omega_j\, q(\lambda_j)\, v_j$ over the leading axis of `values` (default
        $q \equiv 1$); e.g. $B = W^\top K W = \sum_j \omega_j \lambda_j V_j$ with
        `q = lambda lam: lam`."""
        w = self.weights if q is None else self.weights * q(self.eigenvalues)
        return jnp.tensordot(w.astype(values.dtype), values, axes=1)

    def moment(self, q: Callable[[Float[Array, " n"]], Float[Array, " n"]]) -> Float[Array, ""]:
        r"""The average $\sum_j \omega_j\, q(\lambda_j)$ of a vectorised function $q$
        (e.g. `spectrum.moment(lambda x: x**2)` is $\operatorname{tr}K^2/d$)."""
        return jnp.sum(self.weights * q(self.eigenvalues))

    def max(self) -> Float[Array, ""]:
        r"""The largest eigenvalue $\max_j \lambda_j$."""
        return jnp.max(self.eigenvalues)

    def min(self) -> Float[Array, ""]:
        r"""The smallest eigenvalue $\min_j \lambda_j$ (0 when the spectrum has an atom at 0)."""
        return jnp.min(self.eigenvalues)

    @property
    def dtype(self):
        """The floating dtype of the eigenvalues and weights."""
        return self.eigenvalues.dtype

    def astype(self, dtype) -> "Spectrum":
        """The same modes in the floating `dtype` (no re-validation; works under `jit`)."""
        dtype = float_dtype(dtype)
        return jax.tree_util.tree_map(lambda x: x.astype(dtype), self)

    # ------------------------------------------------------------------ constructors

    @classmethod
    def from_eigenvalues(cls, eigenvalues: Float[ArrayLike, " d"], dtype=None) -> "Spectrum":
        r"""An explicit list of $d$ eigenvalues, each with weight $\omega_j = 1/d$.

        **Arguments:**

        - `eigenvalues`: array `(d,)` of the eigenvalues $\lambda_j \ge 0$ of $K$.
        - `dtype`: floating dtype (default: that of floating `eigenvalues`, else JAX's default
          float).

        **Returns:**

        A `Spectrum` with $d$ modes and $\omega_j = 1/d$.

        ```python
        Spectrum.from_eigenvalues([1.0, 0.5, 0.1]).mean()  # 0.5333...
        ```
        """
        lam = as_float(eigenvalues, dtype)
        if lam.ndim != 1:
            raise ValueError(f"eigenvalues must be 1-D, got shape {lam.shape}")
        if lam.shape[0] == 0:
            raise ValueError("the spectrum is empty: it needs at least one eigenvalue")
        return cls(lam, jnp.full(lam.shape, 1.0 / lam.shape[0], dtype=lam.dtype))

    @classmethod
    def from_covariance(cls, K: Float[ArrayLike, "d d"], dtype=None) -> "Spectrum":
        r"""The eigenvalues of a symmetric $d \times d$ covariance $K = \sum_j \lambda_j
        u_j u_j^\top$, each with weight $\omega_j = 1/d$ (computed with `numpy.linalg.eigvalsh`
        and stored in decreasing order).

        For data $A \in \mathbb{R}^{n\times d}$ pass $K = A^\top A / n$.

        **Arguments:**

        - `K`: a concrete, square, symmetric, positive semi-definite matrix `(d, d)`. Asymmetry
          beyond $10^{-10}\max|K|$ is an error; smaller asymmetry is removed by using
          $(K + K^\top)/2$.
        - `dtype`: floating dtype of the result (default: that of a floating `K`, else JAX's
          default float); the eigenvalues are computed in float64 either way.

        **Returns:**

        A `Spectrum` with $d$ modes.

        ```python
        Spectrum.from_covariance(np.diag([3.0, 1.0])).eigenvalues  # [3.0, 1.0]
        ```
        """
        if dtype is None and np.issubdtype(np.asarray(K).dtype, np.floating):
            dtype = float_dtype(np.asarray(K).dtype)
        K = np.asarray(K, dtype=np.float64)
        if K.ndim != 2 or K.shape[0] != K.shape[1]:
            raise ValueError(f"a covariance must be a square matrix, got shape {K.shape}")
        if K.shape[0] == 0:
            raise ValueError("the covariance is empty (shape (0, 0))")
        bad = np.argwhere(~np.isfinite(K))
        if bad.size:
            i, j = bad[0]
            raise ValueError(f"covariance entry ({i}, {j}) is {K[i, j]}: entries must be finite")
        asym = np.abs(K - K.T)
        scale = np.max(np.abs(K))
        if np.max(asym) > 1e-10 * scale:
            i, j = np.unravel_index(np.argmax(asym), K.shape)
            raise ValueError(f"the covariance is not symmetric: K[{i}, {j}] = {K[i, j]} but "
                             f"K[{j}, {i}] = {K[j, i]} (max |K - K^T| = {asym[i, j]:.3g})")
        return cls.from_eigenvalues(np.linalg.eigvalsh(0.5 * (K + K.T))[::-1].copy(),
                                    float_dtype(dtype))

    @classmethod
    def uniform(cls, d: int, low: float, high: float, dtype=None) -> "Spectrum":
        r"""$d$ eigenvalues on the quantile grid of the uniform law on $[\text{low}, \text{high}]$:

        $$\lambda_j = \text{low} + (\text{high} - \text{low})\,\frac{j - 1/2}{d},
        \qquad \omega_j = 1/d, \qquad j = 1, \dots, d.$$

        The grid is deterministic and its mean is exactly $(\text{low} + \text{high})/2$.

        **Arguments:**

        - `d`: the number of eigenvalues, $\ge 1$.
        - `low`, `high`: the support, $0 \le \text{low} < \text{high}$.
        - `dtype`: floating dtype (default JAX's default float).

        **Returns:**

        A `Spectrum` with $d$ modes.

        ```python
        Spectrum.uniform(4, 0.0, 2.0).eigenvalues  # [0.25, 0.75, 1.25, 1.75]
        ```
        """
        d = _integer("d", d, 1)
        low, high = _real("low", low), _real("high", high)
        if low < 0:
            raise ValueError(f"low must be >= 0, got low={low}")
        if not high > low:
            raise ValueError(f"high must be > low, got low={low}, high={high}")
        j = np.arange(1, d + 1, dtype=np.float64)
        return cls.from_eigenvalues(low + (high - low) * (j - 0.5) / d, float_dtype(dtype))

    @classmethod
    def power_law(cls, d: int, alpha: float, normalize: str | None = "mean",
                  dtype=None) -> "Spectrum":
        r"""A power law $\lambda_j = c\, j^{-\alpha}$, $\omega_j = 1/d$, $j = 1, \dots, d$.

        - `normalize="mean"`: $c = d / \sum_{j=1}^d j^{-\alpha}$, so that
          $\sum_j\omega_j\lambda_j = \operatorname{tr}K/d = 1$ and stepsizes $\gamma = O(1)$
          are meaningful.
        - `normalize="max"`: $c = 1$, i.e. $\lambda_1 = 1$ (the same as `None`, stated
          explicitly).
        - `normalize=None`: $c = 1$.

        With `"mean"` and $\alpha \ge 1$ the top eigenvalue $\lambda_1 = c$ grows like
        $d/\log d$ ($\alpha = 1$) or like $d$ ($\alpha > 1$): this leaves the high-dimensional
        regime, in which $\|K\|$ must stay $O(1)$ relative to $d$, and the deterministic
        equivalent need not describe SGD there. $\alpha \in [0, 1)$ keeps
        $\lambda_{\max}/d \to 0$.

        **Arguments:**

        - `d`: the number of eigenvalues, $\ge 1$.
        - `alpha`: the decay exponent, $\ge 0$.
        - `normalize`: `"mean"`, `"max"` or `None`.
        - `dtype`: floating dtype (default JAX's default float).

        **Returns:**

        A `Spectrum` with $d$ modes in decreasing order.

        ```python
        Spectrum.power_law(1000, 0.5).mean()  # 1.0
        ```
        """
        d = _integer("d", d, 1)
        alpha = _real("alpha", alpha)
        if alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {alpha}")
        if normalize not in ("mean", "max", None):
            raise ValueError(f"normalize must be 'mean', 'max' or None, got {normalize!r}")
        lam = np.arange(1, d + 1, dtype=np.float64) ** (-alpha)
        if normalize == "mean":
            lam = lam / lam.mean()
        elif normalize == "max":
            lam = lam / lam[0]
        return cls.from_eigenvalues(lam, float_dtype(dtype))

    @classmethod
    def marchenko_pastur(cls, ratio: float, scale: float = 1.0,
                         num_points: int = 256, dtype=None) -> "Spectrum":
        r"""The Marchenko–Pastur law: the limiting spectrum of the sample covariance
        $\frac1n\sum_{i=1}^n a_i a_i^\top$, $a_i \sim N(0, \sigma^2 I_d)$, as
        $d, n \to \infty$ with $d/n \to r$ (`ratio`) and $\sigma^2$ = `scale`.

        Its density on $[a, b] = [\sigma^2(1-\sqrt r)^2, \sigma^2(1+\sqrt r)^2]$ is

        $$\rho(x) = \frac{\sqrt{(b - x)(x - a)}}{2\pi\sigma^2 r x},$$

        of total mass $\min(1, 1/r)$; when $r > 1$ an atom of mass $1 - 1/r$ sits at
        $\lambda = 0$. The moments are $\sum_j\omega_j\lambda_j = \sigma^2$ and
        $\sum_j\omega_j\lambda_j^2 = \sigma^4(1 + r)$.

        Quadrature: Gauss quadrature of the continuous part (Golub–Welsch). The orthonormal
        polynomials of the Marchenko–Pastur law with $r \le 1$ have constant recurrence
        coefficients: its Jacobi matrix has diagonal $(\sigma^2, \sigma^2(1+r), \sigma^2(1+r),
        \dots)$ and off-diagonal $\sigma^2\sqrt r$; the nodes are the eigenvalues of its leading
        `num_points` block and the weights the squared first components of the eigenvectors.
        For $r > 1$ the continuous part is $1/r$ times the law with ratio $1/r$ and scale
        $\sigma^2 r$ (the nonzero eigenvalues of $\frac1n A^\top A$ are those of
        $\frac1n AA^\top$). The rule integrates polynomials of degree $< 2\,$`num_points`
        exactly and converges geometrically for analytic integrands, uniformly in $r$ (a
        midpoint rule in $\theta$ after $x = m + h\cos\theta$ loses its accuracy as
        $r \to 1$, where the lower edge approaches the pole of $1/x$). The weights are
        normalised so that the continuous part has exactly its mass. Cost
        $O(\text{num\_points}^3)$.

        **Arguments:**

        - `ratio`: $r = d/n > 0$.
        - `scale`: the variance $\sigma^2 > 0$ of the entries of $a$.
        - `num_points`: the number of quadrature nodes of the continuous part, $\ge 2$.
        - `dtype`: floating dtype (default JAX's default float).

        **Returns:**

        A `Spectrum` with `num_points` modes, plus one at $\lambda = 0$ when $r > 1$.

        ```python
        spectrum = Spectrum.marchenko_pastur(0.5)
        spectrum.moment(lambda x: x**2)  # 1.5
        ```
        """
        r = _real("ratio", ratio)
        if not r > 0:
            raise ValueError(f"ratio must be > 0, got ratio={r}")
        s = _real("scale", scale)
        if not s > 0:
            raise ValueError(f"scale must be > 0, got scale={s}")
        num_points = _integer("num_points", num_points, 2)
        # Jacobi matrix of the continuous part, written as `mass` times a law with ratio <= 1.
        r_c, s_c, mass = (r, s, 1.0) if r <= 1 else (1.0 / r, s * r, 1.0 / r)
        diagonal = np.full(num_points, s_c * (1.0 + r_c))
        diagonal[0] = s_c
        off = np.full(num_points - 1, s_c * math.sqrt(r_c))
        jacobi = np.diag(diagonal) + np.diag(off, 1) + np.diag(off, -1)
        x, vectors = np.linalg.eigh(jacobi)
        w = vectors[0] ** 2
        w = mass * w / w.sum()
        if r > 1:
            x = np.concatenate([x, [0.0]])
            w = np.concatenate([w, [1.0 - 1.0 / r]])
        return cls(x, w, float_dtype(dtype))

    # ------------------------------------------------------------------ coarsening

    def bins(self, n_bins: int, log: bool | None = None) -> np.ndarray:
        r"""Assign each mode to one of at most `n_bins` bins.

        The positive eigenvalues are split into bins with edges evenly spaced in $\lambda$, or
        in $\log\lambda$ when `log` is true. `log=None` chooses log spacing when
        $\max/\min$ of the positive eigenvalues exceeds 100 (power laws). Zero eigenvalues get
        a bin of their own (they are never merged with positive ones; this bin counts towards
        `n_bins`). Empty bins are dropped and the bins are numbered $0, 1, \dots$ in increasing
        $\lambda$. Needs a concrete spectrum (not inside `jit`).

        **Arguments:**

        - `n_bins`: the largest number of bins, $\ge 1$ ($\ge 2$ when the spectrum has both
          zero and positive eigenvalues).
        - `log`: `True`, `False` or `None` (automatic).

        **Returns:**

        A NumPy integer array `(n,)`: the bin of each mode.

        ```python
        Spectrum.from_eigenvalues([0.0, 1.0, 1.1, 5.0]).bins(3)  # [0, 1, 1, 2]
        ```
        """
        n_bins = _integer("n_bins", n_bins, 1)
        if _is_traced(self.eigenvalues):
            raise ValueError("bins and coarsen need a concrete spectrum; call them outside "
                             "jax.jit / jax.vmap")
        lam = np.asarray(self.eigenvalues)
        pos = lam > 0
        has_zero = not np.all(pos)
        index = np.zeros(lam.shape, dtype=np.int64)
        if np.any(pos):
            if has_zero and n_bins < 2:
                raise ValueError(f"n_bins={n_bins} cannot keep the zero eigenvalues apart from "
                                 "the positive ones: use n_bins >= 2")
            lp = lam[pos]
            lo, hi = lp.min(), lp.max()
            if log is None:
                log = bool(hi > 100 * lo)
            n_pos = n_bins - 1 if has_zero else n_bins
            if log:
                u = (np.log(lp) - np.log(lo)) / max(np.log(hi) - np.log(lo), np.finfo(float).tiny)
            else:
                u = (lp - lo) / max(hi - lo, np.finfo(float).tiny)
            index[pos] = 1 + np.clip((u * n_pos).astype(np.int64), 0, n_pos - 1)
        _, index = np.unique(index, return_inverse=True)
        return index.reshape(lam.shape).astype(np.int64)

    def coarsen(self, n_bins: int, log: bool | None = None, values: ArrayLike | None = None):
        r"""Merge modes into at most `n_bins` bins (SPEC §5), chosen by [`Spectrum.bins`][]:

        $$\omega_b = \sum_{j\in b}\omega_j, \qquad
        \lambda_b = \frac{1}{\omega_b}\sum_{j\in b}\omega_j\lambda_j, \qquad
        V_b = \frac{1}{\omega_b}\sum_{j\in b}\omega_j V_j .$$

        $\sum_b\omega_b$ and $\sum_b\omega_b\lambda_b$ (so $\operatorname{tr}K/d$) are preserved
        exactly, as is $\sum_b \omega_b V_b$. The error this introduces into the dynamics is
        $O(\text{bin width})$; measure it with a refinement study in `n_bins`.

        **Arguments:**

        - `n_bins`: the largest number of bins. If `n_bins >= num_modes` nothing is merged and
          the inputs are returned unchanged.
        - `log`: bin spacing, as in [`Spectrum.bins`][].
        - `values`: optional per-mode array with leading axis `n`, e.g. the per-mode second
          moments `(n, p, p)`.

        **Returns:**

        The coarse `Spectrum`; with `values`, the tuple `(spectrum, coarse_values)` where
        `coarse_values` has leading axis equal to the number of bins.

        ```python
        spectrum = Spectrum.power_law(10_000, 0.5)
        coarse = spectrum.coarsen(64)  # at most 64 log-spaced bins, same mean
        ```
        """
        if values is not None and np.shape(values)[:1] != (self.num_modes,):
            raise ValueError(f"values have shape {np.shape(values)}; the leading axis must be "
                             f"num_modes = {self.num_modes}")
        n_bins = _integer("n_bins", n_bins, 1)
        if n_bins >= self.num_modes:
            return self if values is None else (self, values)
        index = self.bins(n_bins, log)
        nb = int(index.max()) + 1
        w = np.asarray(self.weights, dtype=np.float64)
        lam = np.asarray(self.eigenvalues, dtype=np.float64)
        wb = np.zeros(nb)
        np.add.at(wb, index, w)
        lb = np.zeros(nb)
        np.add.at(lb, index, w * lam)
        coarse = Spectrum(lb / wb, wb)
        if values is None:
            return coarse
        v = np.asarray(values)
        dtype = v.dtype if np.issubdtype(v.dtype, np.inexact) else np.float64
        expand = (-1,) + (1,) * (v.ndim - 1)
        vb = np.zeros((nb, *v.shape[1:]), dtype=np.result_type(dtype, np.float64))
        np.add.at(vb, index, w.reshape(expand) * v)
        vb = (vb / wb.reshape(expand)).astype(dtype)
        return coarse, jnp.asarray(vb)
