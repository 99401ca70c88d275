r"""Power-law random features (PLRF, SPEC §13) as streaming least squares.

Data $x\in\mathbb R^v$ with $x_j = j^{-\alpha}z_j$, $z\sim N(0, I_v)$, so
$\mathbb E\,xx^\top = D = \operatorname{diag}(j^{-2\alpha})$; target $y = \langle x, b\rangle$
with $b_j = j^{-\beta}$; features $a = W^\top x\in\mathbb R^d$, $W\in\mathbb R^{v\times d}$ with
i.i.d. $N(0, 1/d)$ entries; the model $\langle a, \theta\rangle$ trained by one-pass mini-batch
SGD on $\tfrac12(\langle a,\theta\rangle - y)^2$.

The features are Gaussian with covariance $\hat K = W^\top DW$. With $\theta^*$ the population
optimum (least squares of $D^{1/2}W\theta \approx D^{1/2}b$) the residual
$\xi = y - \langle a, \theta^*\rangle$ is Gaussian and uncorrelated with $a$, hence independent
of it: PLRF *is* streaming least squares with covariance $\hat K$, target $\theta^*$ and label
noise of variance $\mathbb E\xi^2 = \|D^{1/2}(b - W\theta^*)\|^2 = 2P_\infty$, where $P_\infty$
is the irreducible loss at this $d$. In the eigenbasis of $\hat K$ (computed from the SVD
$D^{1/2}W = QSU^\top$: $\hat K = US^2U^\top$) the target is $U^\top\theta^* =
(Q^\top D^{1/2}b)/S$.

**Stepsizes and time.** The field states a per-iteration stepsize $\eta$ ($\theta \leftarrow
\theta - \eta\,\frac1\beta\sum_b a_b(\langle a_b, \theta\rangle - y_b)$) and counts iterations
$k$ or flops $f = d\,\beta\,k$. hsgd's convention (SPEC §1) is the step $\gamma/d$ at time
$t = k/d$, so **$\gamma = \eta\,d$** and $t = k/d$: [`PLRF.gamma`][hsgd.PLRF.gamma] and
[`PLRF.time`][hsgd.PLRF.time] convert. Here $\operatorname{tr}\hat K = O(1)$, not $O(d)$: the
eigenvalues are those of $\hat K$ itself, and its top ones are $O(d)$ in hsgd's units
($\gamma\lambda_{\max}/d = \eta\lambda_{\max} = O(1)$), so the exact finite-$d$ dynamics of
SPEC §8 (the default of [`hsgd.ode`][] on this problem) are the ones that apply.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .._custom_types import PRNGKey
from .._dtype import float_dtype


class PLRF(eqx.Module):
    r"""One sampled power-law random-features instance and its exact reduction to streaming
    least squares (SPEC §13; see the module docstring for the equations).

    **Fields:** `alpha`, `beta` (data and target exponents), `W` $(v, d)$ the feature matrix,
    `eigenvalues` $(d,)$ of $\hat K = W^\top DW$ (decreasing), `eigenvectors` $U$ $(d, d)$
    (columns), `theta_star` $(d,)$ the population optimum $\theta^*$, `irreducible_loss`
    $P_\infty = \tfrac12\|D^{1/2}(b - W\theta^*)\|^2$.

    Build one with [`PLRF.sample`][hsgd.PLRF.sample];
    [`Problem.from_plrf`][hsgd.Problem.from_plrf] (or
    directly [`Problem.plrf`][hsgd.Problem.plrf]) is the streaming [`Problem`][] for
    [`hsgd.ode`][] and [`hsgd.simulate`][]. Cost: an SVD of the $v\times d$ matrix
    $D^{1/2}W$, $O(vd^2)$ (d = 1000, v = 4000: about a second).
    """

    alpha: float = eqx.field(static=True)
    beta: float = eqx.field(static=True)
    W: Float[Array, "v d"]
    eigenvalues: Float[Array, " d"]
    eigenvectors: Float[Array, "d d"]
    theta_star: Float[Array, " d"]
    irreducible_loss: Float[Array, ""]

    @property
    def v(self) -> int:
        return self.W.shape[0]

    @property
    def d(self) -> int:
        return self.W.shape[1]

    def data_variances(self) -> Float[Array, " v"]:
        r"""The diagonal of $D$, $j^{-2\alpha}$ for $j = 1..v$."""
        j = jnp.arange(1, self.v + 1, dtype=self.W.dtype)
        return j ** (-2.0 * self.alpha)

    def target_weights(self) -> Float[Array, " v"]:
        r"""$b_j = j^{-\beta}$ for $j = 1..v$."""
        j = jnp.arange(1, self.v + 1, dtype=self.W.dtype)
        return j ** (-self.beta)

    def gamma(self, eta):
        r"""hsgd's learning rate for the per-iteration stepsize $\eta$: $\gamma = \eta\,d$."""
        return eta * self.d

    def time(self, iterations):
        r"""hsgd's time of iteration $k$: $t = k/d$ (flops $f = d\beta k$ at batch $\beta$)."""
        return jnp.asarray(iterations) / self.d

    def loss(self, theta) -> Float[Array, ""]:
        r"""The population loss of parameters $\theta$ $(d,)$ in the original (feature)
        coordinates: $P(\theta) = \tfrac12\,\mathbb E(\langle W^\top x, \theta\rangle - y)^2 =
        \tfrac12\|D^{1/2}(W\theta - b)\|^2$ (exact, no sampling)."""
        r = jnp.sqrt(self.data_variances()) * (self.W @ theta - self.target_weights())
        return 0.5 * jnp.sum(r**2, axis=-1)

    @classmethod
    def sample(cls, alpha, beta, v: int, d: int, key: PRNGKey, *, dtype=None) -> "PLRF":
        r"""Sample $W$ ($v\times d$, i.i.d. $N(0, 1/d)$) and compute the exact reduction: the
        spectrum and eigenvectors of $\hat K = W^\top DW$, $\theta^*$ and $P_\infty$.

        **Arguments:** `alpha` $> 0$ (data $x_j = j^{-\alpha}z_j$), `beta` (target
        $b_j = j^{-\beta}$), `v` $\ge$ `d` $\ge 1$ integers (with $v < d$, $\hat K$ has rank
        $v$: use $v \ge d$), `key` a JAX PRNG key, `dtype` (default JAX's default float).
        """
        alpha, beta = float(alpha), float(beta)
        if not (np.isfinite(alpha) and alpha > 0):
            raise ValueError(f"alpha must be a positive number, got {alpha}")
        if not np.isfinite(beta):
            raise ValueError(f"beta must be finite, got {beta}")
        if int(v) != v or int(d) != d or d < 1 or v < d:
            raise ValueError(f"need integers v >= d >= 1 (v data dimensions, d features; with "
                             f"v < d the feature covariance is singular), got v={v!r}, d={d!r}")
        v, d = int(v), int(d)
        dtype = float_dtype(dtype) if dtype is not None else jnp.zeros(()).dtype
        W = jax.random.normal(key, (v, d), dtype) / float(np.sqrt(d))
        return cls._reduce(alpha, beta, W)

    @classmethod
    def _reduce(cls, alpha, beta, W):
        v = W.shape[0]
        j = jnp.arange(1, v + 1, dtype=W.dtype)
        sqrt_D = j ** (-alpha)
        Db = sqrt_D * j ** (-beta)  # D^{1/2} b
        Q, S, Ut = jnp.linalg.svd(sqrt_D[:, None] * W, full_matrices=False)
        coef = Q.T @ Db  # Q^T D^{1/2} b
        theta_eig = coef / S
        theta = Ut.T @ theta_eig
        resid = Db - Q @ coef  # D^{1/2}(b - W theta*), orthogonal to the range
        return cls(alpha=alpha, beta=beta, W=W, eigenvalues=S**2, eigenvectors=Ut.T,
                   theta_star=theta, irreducible_loss=0.5 * jnp.sum(resid**2))
