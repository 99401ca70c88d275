r"""Gaussian expectations $\mathbb{E}_{r\sim N(0,B)}[F(r)]$ by fixed quadrature rules, with
error estimates (SPEC §1).

Every loss statistic the deterministic equivalent needs — the risk $h(B)$, the drift Jacobian
$J(B)$, the gradient second moment $I(B)$, the critical-rate numerator $A(B)$ — is an
expectation of a low-dimensional function of $r = W^\top a \sim N(0, B)$ with
$B = W^\top K W$ a $p\times p$ positive semi-definite matrix. We write $r = L z$ with
$L L^\top = B$ and $z \sim N(0, I_p)$, and replace the law of $z$ by a fixed, deterministic rule
$\{(z_k, w_k)\}$, so that expectations are smooth, differentiable functions of $B$:

* Gauss–Hermite product rules for small $p$ (exact for polynomials of degree $< 2n$ in each
  coordinate, $n$ nodes per axis); geometric convergence for analytic integrands;
* for larger $p$, an antithetic, whitened Halton (quasi-Monte-Carlo) point set: symmetric
  under $z \mapsto -z$ and with empirical covariance exactly $I$, so it is exact for polynomials
  of degree $\le 3$ and converges like $\tilde O(1/N)$ for smooth integrands;
* trapezoid grids in normal coordinates ([`GaussianRule.trapezoid`][]): spectrally accurate
  for analytic integrands, and far better than Gauss–Hermite when poles sit near the real axis
  ($\tanh$); Smolyak sparse grids ([`GaussianRule.sparse_grid`][]) for smooth integrands with
  $p$ up to ~8;
* *replicated* rules for integrands with kinks or discontinuities (or that the rules above do
  not resolve): the union of $R$ independently randomised copies of one rule — scrambled
  Sobol' sets ([`GaussianRule.scrambled_sobol`][], the automatic choice's fallback), randomly
  shifted and rotated grids ([`GaussianRule.trapezoid`][]) or shifted Halton sets
  ([`GaussianRule.randomized_qmc`][]). Each copy is an unbiased estimate, so the spread of the
  $R$ copies is an honest standard error whatever the integrand's smoothness.

Every rule the automatic choice uses is symmetric under the sign flip of each coordinate
(`reflections`; for the replicated rules when $p \le 4$): Stein's
$J = \mathbb{E}[g z^\top]L^{-1}$ then stays accurate at nearly singular $B$ ($X_0 = 0$, or
$x \approx x^*$ late in training), where an asymmetric rule's error is amplified by
$1/L_{jj}$.

**Error estimates.** A rule may carry a `companion` (a different rule for the same law: the
default rule's is the next coarser rule of its family, an automatically chosen rule's the next
finer one, for trapezoid grids shifted by half a spacing), and then the estimated error of
an expectation is a factor (2, or $1.25/(1-\rho) \ge 1.5$ for a geometric convergence ratio
$\rho$ seen by the automatic choice) times the difference between the two rules; a replicated
rule estimates its error as
$4\times$ the standard error of the mean of its copies (`replicates`, 16 for the automatic
rules: the probability that a Student-$t_{15}$ exceeds 4 is $1.2\times10^{-3}$). The loss
classes turn these into a relative error per moment ([`AbstractLoss.moment_error`][]) and choose
a rule for a tolerance ([`AbstractLoss.refined`][]); this module builds the rules and the
candidate ladders.

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
# Replicated (randomised) rules: number of copies and the factor on the standard error.
REPLICATES = 16
ERROR_FACTOR = 4.0
# A deterministic rule's estimate: this factor times its difference to the companion.
DIFFERENCE_FACTOR = 2.0
# Largest Gauss–Hermite order used by the ladders (numpy's nodes stay accurate well beyond).
_MAX_GAUSS_HERMITE = 300
# Default budget of the automatic choice, in rule points (all copies together).
DEFAULT_MAX_POINTS = 2**20


class ExpectationAccuracyWarning(RuntimeWarning):
    """The automatic rule choice could not meet the requested tolerance within its budget (the
    message gives the estimated error), or a user-given rule misses it."""


class GaussianRule(eqx.Module):
    r"""A quadrature rule for the standard normal law on $\mathbb{R}^p$.

    $\mathbb{E}_{z\sim N(0,I_p)}[F(z)] \approx \sum_k w_k F(z_k)$, with $\sum_k w_k = 1$.

    **Arguments:**

    - `nodes`: array of shape `(Q, p)`, the points $z_k$.
    - `weights`: array of shape `(Q,)`, the weights $w_k$.
    - `companion`: optional second rule for the same law; the difference of the two is the
      error estimate of this rule (the automatic rules carry the next coarser rule of their
      family). Without one, an estimate compares with `reference_rule`.
    - `replicates`: $R \ge 1$. With $R > 1$ the rule is the union of $R$ independent,
      unbiased, randomised copies stored as consecutive blocks of $Q/R$ nodes, each block's
      weights summing to $1/R$; the error estimate is then $4\times$ the standard error of
      the mean of the $R$ block estimates (no companion needed).
    - `label`: a description (for messages and benchmarks).
    - `companion_factor`: the estimate is this factor times the difference to the companion
      (default 2; the automatic choice sets $1.25/(1 - \rho) \in [1.5, 2]$ when it saw the rule
      family converge geometrically with ratio $\rho \le 1/2$ towards a finer companion).
    - `bias_bound`: a relative error that neither the companion nor the copies can see,
      added to every estimate: for the truncated grids of [`GaussianRule.trapezoid`][],
      $10\,P(\|z\| > \text{half\_width})$ (the Gaussian mass left out, with room for an
      integrand growing in the tails).

    Build one with [`GaussianRule.gauss_hermite`][], [`GaussianRule.quasi_monte_carlo`][],
    [`GaussianRule.trapezoid`][] or [`GaussianRule.randomized_qmc`][], or let
    [`default_rule`][] choose.
    """

    nodes: Float[Array, "Q p"]
    weights: Float[Array, " Q"]
    companion: "GaussianRule | None" = None
    replicates: int = eqx.field(static=True, default=1)
    label: str = eqx.field(static=True, default="")
    bias_bound: float = eqx.field(static=True, default=0.0)
    companion_factor: float = eqx.field(static=True, default=DIFFERENCE_FACTOR)

    def __check_init__(self):
        if self.nodes.ndim != 2 or self.weights.shape != self.nodes.shape[:1]:
            raise ValueError(f"a GaussianRule needs nodes of shape (Q, p) and weights of shape "
                             f"(Q,), got {self.nodes.shape} and {self.weights.shape}")
        if self.replicates < 1 or self.nodes.shape[0] % self.replicates:
            raise ValueError(f"replicates={self.replicates} must be >= 1 and divide the number "
                             f"of nodes {self.nodes.shape[0]}")
        if self.companion is not None and self.companion.dim != self.dim:
            raise ValueError(f"the companion rule has dimension {self.companion.dim}, the rule "
                             f"{self.dim}")

    @property
    def dim(self) -> int:
        return self.nodes.shape[-1]

    @property
    def num_points(self) -> int:
        """The number of nodes $Q$ (all copies together), a Python `int`."""
        return self.nodes.shape[0]

    def with_companion(self, companion: "GaussianRule | None",
                       factor: float = DIFFERENCE_FACTOR) -> "GaussianRule":
        """This rule with `companion` as its error-estimate partner (estimate: `factor` times
        their difference)."""
        return GaussianRule(self.nodes, self.weights, companion, self.replicates, self.label,
                            self.bias_bound, float(factor))

    @classmethod
    def gauss_hermite(cls, p: int, nodes_per_axis: int) -> "GaussianRule":
        r"""Tensor-product Gauss–Hermite rule with `nodes_per_axis` nodes on each of `p` axes.

        Exact for every polynomial of degree $< 2\,\text{nodes\_per\_axis}$ in each coordinate
        (hence for Wick/Isserlis moments of that order).
        """
        if p < 1 or nodes_per_axis < 1:
            raise ValueError(f"gauss_hermite needs p >= 1 and nodes_per_axis >= 1, got p={p}, "
                             f"nodes_per_axis={nodes_per_axis}")
        nodes, weights = _gauss_hermite_nodes(int(p), int(nodes_per_axis))
        return cls(jnp.asarray(nodes), jnp.asarray(weights),
                   label=f"gauss_hermite(p={p}, n={nodes_per_axis})")

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
        nodes, weights = _qmc_nodes(int(p), int(num_points))
        return cls(jnp.asarray(nodes), jnp.asarray(weights),
                   label=f"quasi_monte_carlo(p={p}, N={nodes.shape[0]})")

    @classmethod
    def sparse_grid(cls, p: int, level: int) -> "GaussianRule":
        r"""Smolyak sparse grid of Gauss–Hermite rules ($2l - 1$ nodes at 1-D level $l$) at
        `level` $\ge 0$: exact for every polynomial $\prod_i z_i^{k_i}$ with
        $\sum_i \lceil (k_i + 3)/4 \rceil \le p + \text{level}$, with far fewer points than the
        tensor rule (its weights can be negative). For smooth integrands with $p$ up to ~8.
        """
        if p < 1 or level < 0:
            raise ValueError(f"sparse_grid needs p >= 1 and level >= 0, got p={p}, level={level}")
        nodes, weights = _smolyak_nodes(int(p), int(level))
        return cls(jnp.asarray(nodes), jnp.asarray(weights),
                   label=f"sparse_grid(p={p}, level={level}, Q={nodes.shape[0]})")

    @classmethod
    def trapezoid(cls, p: int, spacing: float, half_width: float = 8.0,
                  replicates: int = REPLICATES, seed: int = 0,
                  offset: float = 0.0) -> "GaussianRule":
        r"""Uniform grids in normal coordinates: one deterministic grid (`replicates=1`) or the
        union of $R$ = `replicates` randomised copies.

        The deterministic grid has the nodes $z = h(k + o)$, $k \in \mathbb{Z}^p$, $\|z\| \le$
        `half_width` ($h$ = `spacing`, $o$ = `offset`: 0, or 1/2 for the midpoint grid, both
        symmetric in every coordinate), weights $\propto \varphi(z)$ summing to 1: the
        trapezoid rule, with error $O(e^{-2\pi a/h})$ for an integrand analytic in the strip
        $|\operatorname{Im} z_i| < a$ (far better than Gauss–Hermite for, e.g., $\tanh$, whose
        poles sit near the real axis), $O(h^2)$ at a kink. Copy $j$ of a replicated rule has the
        nodes $Q_j h(k + u_j)$ with a uniform shift $u_j \in [0,1)^p$ and a Haar rotation $Q_j$
        ($p \ge 2$), and their images under the sign flips of each coordinate ($p \le 4$; see
        `reflections`), weights $\propto \varphi$ summing to $1/R$: unbiased up to the truncation
        ($P(\|z\| > 8) < 10^{-12}$ for $p \le 3$) and the normalisation ($h^p\sum\varphi = 1$
        to $O(e^{-2\pi^2/h^2})$), with mean-square error $O(h^{p+1})$ at a jump along a
        hypersurface; the spread of the copies measures the error whatever the smoothness. The
        rotation keeps axis-aligned jumps (of $x$ alone: $x = L_{11}z_1$) from lining up with
        the grid. Cost $\approx R\,V_p\,(\text{half\_width}/h)^p$ points ($V_p$ the unit-ball
        volume).
        """
        if p < 1 or not spacing > 0 or not half_width > 0 or replicates < 1 or (
                replicates > 1 and offset != 0.0):
            raise ValueError(f"trapezoid needs p >= 1, spacing > 0, half_width > 0 and "
                             f"replicates >= 1 (offset only with replicates=1), got p={p}, "
                             f"spacing={spacing}, half_width={half_width}, "
                             f"replicates={replicates}, offset={offset}")
        nodes, weights = _trapezoid_nodes(int(p), float(spacing), float(half_width),
                                          int(replicates), int(seed), float(offset))
        return cls(jnp.asarray(nodes), jnp.asarray(weights), replicates=int(replicates),
                   label=f"trapezoid(p={p}, h={spacing:.4g}, W={half_width:g}"
                         + (f", R={replicates})" if replicates > 1 else
                            (f", offset={offset:g})" if offset else ")")),
                   bias_bound=10.0 * _chi2_tail(int(p), float(half_width)))

    @classmethod
    def scrambled_sobol(cls, p: int, log2_points: int, replicates: int = REPLICATES,
                        seed: int = 0) -> "GaussianRule":
        r"""$R$ = `replicates` independently Owen-scrambled Sobol' sets of $2^m$ points
        ($m$ = `log2_points`), mapped by the normal quantile, with their images under the sign
        flips of each coordinate (`reflections`: $2^{m+p}$ nodes per copy for $p \le 4$,
        antithetic $2^{m+1}$ above), equal weights summing to $1/R$. Each copy is an unbiased
        estimate (scrambling makes every point uniform), with root-mean-square error
        $O(N^{-3/2+\epsilon})$ for smooth integrands and still better than the randomised
        grids at kinks and jumps (measured 2-5x at $10^6$ points on a hinge, a biased ReLU
        and Huber with Gaussian noise). The rule the automatic choice falls back on.
        """
        if p < 1 or log2_points < 1 or replicates < 2:
            raise ValueError(f"scrambled_sobol needs p >= 1, log2_points >= 1 and "
                             f"replicates >= 2, got p={p}, log2_points={log2_points}, "
                             f"replicates={replicates}")
        nodes, weights = _sobol_nodes(int(p), int(log2_points), int(replicates), int(seed))
        return cls(jnp.asarray(nodes), jnp.asarray(weights), replicates=int(replicates),
                   label=f"scrambled_sobol(p={p}, N={nodes.shape[0] // replicates}, "
                         f"R={replicates})")

    @classmethod
    def randomized_qmc(cls, p: int, points_per_replicate: int,
                       replicates: int = REPLICATES, seed: int = 0) -> "GaussianRule":
        r"""$R$ = `replicates` randomly shifted Halton sets (Cranley–Patterson rotation).

        Copy $j$: $u_k = \{\text{halton}_k + s_j\}$ (fractional part, $s_j$ uniform), mapped by
        the normal quantile and made antithetic ($\pm z_k$; `points_per_replicate` rounded up to
        even), equal weights summing to $1/R$. Each copy is unbiased; the rule is for $p$ up to
        ~8, where grids are too large. No whitening (it would bias the copies).
        """
        if p < 1 or points_per_replicate < 2 or replicates < 2:
            raise ValueError(f"randomized_qmc needs p >= 1, points_per_replicate >= 2 and "
                             f"replicates >= 2, got p={p}, "
                             f"points_per_replicate={points_per_replicate}, "
                             f"replicates={replicates}")
        nodes, weights = _rqmc_nodes(int(p), int(points_per_replicate), int(replicates),
                                     int(seed))
        return cls(jnp.asarray(nodes), jnp.asarray(weights), replicates=int(replicates),
                   label=f"randomized_qmc(p={p}, N={nodes.shape[0] // replicates}, "
                         f"R={replicates})")

    def expect(self, fn, B: Moment):
        r"""$\mathbb{E}_{r \sim N(0, B)}[\text{fn}(r)]$ for a function returning any pytree."""
        L = psd_factor(B)
        r = self.nodes.astype(L.dtype) @ L.T
        values = jax.vmap(fn)(r)
        w = self.weights.astype(L.dtype)
        return jax.tree_util.tree_map(lambda v: jnp.tensordot(w, v, axes=1), values)

    def replicate_weights(self, dtype) -> Float[Array, "R q"]:
        r"""The weights as an $(R, Q/R)$ array, row $j$ copy $j$'s weights (each row summing to
        1): applied to the node values reshaped to $(R, Q/R, \ldots)$ it gives the $R$ copies'
        estimates."""
        R = self.replicates
        return self.weights.astype(dtype).reshape(R, -1) * R


def default_rule(p: int) -> GaussianRule:
    """The rule hsgd uses for a $p$-dimensional Gaussian unless told otherwise: Gauss–Hermite
    for $p \\le 4$ (80, 40, 20, 10 nodes per axis), quasi-Monte-Carlo (8192 points) above.
    Its companion (the error estimate's partner) is the same family at about 3/4 of the nodes
    per axis (half the points for quasi-Monte-Carlo). Nodes are computed once per $p$ (numpy,
    cached)."""
    p = int(p)
    if p < 1:
        raise ValueError(f"default_rule needs p >= 1, got {p}")
    if p in _GAUSS_HERMITE_NODES:
        n = _GAUSS_HERMITE_NODES[p]
        return GaussianRule.gauss_hermite(p, n).with_companion(
            GaussianRule.gauss_hermite(p, _coarser(n)))
    return GaussianRule.quasi_monte_carlo(p, _QMC_POINTS).with_companion(
        GaussianRule.quasi_monte_carlo(p, _QMC_POINTS // 2))


def reference_rule(p: int) -> GaussianRule:
    """A finer deterministic rule than [`default_rule`][], the partner for estimating the error
    of a user-given rule that has no companion: Gauss–Hermite with 1.5x the default nodes per
    axis for $p \\le 4$, quasi-Monte-Carlo with 4x the points above."""
    p = int(p)
    if p in _GAUSS_HERMITE_NODES:
        return GaussianRule.gauss_hermite(p, _finer(_GAUSS_HERMITE_NODES[p]))
    return GaussianRule.quasi_monte_carlo(p, 4 * _QMC_POINTS)


def _coarser(n: int) -> int:
    return max(1, round(0.75 * n))


def _finer(n: int) -> int:
    return round(1.5 * n)


def deterministic_ladders(p: int, max_points: int) -> list[tuple[str, list]]:
    """Chains of deterministic rules (without companions) for dimension `p`, each coarsest
    first, all within `max_points`, as `(family, builders)` with zero-argument builders (a
    rule's nodes are computed, and cached, only when it is tried):

    - $p \\le 4$: Gauss–Hermite from the default rule's companion (3/4 of the default nodes per
      axis) through the default rule up by ~1.5x nodes per axis; then deterministic trapezoid
      grids ([`GaussianRule.trapezoid`][], `replicates=1`) with spacing $0.8^k$, $k = 0, 1,
      \\ldots$ (ball radius 8, 8, 7.5, 6.5 for $p = 1..4$);
    - $p \\ge 4$: Smolyak sparse grids ([`GaussianRule.sparse_grid`][]) from level 2 up;
    - $p \\ge 5$, first: quasi-Monte-Carlo with 4096, 8192 (the default), 16384, ... points."""
    chains = []
    if p in _GAUSS_HERMITE_NODES:
        n0 = _GAUSS_HERMITE_NODES[p]
        ns = [_coarser(n0), n0]
        while (ns[-1] < _MAX_GAUSS_HERMITE
               and min(_finer(ns[-1]), _MAX_GAUSS_HERMITE) ** p <= max_points):
            ns.append(min(_finer(ns[-1]), _MAX_GAUSS_HERMITE))
        chains.append(("gauss_hermite",
                       [functools.partial(GaussianRule.gauss_hermite, p, n) for n in ns]))
    else:
        sizes = [_QMC_POINTS // 2, _QMC_POINTS]
        while 2 * sizes[-1] <= max_points:
            sizes.append(2 * sizes[-1])
        chains.append(("quasi_monte_carlo",
                       [functools.partial(GaussianRule.quasi_monte_carlo, p, n) for n in sizes]))
    if p <= 4:
        half_width = _DETERMINISTIC_HALF_WIDTH[p]
        spacings = [0.8**k for k in range(16) if _ball_points(p, half_width, 0.8**k) <= max_points]
        chains.append(("trapezoid", [functools.partial(GaussianRule.trapezoid, p, h, half_width, 1)
                                     for h in spacings]))
    if p >= 4:
        levels = [lv for lv in range(2, 12) if _smolyak_size(p, lv) <= max_points]
        chains.append(("sparse_grid",
                       [functools.partial(GaussianRule.sparse_grid, p, lv) for lv in levels]))
    return [(name, c) for name, c in chains if len(c) >= 3]


_DETERMINISTIC_HALF_WIDTH = {1: 8.0, 2: 8.0, 3: 7.5, 4: 6.5}  # tails 1e-15, 1e-14, 3e-12, 2e-8


def _chi2_tail(p: int, radius: float) -> float:
    """$P(\\|z\\| > r)$ for $z \\sim N(0, I_p)$."""
    from scipy.special import gammaincc  # scipy is a dependency of jax

    return float(gammaincc(p / 2, radius**2 / 2))


def _ball_points(p: int, half_width: float, h: float) -> int:
    return int(math.pi ** (p / 2) / math.gamma(p / 2 + 1) * (half_width / h) ** p) + 1


def _smolyak_size(p: int, level: int) -> int:
    # Points before merging (an upper bound), without building the grid.
    q = p + level
    total = 0
    for combo in _compositions(q, p, q - p + 1):
        total += math.prod(2 * li - 1 for li in combo)
    return total


def _compositions(q: int, p: int, low: int):
    def rec(prefix, dims, budget):
        if dims == 0:
            if sum(prefix) >= low:
                yield prefix
            return
        for li in range(1, budget - (dims - 1) + 1):
            yield from rec(prefix + (li,), dims - 1, budget - li)
    return rec((), p, q)


def randomized_ladder(p: int, max_points: int, replicates: int = REPLICATES,
                      seed: int = 0) -> list[dict]:
    """Replicated rules for dimension `p` with $2^{14}, 2^{16}, \\ldots$ points in all (up to
    `max_points`), cheapest first, as one `{family: builder}` per size: scrambled Sobol' sets
    ([`GaussianRule.scrambled_sobol`][]), better at jumps, and for $p \\le 3$ randomised grids
    ([`GaussianRule.trapezoid`][]), better at kinks of a continuous gradient."""
    sizes = []
    total = 2**14
    while total <= max_points:
        families = {"sobol": functools.partial(
            GaussianRule.scrambled_sobol, p,
            max(1, int(round(math.log2(total / (_reflection_count(p) * replicates))))),
            replicates, seed)}
        if p <= 3:
            half_width = 8.0
            ball = math.pi ** (p / 2) / math.gamma(p / 2 + 1) * half_width**p
            spacing = (ball * replicates * _reflection_count(p) / total) ** (1.0 / p)
            families["grid"] = functools.partial(GaussianRule.trapezoid, p, spacing, half_width,
                                                 replicates, seed)
        sizes.append(families)
        total *= 4
    return sizes


@functools.cache
def _gauss_hermite_1d(n: int):
    with np.errstate(all="ignore"):  # far weights underflow for large n (harmless)
        z1, w1 = np.polynomial.hermite_e.hermegauss(n)
    return z1, w1 / w1.sum()


@functools.cache
def _gauss_hermite_nodes(p: int, n: int):
    z1, w1 = _gauss_hermite_1d(n)
    w1 = w1 / w1.sum()
    grids = np.meshgrid(*([z1] * p), indexing="ij")
    wgrids = np.meshgrid(*([w1] * p), indexing="ij")
    nodes = np.stack([g.ravel() for g in grids], axis=-1)
    weights = np.prod(np.stack([g.ravel() for g in wgrids], axis=-1), axis=-1)
    keep = weights > 0  # far nodes of large rules underflow: drop them (no contribution)
    return nodes[keep], weights[keep]


@functools.cache
def _smolyak_nodes(p: int, level: int):
    # Combination technique: A(q, p) = sum over multi-indices l >= 1 with
    # q - p + 1 <= |l| <= q of (-1)^(q - |l|) C(p - 1, q - |l|) (U_l1 x ... x U_lp), q = p + level,
    # U_l the Gauss-Hermite rule with 2l - 1 nodes (exact to degree 4l - 3). Equal nodes merged.
    q = p + level
    acc: dict = {}

    def rec(prefix, remaining_dims, budget):
        if remaining_dims == 0:
            total = sum(prefix)
            if total < q - p + 1:
                return
            coef = (-1) ** (q - total) * math.comb(p - 1, q - total)
            rules = [_gauss_hermite_1d(2 * li - 1) for li in prefix]
            grids = np.meshgrid(*[r[0] for r in rules], indexing="ij")
            wgrids = np.meshgrid(*[r[1] for r in rules], indexing="ij")
            pts = np.stack([g.ravel() for g in grids], axis=-1)
            wts = coef * np.prod(np.stack([g.ravel() for g in wgrids], axis=-1), axis=-1)
            for key, w in zip(map(tuple, np.round(pts, 12)), wts):
                acc[key] = acc.get(key, 0.0) + w
            return
        for li in range(1, budget - (remaining_dims - 1) + 1):
            rec(prefix + [li], remaining_dims - 1, budget - li)

    rec([], p, q)
    nodes = np.array([k for k, w in acc.items() if w != 0.0])
    weights = np.array([w for w in acc.values() if w != 0.0])
    return nodes, weights / weights.sum()


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
def _trapezoid_nodes(p: int, h: float, half_width: float, replicates: int, seed: int,
                     offset: float = 0.0):
    rng = np.random.default_rng([seed, p, replicates, 7919])
    k = int(math.ceil(half_width / h)) + 1
    axis = np.arange(-k, k + 1, dtype=float)
    base = np.stack([g.ravel() for g in np.meshgrid(*([axis] * p), indexing="ij")], axis=-1)
    blocks = []
    for _ in range(replicates):
        z = h * (base + (rng.random(p) if replicates > 1 else offset))
        z = z[np.sum(z**2, axis=-1) <= half_width**2]
        if replicates > 1:
            if p >= 2:
                q, r = np.linalg.qr(rng.standard_normal((p, p)))
                z = z @ (q * np.sign(np.diag(r))).T  # Haar-distributed rotation
            z = reflections(z)
        w = np.exp(-0.5 * np.sum(z**2, axis=-1))
        blocks.append((z, w / w.sum() / replicates))
    size = max(z.shape[0] for z, _ in blocks)
    nodes = np.zeros((replicates, size, p))
    weights = np.zeros((replicates, size))
    for j, (z, w) in enumerate(blocks):  # pad each copy to one size with zero-weight nodes
        nodes[j, :z.shape[0]], weights[j, :z.shape[0]] = z, w
    return nodes.reshape(-1, p), weights.ravel()


def reflections(z: np.ndarray) -> np.ndarray:
    """`z` $(n, p)$ and its images under every sign flip of single coordinates ($2^p n$ points,
    $p \\le 4$), or under $z \\mapsto -z$ only ($p > 4$). A rule symmetric in each coordinate
    keeps Stein's $J = \\mathbb{E}[g z^\\top]L^{-1}$ accurate when $B$ is nearly singular
    ($X_0 = 0$, or $x \\approx x^*$ late in training): flipping $z_j$ changes $r = Lz$ only along
    column $j$ of $L$, so the noise in $\\mathbb{E}[g z_j]$ scales with that column instead of
    being amplified by $1/L_{jj}$."""
    p = z.shape[1]
    if p > 4:
        return np.concatenate([z, -z], axis=0)
    signs = np.array(np.meshgrid(*([[1.0, -1.0]] * p), indexing="ij")).reshape(p, -1).T
    return (z[None, :, :] * signs[:, None, :]).reshape(-1, p)


def _reflection_count(p: int) -> int:
    return 2**p if p <= 4 else 2


@functools.cache
def _sobol_nodes(p: int, log2_points: int, replicates: int, seed: int):
    from scipy.stats import qmc  # scipy is a dependency of jax

    blocks = []
    for j in range(replicates):
        u = qmc.Sobol(p, scramble=True, seed=np.random.default_rng([seed, p, j, 65537]))
        z = _ndtri_np(np.clip(u.random_base2(log2_points), 1e-16, 1 - 1e-16))
        blocks.append(reflections(z))
    nodes = np.concatenate(blocks, axis=0)
    return nodes, np.full(nodes.shape[0], 1.0 / nodes.shape[0])


@functools.cache
def _rqmc_nodes(p: int, points_per_replicate: int, replicates: int, seed: int):
    rng = np.random.default_rng([seed, p, replicates, 104729])
    half = (points_per_replicate + 1) // 2
    u0 = _halton(half, p)
    blocks = []
    for _ in range(replicates):
        z = _ndtri_np(np.clip((u0 + rng.random(p)) % 1.0, 1e-16, 1 - 1e-16))
        blocks.append(np.concatenate([z, -z], axis=0))
    nodes = np.concatenate(blocks, axis=0)
    return nodes, np.full(nodes.shape[0], 1.0 / nodes.shape[0])


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
    from scipy.special import ndtri  # scipy is a dependency of jax

    return ndtri(u)
