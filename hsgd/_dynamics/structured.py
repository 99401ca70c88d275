r"""The default integrator of the per-mode deterministic equivalents (SPEC §6).

Every per-mode equivalent hsgd solves has the same shape: per mode $j$ a small block of second
moments whose drift is *linear* in that block once a low-dimensional summary $u$ (the matrix
$B = \sum_j\omega_j\lambda_jV_j$, and for some optimizers a few more sums) and a few auxiliary
scalars $a$ are known. Splitting the moments of $[\text{free} \mid \text{target}]$ into the free
block $F_j$ ($n\times n$), the free–target block $C_j$ ($n\times m^*$) and the constant target
block $T_j$:

$$C_j' = A_jC_j + \bar A_jT_j,\qquad
F_j' = A_jF_j + F_jA_j^\top + \bar A_jC_j^\top + C_j\bar A_j^\top + N_j,\qquad a' = r,$$

where $A_j$ ($n\times n$), $\bar A_j$ ($n\times m^*$), $N_j$ and $r$ are functions of
$(t, u, a)$ given by the dynamics ([`AbstractModeDynamics`][]). For SGD (SPEC §1)
$A_j = -\gamma\lambda_jJ_x(B)$: the stiff part, with rates $\gamma\lambda_j$ that span the
spectrum.

[`StructuredKvaerno5`][] integrates this with Kværnø's L-stable ESDIRK 5(4) tableau. Each implicit
stage $z = \zeta + h\alpha f(t_i, z)$ is reduced to an equation for the summary alone: for a
fixed $(u, a)$ the stage is a per-mode *linear* solve (a $n\times n$ solve for $C$ and a
Sylvester equation for $F$, elementwise divisions when $n = 1$), so the stage's summary must
satisfy $u = \Phi(u)$ with $\Phi(u) = \operatorname{summary}(z(u))$ — a system of a few unknowns,
solved by Newton's method. Each correction is one pass over the modes that evaluates the stage
blocks at the current $u$ together with their forward-mode derivatives along the few directions
of $u$: the exact Jacobian of this stage and the tangent with which the blocks are carried to
the corrected $u$ (exact when the dynamics are affine in $u$, as for least squares, so one
correction per stage does it). No $J\times J$ (or $Jp^2\times Jp^2$) Jacobian, cost $O(J)$ per
pass, unconditionally stable in the stiff modes (L-stable: $\gamma\lambda_{\max}h$ may be
$10^{12}$). The stages are unrolled, so a step is a fixed sequence of fused passes (about ten
per stage at $n = 1$ after XLA's fusion, plus the controller's), which at $10^4$ modes is what
its cost is made of.

Error control. The state is held in coordinates where the quantity that decays is a state
variable of its own (for SGD, moments of $X - X^*$ instead of $X$: the risk is then not a
difference of large numbers). The controller holds to `rtol`/`atol` (max norm) the local errors
of the **aggregates the outputs are made of** — $\sum_j w_j|\delta F_j|$ against
$\sum_j w_j|F_j|$ for the weightings of the dynamics, e.g. $\omega_j\lambda_j$ (the matrix
$B$, hence the risk) and $\omega_j$ (the distance) — entrywise, without cancellation between
modes, over the components of the free block the outputs read
(`AbstractModeDynamics.controlled`: e.g. the $X - X^*$ block of momentum, not the velocity's),
plus optional constant floors (`AbstractModeDynamics.error_floor`: a block that
decays next to a constant one, like $C$ next to the target's $T$, is held relative to what it
is added to). A mode that has decayed to nothing does not hold the step back, merging or
splitting modes does not change the step count, and no mode's error can hide in a difference.
The Newton iteration's remaining relative residual on the summary enters the estimate too, so
a step whose stage equations were not solved to `rtol` is rejected.
"""

import abc
from typing import NamedTuple

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx
from jaxtyping import Array, Float


class ModeSystem(NamedTuple):
    r"""The per-mode linear system at one $(t, u, a)$ (see the module docstring), with the mode
    axis **last** (so that sums over modes are contiguous reductions and the per-mode $n\times n$
    algebra is a few vector operations): `A` $(n, n, J)$, `A_target` $(n, m^*, J)$ (`None`:
    zero, e.g. least squares in error coordinates, and its terms are skipped), `target`
    $(m^*, m^*, J)$, `forcing` $N_j$ $(n, n, J)$ and the auxiliary rates `aux_rate` $(k,)$. The
    last axis may be 1 where a term is shared by all modes.

    `A_free` $(n, n, J)$, optional: the generator of the free block alone, when it differs from
    the $C$ block's $A_j$ — $F_j' = \tilde A_jF_j + F_j\tilde A_j^\top + \dots$ with
    $\tilde A_j$ = `A_free`, $C_j' = A_jC_j + \dots$ unchanged. E.g. the finite-$d$
    self-interaction of least squares (SPEC §8), $F_j' \mathrel{+}= r_jF_j$, is
    $\tilde A_j = A_j + \tfrac{r_j}2 I$. `None`: $\tilde A_j = A_j$.

    `F_self` $(r, n, n, J)$, optional: matrices $R_{ij}$ of a self-interaction of the free
    block that is not of that form, $F_j' \mathrel{+}= \sum_iR_{ij}F_jR_{ij}^\top$ (the
    multiplicative noise of a linear recursion: e.g. momentum on least squares at finite $d$,
    SPEC §9, where $R_1 = A_j/\sqrt d$). The stage solves stay exact (a per-mode linear solve
    on the symmetric block). `None`: no such term.

    `F_feedback` $(n, n, J)$, optional: a symmetric $G_j$ fed by the free block's first
    diagonal entry, $F_j' \mathrel{+}= (F_j)_{11}\,G_j$ — the rank-one self-interaction
    $RF_jR^\top$ with $R = [g\mid0]$, $G = gg^\top$, for a few additions instead of a
    product (e.g. least squares at finite $d$: the gradient's own-mode fourth moment
    $\lambda_j^2P_j\,cc^\top/(\beta d)$, SPEC §9). `None`: no such term.

    `forcing_coef` $(p,)$ and `forcing_basis` $(p, n, n, J)$, optional: the forcing factored
    as $N_j = \sum_p\varphi_p\,\hat N_{pj}$ (they must then agree with `forcing`), where
    only the few scalars $\varphi_p$ depend on the summary — e.g. least squares, whose noise
    is $I(B)$ (the $m\times m$ residual covariance) times a fixed per-mode matrix. For
    [`forcing_only`][hsgd._dynamics.structured.AbstractModeDynamics.forcing_only] dynamics the
    solver then solves each stage's per-mode blocks once per basis element and finds the
    summary from an equation in its few unknowns alone (see [`StructuredKvaerno5`][]).
    `None`: the forcing is differentiated along the summary instead."""

    A: Float[Array, "n n J"]
    A_target: Float[Array, "n ms J"] | None
    target: Float[Array, "ms ms J"]
    forcing: Float[Array, "n n J"]
    aux_rate: Float[Array, " k"]
    A_free: Float[Array, "n n J"] | None = None
    F_self: Float[Array, "r n n J"] | None = None
    F_feedback: Float[Array, "n n J"] | None = None
    forcing_coef: Float[Array, " p"] | None = None
    forcing_basis: Float[Array, "p n n J"] | None = None

    @property
    def generator_free(self):
        """The free block's generator: `A_free`, or `A` when it is `None`."""
        return self.A if self.A_free is None else self.A_free


