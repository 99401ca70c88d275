r"""Gaussian expectations $\mathbb{E}_{r\sim N(0,B)}[F(r)]$ by fixed quadrature rules (SPEC §1).

Every loss statistic the deterministic equivalent needs — the risk $h(B)$, the drift Jacobian
$J(B)$, the gradient second moment $I(B)$ — is an expectation of a low-dimensional function of
$r = W^\top a \sim N(0, B)$ with $B = W^\top K W$ a $p\times p$ positive semi-definite matrix.
We write $r = L z$ with $L L^\top = B$ and $z \sim N(0, I_p)$, and replace the law of $z$ by a
fixed, deterministic rule $\{(z_k, w_k)\}$, so that expectations are smooth, differentiable
functions of $B$:

* Gauss–Hermite product rules for small $p$ (exact for polynomials of degree $< 2n$ in each
  coordinate, $n$ nodes per axis);
* for larger $p$, an antithetic, whitened Halton (quasi-Monte-Carlo) point set: symmetric
  under $z \mapsto -z$ and with empirical covariance exactly $I$, so it is exact for polynomials
  of degree $\le 3$ and converges like $\tilde O(1/N)$ for smooth integrands.

$B$ may be singular (for example $X_0 = 0$ makes the first block of $B$ vanish): the factor is a
Cholesky factor of $B + \epsilon(\operatorname{tr}B/p)I$ with $\epsilon$ a small multiple of the
square root of the machine epsilon, a relative perturbation far below the $O(d^{-1/2})$
fluctuations the ODE describes.
"""

import functools
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ._custom_types import Moment

# Gauss–Hermite nodes per axis for the default product rules (index: p). Chosen so that the
# rule stays exact on polynomials of degree < 2n and holds ~1e-9 relative on the smooth losses
# shipped here, at a cost of at most ~1e4 points.
_GAUSS_HERMITE_NODES = {1: 80, 2: 40, 3: 20, 4: 10}
_QMC_POINTS = 8192


class GaussianRule(eqx.Module):
    r"""A quadrature rule for the standard normal law on $\mathbb{R}^p$.

    $\mathbb{E}_{z\sim N(0,I_p)}[F(z)] \approx \sum_k w_k F(z_k)$, with $\sum_k w_k = 1$.

    **Arguments:**

    - `nodes`: array of shape `(Q, p)`, the points $z_k$.
    - `weights`: array of shape `(Q,)`, the weights $w_k$.

    Build one with [`GaussianRule.gauss_hermite`][] or [`GaussianRule.quasi_monte_carlo`][], or
    let [`default_rule`][] choose.
    """

    nodes: Float[Array, "Q p"]
    weights: Float[Array, " Q"]

    @property
    def dim(self) -> int:
        return self.nodes.shape[-1]

    @classmethod
    def gauss_hermite(cls, p: int, nodes_per_axis: int) -> "GaussianRule":
        r"""Tensor-product Gauss–Hermite rule with `nodes_per_axis` nodes on each of `p` axes.

        Exact for every polynomial of degree $< 2\,\text{nodes\_per\_axis}$ in each coordinate
        (hence for Wick/Isserlis moments of that order).
        """
        if p < 1 or nodes_per_axis < 1:
            raise ValueError(f"gauss_hermite needs p >= 1 and nodes_per_axis >= 1, got p={p}, "
                             f"nodes_per_axis={nodes_per_axis}")
        return cls(*map(jnp.asarray, _gauss_hermite_nodes(p, nodes_per_axis)))

    @classmethod
    def quasi_monte_carlo(cls, p: int, num_points: int = _QMC_POINTS) -> "GaussianRule":
        r"""Antithetic, whitened Halton rule with `num_points` points (rounded up to even).

        Halton points $u_k \in (0,1)^p$ are mapped by the normal quantile, then symmetrised
        ($\pm z_k$, so all odd moments vanish exactly) and whitened so the empirical covariance
        is exactly $I_p$ (so all moments of order $\le 3$ are exact).
        """
        if p < 1 or num_points < 2:
            raise ValueError(f"quasi_monte_carlo needs p >= 1 and num_points >= 2, got p={p}, "
                             f"num_points={num_points}")
        return cls(*map(jnp.asarray, _qmc_nodes(p, num_points)))

    def expect(self, fn, B: Moment):
        r"""$\mathbb{E}_{r \sim N(0, B)}[\text{fn}(r)]$ for a function returning any pytree."""
        L = psd_factor(B)
        r = self.nodes.astype(L.dtype) @ L.T
        values = jax.vmap(fn)(r)
        w = self.weights.astype(L.dtype)
        return jax.tree_util.tree_map(lambda v: jnp.tensordot(w, v, axes=1), values)


