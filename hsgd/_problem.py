r"""A streaming (one-pass) SGD problem posed in the eigenbasis of the data covariance (SPEC §1).

The deterministic equivalent needs only the spectrum $(\lambda_j, \omega_j)$ and, per mode, the
$p\times p$ matrix $V_j(0) = d\,(W_0^\top u_j)(W_0^\top u_j)^\top$ with $W_0 = [X_0 \mid X^*]$.
The SGD simulator needs an actual instance: $X^*$, $X_0$ as $d\times m^*$ and $d\times m$ arrays in
that basis, with $K = \operatorname{diag}(\lambda)$.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ._custom_types import ModeMoments, PRNGKey
from ._loss import AbstractLoss
from ._spectrum import Spectrum


class Problem(eqx.Module):
    r"""A loss, a data spectrum and the initial per-mode second moments.

    **Fields:**

    - `loss`: an [`AbstractLoss`][].
    - `spectrum`: a [`Spectrum`][] with $n$ modes $(\lambda_j, \omega_j)$.
    - `V0`: array `(n, p, p)`, $V_j(0)$ with $B(0) = \sum_j \omega_j \lambda_j V_j(0)$.
    - `X_star`, `X0`: the instance ($d\times m^*$, $d\times m$) when there is one (needed by
      [`simulate`][]); `None` for a problem known only through its spectrum.

    Build one with [`Problem.from_arrays`][] (your own $X^*$, $X_0$), [`Problem.random`][] (a
    random instance) or [`Problem.isotropic`][] (its expected moments, no instance).
    """

    loss: AbstractLoss
    spectrum: Spectrum
    V0: ModeMoments
    X_star: Float[Array, "d m_star"] | None = None
    X0: Float[Array, "d m"] | None = None

    def __check_init__(self):
        n, p = self.spectrum.num_modes, self.loss.p
        if self.V0.shape != (n, p, p):
            raise ValueError(f"V0 has shape {self.V0.shape}; expected (num_modes, p, p) = "
                             f"({n}, {p}, {p}) for this loss and spectrum")

    @property
    def p(self) -> int:
        return self.loss.p

    @property
    def d(self) -> int | None:
        """Dimension of the instance (`None` without one)."""
        return None if self.X_star is None else self.X_star.shape[0]

    def B0(self) -> Float[Array, "p p"]:
        r"""$B(0) = \sum_j \omega_j\lambda_j V_j(0) = W_0^\top K W_0$."""
        return self.spectrum.weighted_sum(self.V0, q=lambda lam: lam)

    @classmethod
    def from_arrays(cls, loss: AbstractLoss, spectrum, X_star, X0=None) -> "Problem":
        r"""A problem from an explicit instance in the eigenbasis of $K$.

        **Arguments:**

        - `loss`: the loss.
        - `spectrum`: a [`Spectrum`][] with $d$ equal-weight modes, or the $d$ eigenvalues.
        - `X_star`: target, shape `(d, m_star)` (or `(d,)` when `m_star == 1`).
        - `X0`: initial point, shape `(d, m)` (or `(d,)`); default zero.

        $V_j(0) = d\, w_j w_j^\top$ with $w_j$ the $j$-th row of $W_0 = [X_0 \mid X^*]$.
        """
        if not isinstance(spectrum, Spectrum):
            spectrum = Spectrum.from_eigenvalues(spectrum)
        d = spectrum.num_modes
        w = np.asarray(spectrum.weights)
        if not np.allclose(w, 1.0 / d, rtol=1e-6):
            raise ValueError("from_arrays needs an explicit spectrum with equal weights 1/d "
                             "(one mode per coordinate); got unequal weights")
        X_star = _as_matrix(X_star, "X_star", d, loss.m_star)
        X0 = (jnp.zeros((d, loss.m), X_star.dtype) if X0 is None
              else _as_matrix(X0, "X0", d, loss.m))
        W = jnp.concatenate([X0, X_star], axis=1)
        V0 = d * W[:, :, None] * W[:, None, :]
        return cls(loss, spectrum, V0, X_star, X0)

    @classmethod
    def isotropic(cls, loss: AbstractLoss, spectrum: Spectrum, target_norm=1.0, init_norm=0.0,
                  overlap=0.0) -> "Problem":
        r"""The expected moments of a random instance, with no instance (theory only).

        For $X^*$ with i.i.d. $N(0, s^2/d)$ entries ($s$ = `target_norm`, so each column has
        norm $\approx s$) and $X_0 = c X^* + N(0, u^2/d)$ ($c$ = `overlap`, $u$ = `init_norm`;
        needs $m = m^*$ when $c \ne 0$):

        $$\mathbb{E}V_j(0) = \begin{pmatrix} (c^2 s^2 + u^2) I_m & c s^2 I \\ c s^2 I & s^2 I_{m^*}
        \end{pmatrix}\quad\text{for every mode } j.$$
        """
        V = _isotropic_moment(loss, target_norm, init_norm, overlap)
        V0 = jnp.broadcast_to(V, (spectrum.num_modes, *V.shape))
        return cls(loss, spectrum, V0)

    @classmethod
    def random(cls, loss: AbstractLoss, spectrum, key: PRNGKey, target_norm=1.0, init_norm=0.0,
               overlap=0.0) -> "Problem":
        r"""A random instance: $X^*_{ij} \sim N(0, s^2/d)$, $X_0 = c X^* + G$ with
        $G_{ij} \sim N(0, u^2/d)$ (same parameters as [`Problem.isotropic`][]), on a spectrum
        with $d$ equal-weight modes."""
        if not isinstance(spectrum, Spectrum):
            spectrum = Spectrum.from_eigenvalues(spectrum)
        _isotropic_moment(loss, target_norm, init_norm, overlap)  # validates
        d = spectrum.num_modes
        k1, k2 = jax.random.split(key)
        X_star = target_norm * jax.random.normal(k1, (d, loss.m_star)) / np.sqrt(d)
        X0 = init_norm * jax.random.normal(k2, (d, loss.m)) / np.sqrt(d)
        if overlap != 0.0:
            X0 = X0 + overlap * X_star
        return cls.from_arrays(loss, spectrum, X_star, X0)

    def coarsen(self, num_bins: int, log: bool | None = None) -> "Problem":
        r"""Merge modes into at most `num_bins` bins (log-spaced for spread spectra; SPEC §5):
        $\omega_b = \sum_{j\in b}\omega_j$, $\lambda_b$ and $V_b(0)$ the $\omega$-weighted means.
        The instance arrays are dropped (a coarse problem is for the ODE only)."""
        spectrum, V0 = self.spectrum.coarsen(num_bins, log=log, values=self.V0)
        return Problem(self.loss, spectrum, jnp.asarray(V0))


def _as_matrix(x, name: str, d: int, cols: int):
    x = jnp.asarray(x, dtype=float)
    if x.ndim == 1:
        x = x[:, None]
    if x.shape != (d, cols):
        raise ValueError(f"{name} has shape {x.shape}; expected ({d}, {cols}) (d = number of "
                         f"eigenvalues, {cols} = loss output size)")
    if not bool(jnp.all(jnp.isfinite(x))):
        raise ValueError(f"{name} contains NaN or inf")
    return x


def _isotropic_moment(loss, target_norm, init_norm, overlap):
    s, u, c = float(target_norm), float(init_norm), float(overlap)
    for name, v in [("target_norm", s), ("init_norm", u)]:
        if not np.isfinite(v) or v < 0:
            raise ValueError(f"{name} must be finite and >= 0, got {v}")
    if not np.isfinite(c):
        raise ValueError(f"overlap must be finite, got {c}")
    m, ms = loss.m, loss.m_star
    if c != 0.0 and m != ms:
        raise ValueError(f"overlap={c} needs m == m_star, got m={m}, m_star={ms}")
    V = np.zeros((m + ms, m + ms))
    V[:m, :m] = (c**2 * s**2 + u**2) * np.eye(m)
    V[m:, m:] = s**2 * np.eye(ms)
    if c != 0.0:
        V[:m, m:] = V[m:, :m] = c * s**2 * np.eye(m)
    return jnp.asarray(V)