class AbstractModeDynamics(eqx.Module):
    r"""A per-mode deterministic equivalent in the form [`StructuredKvaerno5`][] solves.

    The state is a dict `F` $(n, n, J)$, `C` $(n, m^*, J)$, `aux` $(k,)$ (plus the solver's
    bookkeeping leaves; the mode axis is last). Subclasses give the summary (affine in `F`, `C`),
    the linear system, the error weights, and `affine`: whether the system is affine in the
    summary at a fixed time (then one Newton correction per stage is exact).
    """

    affine: eqx.AbstractVar[bool]

    @property
    def forcing_only(self) -> bool:
        r"""Whether the summary enters the system only through the forcing $N$ ($A$, $\bar A$
        and the auxiliary rates do not depend on it; e.g. least squares). The solver then
        solves the $C$ block once per stage and differentiates only the $F$ block."""
        return False

    @abc.abstractmethod
    def summary_linear(self, F, C) -> Float[Array, " u"]:
        """The linear part of the coupling summary $u$ (a flat vector)."""

    @abc.abstractmethod
    def summary_offset(self) -> Float[Array, " u"]:
        """The constant part of the summary (e.g. the target's contribution to $B$)."""

    def summary(self, F, C) -> Float[Array, " u"]:
        """The coupling summary $u$ = linear part + offset."""
        return self.summary_linear(F, C) + self.summary_offset()

    @abc.abstractmethod
    def system(self, t, u, aux) -> ModeSystem:
        """The per-mode linear system given the summary and the auxiliary scalars."""

    @abc.abstractmethod
    def error_weights(self) -> Float[Array, "W J"]:
        r"""Non-negative mode weightings $w^{(i)}_j$ whose aggregates
        $\sum_j w^{(i)}_j|F_j|$, $\sum_j w^{(i)}_j|C_j|$ the error control holds to `rtol`
        (e.g. the weights of $B$ and of the distance): the quantities the outputs are made of."""

    @property
    def controlled(self) -> int | None:
        r"""How many leading components of the free block the outputs are made of: the error
        control reads the leading $k\times k$ block of $F_j$ and the first $k$ rows of $C_j$
        (and [`error_floor`][hsgd._dynamics.structured.AbstractModeDynamics.error_floor] is of
        that size). `None` (default): all of them. E.g. momentum (SPEC §9), whose free block is
        $[X - X^*\mid Y]$ and whose summary, risk and distance read only the $X - X^*$ block:
        the velocity's moments are integrated to the same order but held to no tolerance of
        their own — like a mode that carries nothing of $B$, their error is controlled where it
        enters what is output."""
        return None

    def error_floor(self):
        r"""Constant floors added to the aggregates' sizes in the error control, as a dict `F`
        $(n, n, W)$, `C` $(n, m^*, W)$ (default: none). E.g. in error coordinates $C_j$ decays to
        zero while what it enters, $B_{x*} = \sum_j w_jC_j + B_{**}$, does not: its error is
        held relative to the target's aggregate, not to its own vanishing size."""
        return None

    def field(self, t, y):
        """The right-hand side $dy/dt$ (explicit), with zero rates for the bookkeeping leaves."""
        sys = self.system(t, y["u"], y["aux"])
        kF, kC = _apply(sys, y["F"], y["C"])
        return _derivative(y, kF, kC, sys.aux_rate)


def initial_state(dynamics: AbstractModeDynamics, F, C, aux):
    r"""The solver's state from the per-mode blocks (mode axis last) and the auxiliary scalars,
    with bookkeeping leaves (their own values are not integrated): `u`, the summary of the
    blocks (the solver keeps it up to date, so that events and outputs read it without a pass
    over the modes); for the error control `mag`, the weighted aggregates of $|F|$ and $|C|$
    (so the controller's $\max(|y_0|, |y_1|)$ scale of the aggregated errors is the aggregates'
    size) and `res`, a constant 1 whose error is the stage equations' relative residual; `acc`,
    the running sum of the local error estimates of the summary (the solution's error
    estimate)."""
    y = dict(F=F, C=C, aux=aux, u=dynamics.summary(F, C), res=jnp.ones((), F.dtype),
             acc=jnp.zeros((), F.dtype))
    return dict(y, mag=_aggregate(dynamics, F, C, dynamics.error_floor()))


