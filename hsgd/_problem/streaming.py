r"""A streaming (one-pass) SGD problem posed in the eigenbasis of the data covariance (SPEC §1).

The deterministic equivalent needs only the spectrum $(\lambda_j, \omega_j)$ and, per mode, the
$p\times p$ matrix $V_j(0) = d\,(W_0^\top u_j)(W_0^\top u_j)^\top$ with $W_0 = [X_0 \mid X^*]$.
The SGD simulator needs an actual instance: $X^*$, $X_0$ as $d\times m^*$ and $d\times m$ arrays in
that basis, with $K = \operatorname{diag}(\lambda)$.
"""

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .._custom_types import ModeMoments, PRNGKey
from .._dtype import as_float, float_dtype
from .._loss import AbstractLoss, LeastSquares
from .._spectrum import Spectrum
from .base import AbstractProblem
from .plrf import PLRF
from .plrf_equivalent import plrf_equivalent


class Problem(AbstractProblem):
    r"""A loss, a data spectrum and the initial per-mode second moments.

    **Fields:**

    - `loss`: an [`AbstractLoss`][].
    - `spectrum`: a [`Spectrum`][] with $n$ modes $(\lambda_j, \omega_j)$.
    - `V0`: array `(n, p, p)`, $V_j(0)$ with $B(0) = \sum_j \omega_j \lambda_j V_j(0)$.
    - `X_star`, `X0`: the instance ($d\times m^*$, $d\times m$) when there is one (needed by
      [`simulate`][]); `None` for a problem known only through its spectrum.
    - `dimension`: the dimension $d$ of a problem without an instance whose $d$ is still known
      (a coarsened instance, the deterministic PLRF problem): the exact finite-$d$ dynamics of
      least squares (SPEC §8) use it. `None` (the default) with an instance, whose $d$ is
      `X_star.shape[0]`, or for a $d\to\infty$ problem. An array leaf may be traced (a `vmap`
      over $d$ of the deterministic PLRF problem).

    Build one with [`Problem.from_arrays`][] (your own $X^*$, $X_0$), [`Problem.random`][] (a
    random instance) or [`Problem.isotropic`][] (its expected moments, no instance).
    """

    loss: AbstractLoss
    spectrum: Spectrum
    V0: ModeMoments
    X_star: Float[Array, "d m_star"] | None = None
    X0: Float[Array, "d m"] | None = None
    dimension: int | Float[Array, ""] | None = None

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
        r"""The dimension: the instance's, else `dimension` (`None`: not known, $d\to\infty$)."""
        return self.dimension if self.X_star is None else self.X_star.shape[0]

    def B0(self) -> Float[Array, "p p"]:
        r"""$B(0) = \sum_j \omega_j\lambda_j V_j(0) = W_0^\top K W_0$."""
        return self.spectrum.weighted_sum(self.V0, q=lambda lam: lam)

    @property
    def dtype(self):
        """The floating dtype of the problem's arrays."""
        return self.V0.dtype

    @classmethod
    def from_arrays(cls, loss: AbstractLoss, spectrum, X_star, X0=None, *,
                    dtype=None) -> "Problem":
        r"""A problem from an explicit instance in the eigenbasis of $K$.

        **Arguments:**

        - `loss`: the loss.
        - `spectrum`: a [`Spectrum`][] with $d$ equal-weight modes, or the $d$ eigenvalues.
        - `X_star`: target, shape `(d, m_star)` (or `(d,)` when `m_star == 1`).
        - `X0`: initial point, shape `(d, m)` (or `(d,)`); default zero.
        - `dtype`: floating dtype of every array, the spectrum's included (default: that of a
          floating `X_star`, else JAX's default float): a float32 problem works in a float64
          session.

        $V_j(0) = d\, w_j w_j^\top$ with $w_j$ the $j$-th row of $W_0 = [X_0 \mid X^*]$.
        """
        if not isinstance(spectrum, Spectrum):
            spectrum = Spectrum.from_eigenvalues(spectrum)
        d = spectrum.num_modes
        w = np.asarray(spectrum.weights)
        if not np.allclose(w, 1.0 / d, rtol=1e-6):
            raise ValueError("from_arrays needs an explicit spectrum with equal weights 1/d "
                             "(one mode per coordinate); got unequal weights")
        X_star = _as_matrix(X_star, "X_star", d, loss.m_star, dtype)
        spectrum = spectrum.astype(X_star.dtype)
        X0 = (jnp.zeros((d, loss.m), X_star.dtype) if X0 is None
              else _as_matrix(X0, "X0", d, loss.m, X_star.dtype))
        W = jnp.concatenate([X0, X_star], axis=1)
        V0 = d * W[:, :, None] * W[:, None, :]
        return cls(loss, spectrum, V0, X_star, X0)

    @classmethod
    def isotropic(cls, loss: AbstractLoss, spectrum: Spectrum, target_norm=1.0, init_norm=0.0,
                  target_weight=0.0, *, cosine=None, overlap=None, dtype=None) -> "Problem":
        r"""The expected moments of a random instance, with no instance (theory only).

        For $X^*$ with i.i.d. $N(0, s^2/d)$ entries ($s$ = `target_norm`, so each column has
        norm $\approx s$) and $X_0 = c X^* + N(0, u^2/d)$ ($c$ = `target_weight`, $u$ =
        `init_norm`; needs $m = m^*$ when $c \ne 0$):

        $$\mathbb{E}V_j(0) = \begin{pmatrix} (c^2 s^2 + u^2) I_m & c s^2 I \\ c s^2 I & s^2 I_{m^*}
        \end{pmatrix}\quad\text{for every mode } j.$$

        `target_weight` is a weight, not a cosine: the cosine of $X_0$ and $X^*$ is then
        $c s/\sqrt{c^2s^2 + u^2}$. To set the cosine itself pass `cosine` $= \rho \in [-1, 1]$
        instead (needs $m = m^*$, $u > 0$, $s > 0$ and `target_weight = 0`):

        $$\mathbb{E}V_j(0) = \begin{pmatrix} u^2 I_m & \rho\, u s\, I \\ \rho\, u s\, I &
        s^2 I_{m^*}\end{pmatrix},$$

        so $|X_0| = u$ and the initial cosine **in the $K$-geometry**, $B_{12}/\sqrt{B_{11}B_{22}}$
        of $B(0) = W_0^\top K W_0$ (per column: the diagonal entries of each block), is exactly
        $\rho$ (here $B(0) = (\operatorname{tr}K/d)\,\mathbb{E}V_j(0)$, so it is also the
        Euclidean cosine). `overlap` is the old name of `target_weight` (same meaning, kept as
        an alias). `dtype`: floating dtype (default the spectrum's).
        """
        c = _target_weight(target_weight, overlap)
        dtype = spectrum.dtype if dtype is None else float_dtype(dtype)
        V = _isotropic_moment(loss, target_norm, init_norm, c, cosine).astype(dtype)
        V0 = jnp.broadcast_to(V, (spectrum.num_modes, *V.shape))
        return cls(loss, spectrum.astype(dtype), V0)

    @classmethod
    def random(cls, loss: AbstractLoss, spectrum, key: PRNGKey, target_norm=1.0, init_norm=0.0,
               target_weight=0.0, *, cosine=None, overlap=None, dtype=None) -> "Problem":
        r"""A random instance on a spectrum with $d$ equal-weight modes:
        $X^*_{ij} \sim N(0, s^2/d)$ and $X_0 = c X^* + G$ with $G_{ij} \sim N(0, u^2/d)$
        ($s$ = `target_norm`, $u$ = `init_norm`, $c$ = `target_weight`, the parameters of
        [`Problem.isotropic`][]; `overlap` is `target_weight`'s old name).

        With `cosine` $= \rho \in [-1, 1]$ instead (needs $m = m^*$, $u > 0$, $s > 0$), each
        column of $X_0$ is built to make the initial cosine **in the $K$-geometry** exactly
        $\rho$: with $\langle a, b\rangle_K = a^\top K b$, $G$ is made $K$-orthogonal to the
        columns of $X^*$, and column $i$ is

        $$X_{0,i} = u\,\frac{v_i}{|v_i|},\qquad v_i = \rho\,\frac{X^*_i}{\|X^*_i\|_K} +
        \sqrt{1 - \rho^2}\,\frac{G_i}{\|G_i\|_K},$$

        so that $B_{12}/\sqrt{B_{11}B_{22}} = \rho$ for the column's entries of
        $B(0) = W_0^\top K W_0$ (to rounding) and $|X_{0,i}| = u$ exactly.

        `dtype`: floating dtype of every array (default the spectrum's).
        """
        if not isinstance(spectrum, Spectrum):
            spectrum = Spectrum.from_eigenvalues(spectrum)
        c = _target_weight(target_weight, overlap)
        _isotropic_moment(loss, target_norm, init_norm, c, cosine)  # validates
        dtype = spectrum.dtype if dtype is None else float_dtype(dtype)
        d = spectrum.num_modes
        k1, k2 = jax.random.split(key)
        X_star = target_norm * jax.random.normal(k1, (d, loss.m_star), dtype) / np.sqrt(d)
        G = jax.random.normal(k2, (d, loss.m), dtype)
        if cosine is None:
            X0 = init_norm * G / np.sqrt(d)
            if c != 0.0:
                X0 = X0 + c * X_star
        else:
            X0 = _at_cosine(float(cosine), float(init_norm), X_star, G,
                            spectrum.eigenvalues.astype(dtype))
        return cls.from_arrays(loss, spectrum, X_star, X0, dtype=dtype)

    @classmethod
    def plrf(cls, alpha, beta, v: int, d: int, key: PRNGKey | None = None, *, theta0=None,
             deterministic: bool = False, num_modes: int = 8192, dtype=None) -> "Problem":
        r"""Power-law random features (SPEC §13) as the exact streaming least-squares problem:
        [`Problem.from_plrf`][hsgd.Problem.from_plrf]`(PLRF.sample(alpha, beta, v, d, key),
        theta0)` — data
        $x_j = j^{-\alpha}z_j$ ($j \le v$), target $b_j = j^{-\beta}$, features $W^\top x$
        ($W$: $v\times d$, $N(0, 1/d)$), posed in the eigenbasis of $\hat K = W^\top DW$ with
        target $\theta^*$ and label noise of variance $2P_\infty$ (the part of the target the
        features cannot express). Its risk is the PLRF loss.

        `deterministic=True` (no `key`, $\theta_0 = 0$, $v > d$): the deterministic equivalent
        instead of a sampled $W$ — the spectrum of $\hat K$ and the target's weights on it from
        the resolvent fixed point, on `num_modes` log-spaced modes
        ([`plrf_equivalent`][hsgd._problem.plrf_equivalent.plrf_equivalent]), with the exact
        $P_\infty$; no instance (theory only: [`hsgd.ode`][], not [`hsgd.simulate`][]), and
        `dimension` $= d$, so the finite-$d$ dynamics apply. Its cost does not grow with $d$
        ($v$ and $d$ may be $10^6$); `alpha`, `beta` and `d` may be traced (`jax.vmap` over
        them). It is a $d\to\infty$ statement about $W$: at $d = 1000$, $v = 4000$ its loss
        curve is within 1.3% of the mean over 48 sampled $W$ at $(\alpha, \beta) = (1, 0.7)$
        (0.8% at batch 8), 1.7% at $(1, 0.3)$ and 1.5% at $(0.7, 0.8)$, from 10 to $10^6$
        iterations (`benchmarks/plrf_equivalent.py`; the sampled curves scatter ~8% per $W$,
        so a 2% check needs ~50 samples).

        **Stepsizes:** a per-iteration stepsize $\eta$ is hsgd's $\gamma = \eta\,d$
        (`hsgd.SGD(eta * d, batch=...)`), time $t = k/d$ for iteration $k$ (flops
        $f = d\beta k$). Use [`PLRF`][hsgd.PLRF] itself to keep $W$, $\theta^*$ and $P_\infty$
        (`PLRF.sample(...)`, then [`Problem.from_plrf`][hsgd.Problem.from_plrf]).

        ```python
        prob = hsgd.Problem.plrf(1.0, 0.7, v=2000, d=500, key=jax.random.PRNGKey(0))
        eta = 0.5 / float(prob.spectrum.eigenvalues.sum())        # per iteration
        sol = hsgd.ode(prob, hsgd.SGD(eta * prob.d, batch=8), ts)  # exact finite-d dynamics
        det = hsgd.Problem.plrf(1.0, 0.7, v=2000, d=500, deterministic=True)
        ```
        """
        if deterministic:
            if key is not None or theta0 is not None:
                raise ValueError("Problem.plrf(deterministic=True) has no sampled W: pass "
                                 "neither key nor theta0 (it starts at theta0 = 0)")
            if not (int(v) == v and v >= 1) or (not isinstance(d, jax.core.Tracer)
                                                 and not d < v):
                raise ValueError(f"the deterministic PLRF problem needs integers v > d "
                                 f"(K-hat invertible), got v={v!r}, d={d!r}")
            eq = plrf_equivalent(alpha, beta, v, d, num_modes=num_modes, dtype=dtype)
            return cls(eq.loss(), eq.spectrum(), eq.moments(), dimension=d)
        if key is None:
            raise ValueError("Problem.plrf samples W: pass a PRNG key (or deterministic=True "
                             "for the deterministic equivalent)")
        return cls.from_plrf(PLRF.sample(alpha, beta, v, d, key, dtype=dtype), theta0)

    @classmethod
    def from_plrf(cls, plrf: PLRF, theta0=None) -> "Problem":
        r"""The streaming least-squares problem of a sampled [`PLRF`][hsgd.PLRF] instance, in the
        eigenbasis of $\hat K$: spectrum the $d$ eigenvalues (weights $1/d$), target
        $U^\top\theta^*$, initial point $U^\top\theta_0$ (default 0), Gaussian label noise of
        variance $2P_\infty$. Its risk is the PLRF loss $P(\theta)$."""
        dtype = plrf.W.dtype
        X0 = None if theta0 is None else plrf.eigenvectors.T @ jnp.asarray(theta0, dtype)
        loss = LeastSquares(jnp.sqrt(2.0 * plrf.irreducible_loss))
        return cls.from_arrays(loss, Spectrum.from_eigenvalues(plrf.eigenvalues),
                               plrf.eigenvectors.T @ plrf.theta_star, X0, dtype=dtype)

    def coarsen(self, num_bins: int, log: bool | None = None) -> "Problem":
        r"""Merge modes into at most `num_bins` bins (log-spaced for spread spectra; SPEC §5):
        $\omega_b = \sum_{j\in b}\omega_j$, $\lambda_b$ and $V_b(0)$ the $\omega$-weighted means.
        The instance arrays are dropped (a coarse problem is for the ODE only); its dimension
        $d$ is kept (`dimension`), so least squares keeps its finite-$d$ dynamics."""
        spectrum, V0 = self.spectrum.coarsen(num_bins, log=log, values=self.V0)
        return Problem(self.loss, spectrum, jnp.asarray(V0), dimension=self.d)