def default_rule(p: int) -> GaussianRule:
    """The rule hsgd uses for a $p$-dimensional Gaussian: Gauss–Hermite for $p \\le 4$,
    quasi-Monte-Carlo (8192 points) above. Nodes are computed once per $p$ (numpy, cached)."""
    nodes, weights = _default_nodes(int(p))
    return GaussianRule(jnp.asarray(nodes), jnp.asarray(weights))


def _default_nodes(p: int):
    if p in _GAUSS_HERMITE_NODES:
        return _gauss_hermite_nodes(p, _GAUSS_HERMITE_NODES[p])
    return _qmc_nodes(p, _QMC_POINTS)


@functools.cache
def _gauss_hermite_nodes(p: int, n: int):
    z1, w1 = np.polynomial.hermite_e.hermegauss(n)
    w1 = w1 / w1.sum()
    grids = np.meshgrid(*([z1] * p), indexing="ij")
    wgrids = np.meshgrid(*([w1] * p), indexing="ij")
    nodes = np.stack([g.ravel() for g in grids], axis=-1)
    weights = np.prod(np.stack([g.ravel() for g in wgrids], axis=-1), axis=-1)
    return nodes, weights


@functools.cache
def trapezoid_normal_nodes(spacing: float = 0.02, half_width: float = 14.0):
    r"""A one-dimensional rule for $\mathbb{E}_{z\sim N(0,1)}[g(z)]$ independent of the
    Gauss–Hermite rules above: the trapezoid rule on the uniform grid $z_i = i\,h$,
    $|z_i| \le$ `half_width`, weights $\propto \varphi(z_i)$ normalised to sum to 1.

    For $g$ analytic in the strip $|\operatorname{Im} z| < a$ and of at most exponential
    growth the error is $O(e^{-2\pi a/h})$ (plus the truncated tail, $\varphi(14) \approx
    10^{-43}$): for $g(z) = \operatorname{softplus}(sz)$, $a = \pi/s$, that is below
    $10^{-40}$ relative for $s \le 10$ at $h = 0.02$ (1401 nodes). NumPy arrays (float64).
    """
    z = np.arange(-round(half_width / spacing), round(half_width / spacing) + 1) * spacing
    w = np.exp(-0.5 * z**2)
    return z, w / w.sum()


@functools.cache
def _qmc_nodes(p: int, num_points: int):
    half = (num_points + 1) // 2
    z = _ndtri_np(_halton(half, p))
    z = np.concatenate([z, -z], axis=0)
    evals, evecs = np.linalg.eigh(z.T @ z / z.shape[0])
    z = z @ (evecs @ np.diag(evals**-0.5) @ evecs.T)
    return z, np.full(z.shape[0], 1.0 / z.shape[0])


def psd_factor(B: Moment) -> Float[Array, "p p"]:
    r"""A factor $L$ with $L L^\top \approx B$ for a positive semi-definite, possibly singular $B$.

    Cholesky of $\tfrac12(B + B^\top) + \epsilon(\operatorname{tr}B/p + \text{tiny})I$ with
    $\epsilon = 10^{-2}\sqrt{\text{machine eps}}$ ($1.5\times10^{-10}$ in float64,
    $3.5\times10^{-6}$ in float32).
    """
    B = 0.5 * (B + B.T)
    p = B.shape[-1]
    eps = 1e-2 * math.sqrt(float(jnp.finfo(B.dtype).eps))
    scale = jnp.trace(B) / p
    tiny = jnp.finfo(B.dtype).tiny ** 0.5
    return jnp.linalg.cholesky(B + (eps * scale + tiny) * jnp.eye(p, dtype=B.dtype))


def _halton(n: int, p: int) -> np.ndarray:
    primes = _first_primes(p)
    out = np.empty((n, p))
    idx = np.arange(1, n + 1)
    for j, base in enumerate(primes):
        f = np.ones(n)
        r = np.zeros(n)
        i = idx.copy()
        while np.any(i > 0):
            f = f / base
            r = r + f * (i % base)
            i = i // base
        out[:, j] = r
    return out


def _first_primes(k: int) -> list[int]:
    primes: list[int] = []
    c = 2
    while len(primes) < k:
        if all(c % q for q in primes):
            primes.append(c)
        c += 1
    return primes


def _ndtri_np(u: np.ndarray) -> np.ndarray:
    from statistics import NormalDist

    inv = np.vectorize(NormalDist().inv_cdf)
    return inv(u)