def _aggregate(dynamics: AbstractModeDynamics, F, C, floor=None):
    r"""The weighted aggregates $\sum_jw^{(i)}_j|F_j|$, $\sum_jw^{(i)}_j|C_j|$ of the controlled
    block (`dynamics.controlled`), plus the floors."""
    weights, k = dynamics.error_weights(), dynamics.controlled
    if k is not None:
        F, C = F[:k, :k], C[:k]
    out = dict(F=contract(jnp.abs(F)[..., None, :], weights),
               C=contract(jnp.abs(C)[..., None, :], weights))
    if floor is not None:
        out = jax.tree_util.tree_map(lambda a, b: a + b.astype(a.dtype), out, floor)
    return out


def contract(x, w):
    r"""$\sum_j x_{\dots j} w_{\dots j}$ over the last axis, as a multiply and a reduction:
    unlike a dot product, its rounding does not depend on how `vmap` batches the call (sweeps
    on one device and sharded over several give bit-identical tables)."""
    return jnp.sum(x * w, axis=-1)


def _derivative(y, kF, kC, aux_rate):
    zero = jax.tree_util.tree_map(jnp.zeros_like, {k: y[k] for k in ("u", "res", "acc", "mag")})
    return dict(zero, F=kF, C=kC, aux=aux_rate)


def _mT(x):
    """Per-mode transpose of an `(a, b, J)` block."""
    return jnp.swapaxes(x, 0, 1)


def _mm(X, Y):
    """Per-mode matrix product of `(a, b, J)` and `(b, c, J)` blocks (elementwise over modes)."""
    if X.shape[1] == 1:
        return X * Y
    if X.shape[1] == 2:  # two products and a sum (no 4-D intermediate)
        return X[:, 0, None, :] * Y[None, 0, :, :] + X[:, 1, None, :] * Y[None, 1, :, :]
    return jnp.sum(X[:, :, None, :] * Y[None, :, :, :], axis=1)


def _self_term(R, F):
    r"""$\sum_iR_iFR_i^\top$ per mode for `R` $(r, n, n, J)$."""
    out = 0.0
    for i in range(R.shape[0]):
        out = out + _mm(_mm(R[i], F), _mT(R[i]))
    return out


def _apply(sys: ModeSystem, F, C):
    """The explicit drift of the blocks $(F, C)$."""
    return _free_rhs(sys, F, C) + sys.forcing, _drift_C(sys, C)


def _per_mode_solve(M, rhs):
    """Solve $M_j x_j = r_j$ for `(k, k, J)` matrices and `(k, c, J)` right-hand sides."""
    M = jnp.broadcast_to(M, M.shape[:2] + rhs.shape[-1:])
    x = jnp.linalg.solve(jnp.moveaxis(M, -1, 0), jnp.moveaxis(rhs, -1, 0))
    return jnp.moveaxis(x, 0, -1)


def _solve_left(A, c, rhs):
    r"""$(I - cA)^{-1}\,\mathrm{rhs}$ per mode."""
    n = A.shape[0]
    if n == 1:
        # A reciprocal and a product: the reciprocal is shared by the primal and its tangents.
        return rhs * (1.0 / (1.0 - c * A))
    if n == 2:
        # Cramer's rule elementwise over the modes (a batched LU of 2x2 blocks costs far more).
        m11, m12, m21, m22 = 1.0 - c * A[0, 0], -c * A[0, 1], -c * A[1, 0], 1.0 - c * A[1, 1]
        inv = 1.0 / (m11 * m22 - m12 * m21)
        return jnp.stack([(m22 * rhs[0] - m12 * rhs[1]) * inv,
                          (m11 * rhs[1] - m21 * rhs[0]) * inv])
    eye = jnp.eye(n, dtype=rhs.dtype)[:, :, None]
    return _per_mode_solve(eye - c * A, rhs)


def _free_inverse(A, R, c, G=None):
    r"""The inverse of the stage operator of the free block,
    $X\mapsto X - c\,(AX + XA^\top + \sum_iR_iXR_i^\top + X_{11}G)$ per mode (`R`
    $(r, n, n, J)$ or `None`, `G` $(n, n, J)$ or `None`: `ModeSystem.F_self`, `F_feedback`),
    as a function of the right-hand side: factored once, applied to as many right-hand
    sides as the stage needs. (For $n = 2$ the stage solves use [`_free_inverse2`][] on the
    three entries of the symmetric blocks instead; [`_free_parts`][] picks.)"""
    n = A.shape[0]
    if n == 1:
        rate = 2.0 * A[0, 0] if R is None else 2.0 * A[0, 0] + jnp.sum(R[:, 0, 0] ** 2, axis=0)
        rate = rate if G is None else rate + G[0, 0]
        inv = 1.0 / (1.0 - c * rate)
        return lambda rhs: rhs * inv
    eye = jnp.eye(n, dtype=A.dtype)
    # vec (row-major): (A X)_{ab} = sum_k A_ak X_kb, (X A^T)_{ab} = sum_k A_bk X_ak.
    K = (A[:, None, :, None, :] * eye[None, :, None, :, None]
         + eye[:, None, :, None, None] * A[None, :, None, :, :])
    if R is not None:
        K = K + jnp.sum(R[:, :, None, :, None, :] * R[:, None, :, None, :, :], axis=0)
    if G is not None:  # the column of X_11
        K = K.at[:, :, 0, 0].add(G)
    K = (eye[:, None, :, None] * eye[None, :, None, :])[..., None] - c * K
    K = K.reshape(n * n, n * n, -1)
    return lambda rhs: _per_mode_solve(K, rhs.reshape(n * n, 1, -1)).reshape(rhs.shape)