def _as_matrix(x, name: str, d: int, cols: int, dtype=None):
    x = as_float(x, dtype)
    if x.ndim == 1:
        x = x[:, None]
    if x.shape != (d, cols):
        raise ValueError(f"{name} has shape {x.shape}; expected ({d}, {cols}) (d = number of "
                         f"eigenvalues, {cols} = loss output size)")
    if not bool(jnp.all(jnp.isfinite(x))):
        raise ValueError(f"{name} contains NaN or inf")
    return x


def _target_weight(target_weight, overlap) -> float:
    """`target_weight`, or its old name `overlap` (not both)."""
    if overlap is None:
        return float(target_weight)
    if float(target_weight) != 0.0:
        raise ValueError("pass target_weight or its old name overlap, not both")
    return float(overlap)


def _isotropic_moment(loss, target_norm, init_norm, target_weight, cosine=None):
    s, u, c = float(target_norm), float(init_norm), float(target_weight)
    for name, v in [("target_norm", s), ("init_norm", u)]:
        if not np.isfinite(v) or v < 0:
            raise ValueError(f"{name} must be finite and >= 0, got {v}")
    if not np.isfinite(c):
        raise ValueError(f"target_weight (overlap) must be finite, got {c}")
    m, ms = loss.m, loss.m_star
    if c != 0.0 and m != ms:
        raise ValueError(f"target_weight={c} needs m == m_star, got m={m}, m_star={ms}")
    V = np.zeros((m + ms, m + ms))
    V[m:, m:] = s**2 * np.eye(ms)
    if cosine is not None:
        rho = float(cosine)
        if not -1.0 <= rho <= 1.0:
            raise ValueError(f"cosine must be in [-1, 1], got {cosine!r}")
        if c != 0.0:
            raise ValueError("pass cosine or target_weight (overlap), not both")
        if m != ms:
            raise ValueError(f"cosine needs m == m_star, got m={m}, m_star={ms}")
        if u == 0.0 or s == 0.0:
            raise ValueError(f"cosine needs init_norm > 0 and target_norm > 0 (a cosine with a "
                             f"zero vector is undefined), got init_norm={u}, target_norm={s}")
        V[:m, :m] = u**2 * np.eye(m)
        V[:m, m:] = V[m:, :m] = rho * u * s * np.eye(m)
        return jnp.asarray(V)
    V[:m, :m] = (c**2 * s**2 + u**2) * np.eye(m)
    if c != 0.0:
        V[:m, m:] = V[m:, :m] = c * s**2 * np.eye(m)
    return jnp.asarray(V)


def _at_cosine(rho: float, norm: float, X_star, G, lam):
    r"""Columns $u\,v_i/|v_i|$ with $v_i$ at $K$-cosine `rho` to $X^*_i$ (see
    [`Problem.random`][]); `G` is made $K$-orthogonal to every column of $X^*$ first."""
    KX = lam[:, None] * X_star
    G = G - X_star @ jnp.linalg.solve(X_star.T @ KX, KX.T @ G)
    knorm = lambda M: jnp.sqrt(jnp.sum(M * (lam[:, None] * M), axis=0))  # noqa: E731
    v = rho * X_star / knorm(X_star) + np.sqrt(1.0 - rho**2) * G / knorm(G)
    return norm * v / jnp.linalg.norm(v, axis=0)