def _free_inverse2(A, R, c, G=None):
    r"""[`_free_inverse`][] for $n = 2$ on triples: it maps $(r_{11}, r_{12}, r_{22})$ to
    $(x_{11}, x_{12}, x_{22})$ (the duplicate off-diagonal entry is neither read nor
    written; the right-hand side is symmetric in every stage solve: $AF + FA^\top + \dots + N$
    with $F$, $N$ symmetric), the unknowns eliminated in closed form, elementwise over the
    modes."""
    a11, a12, a21, a22 = A[0, 0], A[0, 1], A[1, 0], A[1, 1]
    if R is None and G is None:
        # x11 = (r11 + 2c A12 x12)/a, x22 = (r22 + 2c A21 x12)/b, then the (1, 2) equation.
        ia, ib = 1.0 / (1.0 - 2.0 * c * a11), 1.0 / (1.0 - 2.0 * c * a22)
        pa, pb = c * a21 * ia, c * a12 * ib
        den = 1.0 / (1.0 - c * (a11 + a22) - 2.0 * c**2 * a12 * a21 * (ia + ib))
        qa, qb = 2.0 * c * a12 * ia, 2.0 * c * a21 * ib

        def apply(rhs):
            r11, r12, r22 = rhs
            x12 = (r12 + pa * r11 + pb * r22) * den
            return r11 * ia + qa * x12, x12, r22 * ib + qb * x12

        return apply
    # The operator on (x11, x12, x22); columns: applied to E11, E12 + E21, E22.
    L = [[2 * a11, 2 * a12, None],
         [a21, a11 + a22, a12],
         [None, 2 * a21, 2 * a22]]
    for i in range(0 if R is None else R.shape[0]):
        r11, r12, r21, r22 = R[i, 0, 0], R[i, 0, 1], R[i, 1, 0], R[i, 1, 1]
        extra = [[r11 * r11, 2 * r11 * r12, r12 * r12],
                 [r11 * r21, r11 * r22 + r12 * r21, r12 * r22],
                 [r21 * r21, 2 * r21 * r22, r22 * r22]]
        L = [[extra[a][b] if L[a][b] is None else L[a][b] + extra[a][b] for b in range(3)]
             for a in range(3)]
    if G is not None:  # the column of x11
        L = [[g if L[a][0] is None else L[a][0] + g] + L[a][1:]
             for a, g in enumerate((G[0, 0], G[0, 1], G[1, 1]))]
    M = [[(1.0 if a == b else 0.0) - c * (0.0 if L[a][b] is None else L[a][b])
          for b in range(3)] for a in range(3)]
    # The inverse by its adjugate (cofactors once per mode, then three dot products per
    # right-hand side).
    cof = [[(M[(b + 1) % 3][(a + 1) % 3] * M[(b + 2) % 3][(a + 2) % 3]
             - M[(b + 1) % 3][(a + 2) % 3] * M[(b + 2) % 3][(a + 1) % 3])
            for b in range(3)] for a in range(3)]  # cof[a][b] = adj(M)[a][b]
    inv_det = 1.0 / (M[0][0] * cof[0][0] + M[0][1] * cof[1][0] + M[0][2] * cof[2][0])
    inv = [[cof[a][b] * inv_det for b in range(3)] for a in range(3)]

    def apply(r):
        return tuple(inv[a][0] * r[0] + inv[a][1] * r[1] + inv[a][2] * r[2]
                     for a in range(3))

    return apply


def _symmetric2(x11, x12, x22):
    r"""The per-mode symmetric $2\times2$ block from its three entries."""
    return jnp.stack([jnp.stack([x11, x12]), jnp.stack([x12, x22])])


def _pack2(X):
    r"""The triple $(x_{11}, x_{12}, x_{22})$ of a per-mode symmetric $2\times2$ block (the
    off-diagonal entry averaged, as the stage solves read it)."""
    return X[0, 0], 0.5 * (X[0, 1] + X[1, 0]), X[1, 1]


def _stage(sys: ModeSystem, c, F_base, C_base):
    r"""The stage derivatives $k$ with $k = f(\zeta + c\,k)$ for the frozen system: exact per
    mode (the system is block triangular: $C$ first, then the Sylvester equation for $F$)."""
    kC = _stage_C(sys, c, C_base)
    return _stage_F(sys, c, F_base, C_base + c * kC), kC


def _stage_C(sys: ModeSystem, c, C_base):
    return _solve_left(sys.A, c, _drift_C(sys, C_base))


def _drift_C(sys: ModeSystem, C):
    """The free–target block's drift $A_jC_j + \bar A_jT_j$."""
    out = _mm(sys.A, C)
    return out if sys.A_target is None else out + _mm(sys.A_target, sys.target)


def _free_parts(sys: ModeSystem, c, n):
    r"""`(inverse, rhs, pack, unpack)` for the free block's stage solves: the factored inverse
    of the stage operator, the right-hand side without the forcing (`rhs(sys, F_base, zC)`),
    and the maps from a per-mode block to what they work on and back — triples for $n = 2$
    (symmetric $2\times2$ blocks: the duplicate entry is not computed), the blocks otherwise."""
    if n == 2:
        return (_free_inverse2(sys.generator_free, sys.F_self, c, sys.F_feedback), _free_rhs2,
                _pack2, lambda K: _symmetric2(*K))
    return (_free_inverse(sys.generator_free, sys.F_self, c, sys.F_feedback), _free_rhs,
            lambda X: X, lambda X: X)


def _stage_F(sys: ModeSystem, c, F_base, zC):
    inverse, rhs, pack, unpack = _free_parts(sys, c, F_base.shape[0])
    return unpack(inverse(jax.tree_util.tree_map(jnp.add, rhs(sys, F_base, zC),
                                                 pack(sys.forcing))))


def _free_rhs2(sys: ModeSystem, F_base, zC):
    r"""[`_free_rhs`][] for $n = 2$ as the triple $(r_{11}, r_{12}, r_{22})$ of the symmetric
    result, from the three entries of $F$ (the duplicate entry is not computed)."""
    A = sys.generator_free
    f11, f12, f22 = _pack2(F_base)

    def two_sym(M11, M12, M21, M22):
        # The triple of M + M^T.
        return 2.0 * M11, M12 + M21, 2.0 * M22

    r = two_sym(A[0, 0] * f11 + A[0, 1] * f12, A[0, 0] * f12 + A[0, 1] * f22,
                A[1, 0] * f11 + A[1, 1] * f12, A[1, 0] * f12 + A[1, 1] * f22)
    if sys.A_target is not None:
        AtC = _mm(sys.A_target, _mT(zC))
        r = tuple(a + b for a, b in zip(r, two_sym(AtC[0, 0], AtC[0, 1], AtC[1, 0], AtC[1, 1])))
    if sys.F_self is not None:
        for R in sys.F_self:
            # R F R^T from the triple: rows of R F, then the upper triangle.
            g11, g12 = R[0, 0] * f11 + R[0, 1] * f12, R[0, 0] * f12 + R[0, 1] * f22
            g21, g22 = R[1, 0] * f11 + R[1, 1] * f12, R[1, 0] * f12 + R[1, 1] * f22
            r = (r[0] + g11 * R[0, 0] + g12 * R[0, 1], r[1] + g11 * R[1, 0] + g12 * R[1, 1],
                 r[2] + g21 * R[1, 0] + g22 * R[1, 1])
    if sys.F_feedback is not None:
        G = sys.F_feedback
        r = (r[0] + f11 * G[0, 0], r[1] + f11 * G[0, 1], r[2] + f11 * G[1, 1])
    return r


def _free_rhs(sys: ModeSystem, F_base, zC):
    r"""The drift of the free block without the forcing, $AF + FA^\top + \dots$ at `F_base`
    with the free–target block `zC`: the explicit drift ([`_apply`][]) and the stage
    right-hand side (the stage's base value, $C$ at its stage value)."""
    AF = _mm(sys.generator_free, F_base)
    rhs = AF + _mT(AF)
    if sys.A_target is not None:
        AtC = _mm(sys.A_target, _mT(zC))
        rhs = rhs + AtC + _mT(AtC)
    if sys.F_self is not None:
        rhs = rhs + _self_term(sys.F_self, F_base)
    if sys.F_feedback is not None:
        rhs = rhs + F_base[:1, :1] * sys.F_feedback
    return rhs


# Kværnø's ESDIRK 5(4) tableau (diffrax.Kvaerno5) as Python floats (weakly typed: they keep a
# float32 state float32), shared with the finite-data solver: nodes, the strictly lower rows of
# the stages 1..6, the diagonal, the solution and error weights.
_KV5 = diffrax.Kvaerno5.tableau
KV5_C = (0.0, *map(float, _KV5.c))
KV5_A = [tuple(map(float, row)) for row in _KV5.a_lower]
KV5_DIAG = tuple(map(float, _KV5.a_diagonal))
KV5_B = tuple(map(float, _KV5.b_sol))
KV5_BERR = tuple(map(float, _KV5.b_error))

_S = len(KV5_C)
_A_FULL = np.zeros((_S, _S))  # row i: stage i's coefficients of k_0 .. k_{i-1}
for _i, _row in enumerate(KV5_A):
    _A_FULL[_i + 1, :len(_row)] = _row
_ALPHA = KV5_DIAG[1]
assert np.allclose(KV5_DIAG[1:], _ALPHA)


class AbstractKvaerno5Solver(diffrax.AbstractAdaptiveSolver):
    """What hsgd's specialised solvers on Kværnø's 5(4) tableau share: any term, local linear
    dense output (they step onto every output time), order 5 and a fifth-order error estimate
    for the controller."""

    term_structure = diffrax.AbstractTerm
    interpolation_cls = diffrax.LocalLinearInterpolation

    def order(self, terms):
        return 5

    def error_order(self, terms):
        return 5

    def func(self, terms, t0, y0, args):
        return terms.vf(t0, y0, args)


class StructuredKvaerno5(AbstractKvaerno5Solver):
    r"""Kværnø's L-stable ESDIRK 5(4) method with structured stage solves, for an
    [`AbstractModeDynamics`][] passed as `args` (see the module docstring; SPEC §6).

    Each implicit stage solves the per-mode blocks exactly for a given summary and finds the
    summary by `newton_steps` Newton corrections. One pass over the modes evaluates the stage
    at the current summary together with its derivatives along the summary's few directions
    (forward mode, fused into the same pass): the residual's Jacobian, exact for this stage,
    and the tangent of the stage derivative, with which the stage derivative is carried to the
    corrected summary linearly — no second pass. For dynamics whose coupling is affine in the
    summary at a fixed time (least squares, for any schedule) one correction is exact;
    otherwise the remaining residual, estimated from the contraction of the last two
    corrections, enters the error estimate (the step is rejected if it exceeds the tolerance).
    The stages are unrolled (the stage combinations are fixed-coefficient sums that fuse with
    the passes that read them). Differentiable by reverse mode (the iteration count is fixed;
    the Jacobian and the tangents only steer the iteration and are held constant, so the
    derivative is that of the implicit function theorem at the solution and needs no second
    derivatives), with the checkpointing of diffrax's `RecursiveCheckpointAdjoint`.

    **Arguments:**

    - `newton_steps`: Newton corrections per stage (default: 1 when the dynamics are `affine`
      in their summary, else 2).
    - `unroll`: trace the stages one after the other (True) or as one loop body (False).
      Unrolled runs faster (fewer, fused passes: 1.4x on least squares at $10^4$ modes) and
      compiles slower (its gradient about 2x: 21 s against 11 s for least squares, 40 s
      against 20 s for logistic regression, on 2 cores). Default: unrolled when the dynamics
      are `affine` (one cheap correction per stage), else a loop (two corrections through
      the loss's moments: the unrolled graph is large, the runtime gain 15%).
    """

    newton_steps: int | None = eqx.field(static=True, default=None)
    unroll: bool | None = eqx.field(static=True, default=None)

    def init(self, terms, t0, t1, y0, args):
        return _first_derivative(args, t0, y0)

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        dyn: AbstractModeDynamics = args
        dtype = y0["F"].dtype
        h = jnp.asarray(t1 - t0).astype(dtype)
        c = h * _ALPHA
        newton_steps = self.newton_steps
        if newton_steps is None:
            newton_steps = 1 if dyn.affine else 2
        # First same as last: the tableau is stiffly accurate, so the last stage of the previous
        # step is f(t0, y0) (recomputed after a jump).
        if made_jump is False:
            k0, s_k0 = solver_state
        else:
            k0, s_k0 = jax.lax.cond(made_jump, lambda: _first_derivative(dyn, t0, y0),
                                    lambda: solver_state)
        u0 = y0["u"]
        nu = u0.shape[0]
        ks, sks = [k0], [s_k0]
        res_max = jnp.zeros((), dtype)

        # The derivatives along the summary (the Jacobian and the tangents of the blocks) are
        # differentiated when the dynamics are affine: the one correction from the predictor
        # is then exact as a function of the parameters too. Otherwise they only steer the
        # iteration and are held constant (see the class docstring).
        steer = (lambda a: a) if dyn.affine else jax.lax.stop_gradient

        def linearized(x, ti, base):
            """The stage's blocks at the summary `x` and their derivatives along each direction
            of it (forward mode: one pass), with the summaries of both. A derivative that is zero
            by structure is None."""
            basis = jnp.eye(x.shape[0], dtype=dtype)
            if dyn.forcing_only:
                sys = dyn.system(ti, x[:nu], x[nu:])
                kC = _stage_C(sys, c, base["C"])
                zC = base["C"] + c * kC

                def blocks(x_):
                    kF = _stage_F(dyn.system(ti, x_[:nu], x_[nu:]), c, base["F"], zC)
                    return kF, dyn.summary_linear(kF, kC)

                (kF, s_k), (dkF, ds_k) = jax.vmap(lambda v: jax.jvp(blocks, (x,), (v,)),
                                                  out_axes=(None, 0))(basis)
                dkF, ds_k = steer((dkF, ds_k))
                return dict(F=kF, C=kC, aux=sys.aux_rate), dict(F=dkF, C=None, aux=None), s_k, ds_k

            def blocks(x_):
                sys = dyn.system(ti, x_[:nu], x_[nu:])
                kF, kC = _stage(sys, c, base["F"], base["C"])
                k_ = dict(F=kF, C=kC, aux=sys.aux_rate)
                return k_, dyn.summary_linear(kF, kC)

            (k, s_k), (dk, ds_k) = jax.vmap(lambda v: jax.jvp(blocks, (x,), (v,)),
                                            out_axes=(None, 0))(basis)
            dk, ds_k = steer((dk, ds_k))
            return k, dk, s_k, ds_k

        def solve_stage_factored(ti, base, s_base, x, sys):
            """The stage of forcing-only dynamics with a factored forcing (`ModeSystem`): the
            per-mode blocks are affine in the forcing's coefficients phi, k_F = K_0 +
            sum_p phi_p K_p (one pass over the modes solves K_0 and every K_p with one
            factorisation), so the stage's summary solves x = s_base + c (s(K_0, k_C) +
            sum_p phi_p(x) s(K_p)) — Newton in its few unknowns, no pass over the modes."""
            kC = _stage_C(sys, c, base["C"])
            # (on triples for 2x2 blocks until the stage derivative is assembled)
            inverse, rhs, pack, full = _free_parts(sys, c, base["F"].shape[0])
            K0 = inverse(rhs(sys, base["F"], base["C"] + c * kC))
            Kp = [inverse(pack(b)) for b in sys.forcing_basis]
            s0 = dyn.summary_linear(full(K0), kC)
            zero_C = jnp.zeros_like(kC)
            sp = jnp.stack([dyn.summary_linear(full(K), zero_C) for K in Kp])  # (p, nu)
            aux = base["aux"] + c * sys.aux_rate

            def coef(x_):
                return dyn.system(ti, x_[:nu], x_[nu:]).forcing_coef

            def stage_value(x_):
                return jnp.concatenate([s_base + c * (s0 + coef(x_) @ sp), aux])

            # Newton, not differentiated; then one more correction that carries the derivative:
            # with the Jacobian held constant its derivative is the implicit function
            # theorem's at the solution, J^{-1} d_theta G(x*) (exact for an affine phi), and
            # reverse mode goes neither through the iterations nor through jacfwd.
            deltas = []
            eye = jnp.eye(x.shape[0], dtype=dtype)
            xs = jax.lax.stop_gradient(x)
            for _ in range(newton_steps):
                jac = jax.lax.stop_gradient(eye - jax.jacfwd(stage_value)(xs))
                delta = -_small_solve(jac, jax.lax.stop_gradient(xs - stage_value(xs)))
                xs = xs + delta
                deltas.append(jnp.max(jnp.abs(delta)))
            x = xs - _small_solve(jac, xs - stage_value(xs))
            phi = coef(x)
            kF = K0
            for p_, K in enumerate(Kp):
                kF = jax.tree_util.tree_map(lambda a, b, w=phi[p_]: a + w * b, kF, K)
            k = dict(F=full(kF), C=kC, aux=sys.aux_rate)
            return k, s0 + phi @ sp, _residual(deltas, x)

        def _residual(deltas, x):
            """The stage equation's relative residual left after the Newton corrections."""
            scale = jnp.max(jnp.abs(x))
            scale = jnp.where(scale > 0, scale, 1.0)
            if dyn.affine and newton_steps == 1:
                return jnp.zeros((), dtype)  # exact: the stage equation is affine
            if newton_steps == 1:
                return deltas[-1] / scale  # the size of the only correction (conservative)
            # Contraction of the last two corrections: the remaining error is about
            # theta |delta| / (1 - theta) (conservative for Newton's quadratic rate).
            theta = deltas[-1] / jnp.where(deltas[-2] > 0, deltas[-2], 1.0)
            theta = jnp.where(deltas[-2] > 0, theta, 0.0)
            res = jnp.minimum(theta, 1.0) * deltas[-1] / (1.0 - jnp.minimum(theta, 0.9))
            return res / scale

        def solve_stage(ti, base, s_base, x):
            """Newton on the stage's summary from the predictor `x`: the stage derivative, its
            summary and the relative residual left."""
            if dyn.forcing_only:
                sys = dyn.system(ti, x[:nu], x[nu:])
                if sys.forcing_basis is not None:
                    return solve_stage_factored(ti, base, s_base, x, sys)
            deltas = []
            for _ in range(newton_steps):
                k, dk, s_k, ds_k = linearized(x, ti, base)
                r = x - jnp.concatenate([s_base + c * s_k, base["aux"] + c * k["aux"]])
                # Row v of dz is the derivative of the stage's summary along direction v.
                daux = jnp.zeros((x.shape[0], x.shape[0] - nu), dtype) if dk["aux"] is None \
                    else dk["aux"]
                dz = jnp.concatenate([c * ds_k, c * daux], axis=1)
                jac = jnp.eye(x.shape[0], dtype=dtype) - dz.T
                delta = -_small_solve(jac, r)
                x = x + delta
                k = {name: k[name] if dk[name] is None else k[name] + _along(dk[name], delta)
                     for name in k}
                s_k = s_k + _along(ds_k, delta)
                deltas.append(jnp.max(jnp.abs(delta)))
            return k, s_k, _residual(deltas, x)

        names = ("F", "C", "aux")
        unroll = dyn.affine if self.unroll is None else self.unroll
        # The stage bases are stored when the free block's stage operator is a full one
        # (`_stored`: on CPU, each of the stage's outputs otherwise recomputes them from the
        # previous stages' derivatives).
        shape = jax.eval_shape(dyn.system, t0, u0, y0["aux"])
        stored = shape.F_self is not None or shape.F_feedback is not None
        if unroll:
            for i in range(1, _S):
                ti = t0 + KV5_C[i] * (t1 - t0)
                row = KV5_A[i - 1]
                base = {name: y0[name] + h * _combine(row, [k[name] for k in ks])
                        for name in names}
                if stored:
                    base = _stored(base, h)
                s_base = u0 + h * _combine(row, sks)
                # Predictor: the previous stage's derivative over the implicit part of this
                # stage.
                x = jnp.concatenate([s_base + c * sks[-1], base["aux"] + c * ks[-1]["aux"]])
                k, s_k, res = solve_stage(ti, base, s_base, x)
                res_max = jnp.maximum(res_max, res)
                ks.append(k)
                sks.append(s_k)
            y1 = {name: base[name] + c * ks[-1][name] for name in names}
            u1 = s_base + c * sks[-1]
        else:
            # The same stages in a loop (one traced copy of the stage: compiles several times
            # faster; the stage derivatives are stacked, the combinations read all of them
            # with the zero coefficients of the later stages).
            table = jnp.asarray(_A_FULL, dtype)
            nodes = jnp.asarray(KV5_C, dtype)

            def body(i, carry):
                K, SK, res_max, _ = carry
                row = table[i]
                base = {name: y0[name] + h * _combine_stacked(row, K[name]) for name in names}
                if stored:
                    base = _stored(base, h)
                s_base = u0 + h * _combine_stacked(row, SK)
                x = jnp.concatenate([s_base + c * SK[i - 1], base["aux"] + c * K["aux"][i - 1]])
                k, s_k, res = solve_stage(t0 + nodes[i] * (t1 - t0), base, s_base, x)
                K = {name: K[name].at[i].set(k[name]) for name in names}
                z = ({name: base[name] + c * k[name] for name in names}, s_base + c * s_k)
                return K, SK.at[i].set(s_k), jnp.maximum(res_max, res), z

            K = {name: jnp.zeros((_S,) + k0[name].shape, dtype).at[0].set(k0[name])
                 for name in names}
            SK = jnp.zeros((_S, nu), dtype).at[0].set(s_k0)
            z0 = ({name: y0[name] for name in names}, u0)
            K, SK, res_max, (y1, u1) = jax.lax.fori_loop(1, _S, body, (K, SK, res_max, z0))
            ks = [{name: K[name][j] for name in names} for j in range(_S)]
            sks = [SK[j] for j in range(_S)]
        # The tableau is stiffly accurate: y1 is the last stage value itself. (Summing
        # y0 + h sum b_i k_i instead leaves eps |y0| of a stiff mode that has decayed, and the
        # carried f(t1, y1) would then inject it back times h lambda at the next step.)
        # u1 is the summary of y1 (the last stage's, solved).
        err = {name: h * _combine(KV5_BERR, [k[name] for k in ks]) for name in names}
        local = jnp.max(jnp.abs(h * _combine(KV5_BERR, sks)))
        y1 = dict(y1, u=u1, res=y0["res"], acc=y0["acc"] + local,
                  mag=_aggregate(dyn, y1["F"], y1["C"], dyn.error_floor()))
        # Only aggregates are controlled: the per-mode errors weighted as the outputs weigh
        # them (a mode that carries nothing of B may be inaccurate relative to itself), the
        # auxiliary scalars, and the stage equations' residual. (The zeros of the per-mode
        # leaves are skipped by `error_norm`.)
        err = dict(F=jnp.zeros_like(err["F"]), C=jnp.zeros_like(err["C"]), aux=err["aux"],
                   u=jnp.zeros_like(u1), res=res_max, acc=jnp.zeros((), dtype),
                   mag=_aggregate(dyn, err["F"], err["C"]))
        return y1, err, dict(y0=y0, y1=y1), (ks[-1], sks[-1]), diffrax.RESULTS.successful


def error_norm(tree):
    """The max norm of the leaves the error control reads (`aux`, `res`, `mag`): the per-mode
    leaves' errors are zero by construction, so skipping them saves passes over the modes."""
    return optx.max_norm({k: tree[k] for k in ("aux", "res", "mag")})


def checked_times(ts, rtol, atol, dtype):
    """`ts` as a 1-D array of `dtype`, with a `ValueError` for an empty or non-1-D `ts` or a
    tolerance that is given but not positive (the common argument checks of the per-mode
    cells' `ode`)."""
    ts = jnp.asarray(ts, dtype=dtype)
    if ts.ndim != 1 or ts.shape[0] == 0:
        raise ValueError(f"ts must be a non-empty 1-D array of times, got shape {ts.shape}")
    for name, tol in (("rtol", rtol), ("atol", atol)):
        if tol is not None and not (float(tol) > 0):
            raise ValueError(f"{name} must be a positive number, got {tol!r}")
    return ts


def default_tolerances(rtol, atol, dtype, atol64=1e-18):
    """`(rtol, atol)` as arrays of `dtype` (traced, so a new tolerance does not recompile),
    defaults $10^{-7}$ and `atol64` in float64, $10^{-5}$ and $10^{-8}$ in float32."""
    single = dtype == jnp.float32
    rtol = (1e-5 if single else 1e-7) if rtol is None else float(rtol)
    atol = (1e-8 if single else atol64) if atol is None else float(atol)
    return jnp.asarray(rtol, dtype), jnp.asarray(atol, dtype)


def min_step(ts):
    """The controller's `dtmin`: a finite-time blow-up (e.g. phase retrieval past its stable
    stepsize) would otherwise shrink the step towards zero forever; forced minimal steps run
    into the blow-up event instead."""
    return 1e-9 * jnp.maximum(ts[-1], 1.0)


def output_controller(stepsize_controller, ts, rtol, atol):
    """`stepsize_controller` (default: a PID controller on [`error_norm`][] with
    [`min_step`][]) clipped to step onto every output time in `ts` — the solver's dense output
    is linear between steps."""
    if stepsize_controller is None:
        stepsize_controller = diffrax.PIDController(rtol=rtol, atol=atol, norm=error_norm,
                                                    dtmin=min_step(ts))
    if not isinstance(stepsize_controller, diffrax.ClipStepSizeController):
        stepsize_controller = diffrax.ClipStepSizeController(stepsize_controller, step_ts=ts)
    return stepsize_controller


def _stored(tree, h):
    r"""`tree`, computed into memory once on CPU (elsewhere unchanged). XLA:CPU fuses cheap
    elementwise producers into every consumer (it has no sibling multi-output fusion, and it
    removes `optimization_barrier`s before fusing), so a stage base read by the several
    outputs of a full per-mode solve (e.g. the $3\times3$ stage operator of momentum at
    finite $d$: the three entries of the stage block and the summaries) is recomputed, from
    all previous stage derivatives, in each of them. A division — an operation XLA does not
    duplicate — by an exact 1 it cannot fold ($1 + 0\cdot h$) makes it a stored value,
    computed once. DANA-like momentum at finite $d$ on $10^4$ modes: 0.32 s → 0.27 s, 2.9×
    SGD's ODE instead of 3.4× (benchmarks/momentum_streaming.py); the same steps, results
    equal to rounding (6e-14 relative: XLA contracts the fused arithmetic differently)."""
    one = 1.0 + 0.0 * jax.lax.stop_gradient(h)

    def cpu(t):
        return jax.tree_util.tree_map(lambda x: x / one.astype(x.dtype), t)

    return jax.lax.platform_dependent(tree, cpu=cpu, default=lambda t: t)


def _combine(coeffs, xs):
    r"""$\sum_i c_i x_i$ for Python-float coefficients, skipping zeros (unrolled: elementwise over
    the modes, so XLA fuses it into the passes that read it, and its rounding does not depend
    on batching)."""
    out = None
    for a, x in zip(coeffs, xs):
        if a == 0.0:
            continue
        term = a * x
        out = term if out is None else out + term
    return jnp.zeros_like(xs[0]) if out is None else out


def _combine_stacked(coeffs, stacked):
    r"""$\sum_i c_i x_i$ over the leading (stage) axis for traced coefficients, unrolled."""
    out = coeffs[0] * stacked[0]
    for i in range(1, stacked.shape[0]):
        out = out + coeffs[i] * stacked[i]
    return out


def _along(d, delta):
    r"""$\sum_v d_v\,\delta_v$ over the leading (direction) axis, unrolled."""
    out = d[0] * delta[0]
    for v in range(1, delta.shape[0]):
        out = out + d[v] * delta[v]
    return out


def _small_solve(M, r):
    """Solve the small dense system $Mx = r$ (closed forms for one or two unknowns)."""
    n = r.shape[0]
    if n == 0:
        return r
    if n == 1:
        return r / M[0, 0]
    if n == 2:
        det = M[0, 0] * M[1, 1] - M[0, 1] * M[1, 0]
        return jnp.stack([M[1, 1] * r[0] - M[0, 1] * r[1],
                          M[0, 0] * r[1] - M[1, 0] * r[0]]) / det
    return jnp.linalg.solve(M, r)


def _first_derivative(dyn: AbstractModeDynamics, t, y):
    """`(f(t, y), linear summary of it)`: the solver state carried between steps."""
    sys = dyn.system(t, y["u"], y["aux"])
    kF, kC = _apply(sys, y["F"], y["C"])
    return dict(F=kF, C=kC, aux=sys.aux_rate), dyn.summary_linear(kF, kC)
