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
solved by a simplified Newton iteration whose Jacobian (forward-mode, a few passes over the
modes) is formed once per step. No $J\times J$ (or $Jp^2\times Jp^2$) Jacobian, cost $O(J)$ per
pass, unconditionally stable in the stiff modes (L-stable: $\gamma\lambda_{\max}h$ may be
$10^{12}$).

Error control. The state is held in coordinates where the quantity that decays is a state
variable of its own (for SGD, moments of $X - X^*$ instead of $X$: the risk is then not a
difference of large numbers). The controller holds to `rtol`/`atol` (max norm) the local errors
of the **aggregates the outputs are made of** — $\sum_j w_j|\delta F_j|$ against
$\sum_j w_j|F_j|$ for the weightings of the dynamics, e.g. $\omega_j\lambda_j$ (the matrix
$B$, hence the risk) and $\omega_j$ (the distance) — entrywise, without cancellation between
modes. A mode that has decayed to nothing does not hold the step back, merging or splitting
modes does not change the step count, and no mode's error can hide in a difference. The Newton
iteration's remaining relative residual on the summary enters the estimate too, so a step
whose stage equations were not solved to `rtol` is rejected.
"""

import abc
from typing import NamedTuple

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float


class ModeSystem(NamedTuple):
    r"""The per-mode linear system at one $(t, u, a)$ (see the module docstring), with the mode
    axis **last** (so that sums over modes are contiguous reductions and the per-mode $n\times n$
    algebra is a few vector operations): `A` $(n, n, J)$, `A_target` $(n, m^*, J)$, `target`
    $(m^*, m^*, J)$, `forcing` $N_j$ $(n, n, J)$ and the auxiliary rates `aux_rate` $(k,)$. The
    last axis may be 1 where a term is shared by all modes."""

    A: Float[Array, "n n J"]
    A_target: Float[Array, "n ms J"]
    target: Float[Array, "ms ms J"]
    forcing: Float[Array, "n n J"]
    aux_rate: Float[Array, " k"]


class AbstractModeDynamics(eqx.Module):
    r"""A per-mode deterministic equivalent in the form [`StructuredKvaerno5`][] solves.

    The state is a dict `F` $(n, n, J)$, `C` $(n, m^*, J)$, `aux` $(k,)$ (plus the solver's
    bookkeeping leaves; the mode axis is last). Subclasses give the summary (affine in `F`, `C`),
    the linear system, the error weights, and `affine`: whether the system is affine in the
    summary at a fixed time (then one Newton correction per stage is exact).
    """

    affine: eqx.AbstractVar[bool]

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

    def field(self, t, y):
        """The right-hand side $dy/dt$ (explicit), with zero rates for the bookkeeping leaves."""
        sys = self.system(t, self.summary(y["F"], y["C"]), y["aux"])
        kF, kC = _apply(sys, y["F"], y["C"])
        return _derivative(y, kF, kC, sys.aux_rate)


def initial_state(dynamics: AbstractModeDynamics, F, C, aux):
    r"""The solver's state from the per-mode blocks (mode axis last) and the auxiliary scalars,
    with three bookkeeping leaves the error control reads (their own values are not integrated):
    `mag`, the weighted aggregates of $|F|$ and $|C|$ (so the controller's $\max(|y_0|, |y_1|)$
    scale of the aggregated errors is the aggregates' size); `res`, a constant 1 whose error is
    the stage equations' relative residual; `acc`, the running sum of the local error
    estimates of the summary (the solution's error estimate)."""
    y = dict(F=F, C=C, aux=aux, res=jnp.ones((), F.dtype), acc=jnp.zeros((), F.dtype))
    return dict(y, mag=_aggregate(dynamics.error_weights(), F, C))


def _aggregate(weights, F, C):
    return dict(F=contract(jnp.abs(F)[..., None, :], weights),
                C=contract(jnp.abs(C)[..., None, :], weights))


def contract(x, w):
    r"""$\sum_j x_{\dots j} w_{\dots j}$ over the last axis, as a multiply and a reduction:
    unlike a dot product, its rounding does not depend on how `vmap` batches the call (sweeps
    on one device and sharded over several give bit-identical tables)."""
    return jnp.sum(x * w, axis=-1)


def _derivative(y, kF, kC, aux_rate):
    zero = jax.tree_util.tree_map(jnp.zeros_like, {k: y[k] for k in ("res", "acc", "mag")})
    return dict(zero, F=kF, C=kC, aux=aux_rate)


def _mT(x):
    """Per-mode transpose of an `(a, b, J)` block."""
    return jnp.swapaxes(x, 0, 1)


def _mm(X, Y):
    """Per-mode matrix product of `(a, b, J)` and `(b, c, J)` blocks (elementwise over modes)."""
    if X.shape[1] == 1:
        return X * Y
    return jnp.sum(X[:, :, None, :] * Y[None, :, :, :], axis=1)


def _apply(sys: ModeSystem, F, C):
    """The explicit drift of the blocks $(F, C)$."""
    kC = _mm(sys.A, C) + _mm(sys.A_target, sys.target)
    AF = _mm(sys.A, F)
    AtC = _mm(sys.A_target, _mT(C))
    return AF + _mT(AF) + AtC + _mT(AtC) + sys.forcing, kC


def _per_mode_solve(M, rhs):
    """Solve $M_j x_j = r_j$ for `(k, k, J)` matrices and `(k, c, J)` right-hand sides."""
    M = jnp.broadcast_to(M, M.shape[:2] + rhs.shape[-1:])
    x = jnp.linalg.solve(jnp.moveaxis(M, -1, 0), jnp.moveaxis(rhs, -1, 0))
    return jnp.moveaxis(x, 0, -1)


def _solve_left(A, c, rhs):
    r"""$(I - cA)^{-1}\,\mathrm{rhs}$ per mode."""
    n = A.shape[0]
    if n == 1:
        return rhs / (1.0 - c * A)
    eye = jnp.eye(n, dtype=rhs.dtype)[:, :, None]
    return _per_mode_solve(eye - c * A, rhs)


def _solve_sylvester(A, c, rhs):
    r"""$X$ with $X - c(AX + XA^\top) = \mathrm{rhs}$ per mode."""
    n = A.shape[0]
    if n == 1:
        return rhs / (1.0 - 2.0 * c * A)
    eye = jnp.eye(n, dtype=rhs.dtype)
    # vec (row-major): (A X)_{ab} = sum_k A_ak X_kb, (X A^T)_{ab} = sum_k A_bk X_ak.
    K = ((eye[:, None, :, None] * eye[None, :, None, :])[..., None]
         - c * (A[:, None, :, None, :] * eye[None, :, None, :, None]
                + eye[:, None, :, None, None] * A[None, :, None, :, :]))
    K = K.reshape(n * n, n * n, -1)
    x = _per_mode_solve(K, rhs.reshape(n * n, 1, -1))
    return x.reshape(rhs.shape)


def _stage(sys: ModeSystem, c, F_base, C_base):
    r"""The stage derivatives $k$ with $k = f(\zeta + c\,k)$ for the frozen system: exact per
    mode (the system is block triangular: $C$ first, then the Sylvester equation for $F$)."""
    kC = _solve_left(sys.A, c, _mm(sys.A, C_base) + _mm(sys.A_target, sys.target))
    zC = C_base + c * kC
    AF = _mm(sys.A, F_base)
    AtC = _mm(sys.A_target, _mT(zC))
    kF = _solve_sylvester(sys.A, c, AF + _mT(AF) + AtC + _mT(AtC) + sys.forcing)
    return kF, kC


# Kværnø's ESDIRK 5(4) tableau (diffrax.Kvaerno5) as Python floats (weakly typed: they keep a
# float32 state float32), shared with the finite-data solver: nodes, the strictly lower rows of
# the stages 1..6, the diagonal, the solution and error weights.
_KV5 = diffrax.Kvaerno5.tableau
KV5_C = (0.0, *map(float, _KV5.c))
KV5_A = [tuple(map(float, row)) for row in _KV5.a_lower]
KV5_DIAG = tuple(map(float, _KV5.a_diagonal))
KV5_B = tuple(map(float, _KV5.b_sol))
KV5_BERR = tuple(map(float, _KV5.b_error))

# The same as arrays for the stage loop here: stage i uses row i of `_A` (zero from the diagonal
# on) and the diagonal coefficient `_ALPHA` (the same for every implicit stage).
_S = len(KV5_C)
_C = np.array(KV5_C)
_A = np.zeros((_S, _S))
for _i, _row in enumerate(KV5_A):
    _A[_i + 1, :len(_row)] = _row
_ALPHA = KV5_DIAG[1]
assert np.allclose(KV5_DIAG[1:], _ALPHA)
_B = np.array(KV5_B)
_BERR = np.array(KV5_BERR)


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


def _weighted(coeffs, stacked):
    r"""$\sum_i c_i k_i$ over the leading (stage) axis of every leaf."""
    def combine(k):
        # Unrolled over the (few) stages: elementwise over the modes, so XLA fuses it into one
        # pass and its rounding does not depend on batching.
        coeffs_ = jnp.asarray(coeffs, k.dtype)
        out = coeffs_[0] * k[0]
        for i in range(1, k.shape[0]):
            out = out + coeffs_[i] * k[i]
        return out

    return jax.tree_util.tree_map(combine, stacked)


class StructuredKvaerno5(AbstractKvaerno5Solver):
    r"""Kværnø's L-stable ESDIRK 5(4) method with structured stage solves, for an
    [`AbstractModeDynamics`][] passed as `args` (see the module docstring; SPEC §6).

    Each implicit stage solves the per-mode blocks exactly for a given summary and finds the
    summary by `newton_steps` simplified-Newton corrections (Jacobian by forward mode at the
    first implicit stage of each step, reused by the others). For dynamics whose coupling is
    affine in the summary at a fixed time (least squares at a constant stepsize) one correction
    is exact; otherwise the remaining residual enters the error estimate (the step is rejected
    if it exceeds the tolerance). The summaries of stage combinations are formed from the
    summaries of the stage derivatives (the summary is affine), so a stage costs two passes
    over the modes per correction. Differentiable by reverse mode (the iteration count is
    fixed), with the checkpointing of diffrax's `RecursiveCheckpointAdjoint`.

    **Arguments:**

    - `newton_steps`: simplified-Newton corrections per stage (default: 1 when the dynamics are
      `affine` in their summary, else 2).
    """

    newton_steps: int | None = eqx.field(static=True, default=None)

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
            k0, s_k0, u0 = solver_state
        else:
            k0, s_k0, u0 = jax.lax.cond(made_jump, lambda: _first_derivative(dyn, t0, y0),
                                        lambda: solver_state)
        nu = u0.shape[0]
        stacked = jax.tree_util.tree_map(
            lambda k: jnp.zeros((_S,) + k.shape, k.dtype).at[0].set(k), k0)
        sums = jnp.zeros((_S, nu), dtype).at[0].set(s_k0)

        def residual(x, ti, base, s_base):
            u, aux = x[:nu], x[nu:]
            sys = dyn.system(ti, u, aux)
            kF, kC = _stage(sys, c, base["F"], base["C"])
            k = _derivative(base, kF, kC, sys.aux_rate)
            s_k = dyn.summary_linear(kF, kC)
            z = jnp.concatenate([s_base + c * s_k, base["aux"] + c * k["aux"]])
            return x - z, (k, s_k)

        def stage_inputs(i, stacked, sums):
            row = jnp.asarray(_A)[i].astype(dtype)
            base = jax.tree_util.tree_map(lambda y, k: y + h * k, y0, _weighted(row, stacked))
            s_base = u0 + h * contract(sums.T, row)
            # Predictor: the previous stage's derivative over the implicit part of this stage.
            x = jnp.concatenate([s_base + c * sums[i - 1], base["aux"] + c * stacked["aux"][i - 1]])
            return t0 + jnp.asarray(_C)[i].astype(dtype) * (t1 - t0), base, s_base, x

        ti, base, s_base, x = stage_inputs(1, stacked, sums)
        # The Jacobian only steers the iteration (at convergence the stage solves
        # x = z(x) whatever it is), so it is held constant under differentiation: reverse mode
        # then differentiates the corrections like the implicit function theorem and needs no
        # second derivatives of the loss's moments.
        jac = jax.jacfwd(lambda v: residual(v, ti, base, s_base)[0])(jax.lax.stop_gradient(x))
        jac_inv = jax.lax.stop_gradient(jnp.linalg.inv(jac))

        def body(i, carry):
            stacked, sums, res_max, _ = carry
            ti, base, s_base, x = stage_inputs(i, stacked, sums)

            def newton(_, carry):
                # Evaluate at x (the stage derivative and the residual there), then correct x;
                # the last pass's evaluation is the stage's (one traced copy of the system).
                x, _, _ = carry
                r, k = residual(x, ti, base, s_base)
                return x - contract(jac_inv, r), r, k

            shapes = jax.eval_shape(lambda: residual(x, ti, base, s_base))
            init = (x, *jax.tree_util.tree_map(lambda a: jnp.zeros(a.shape, a.dtype), shapes))
            _, r, (k, s_k) = jax.lax.fori_loop(0, newton_steps + 1, newton, init)
            scale = jnp.max(jnp.abs(x))
            res = jnp.max(jnp.abs(r)) / jnp.where(scale > 0, scale, 1.0)
            stacked = jax.tree_util.tree_map(lambda a, b: a.at[i].set(b), stacked, k)
            z = jax.tree_util.tree_map(lambda b, kk: b + c * kk, base, k)
            return stacked, sums.at[i].set(s_k), jnp.maximum(res_max, res), z

        stacked, sums, res_max, y1 = jax.lax.fori_loop(
            1, _S, body, (stacked, sums, jnp.zeros((), dtype), y0))
        # The tableau is stiffly accurate: y1 is the last stage value itself. (Summing
        # y0 + h sum b_i k_i instead leaves eps |y0| of a stiff mode that has decayed, and the
        # carried f(t1, y1) would then inject it back times h lambda at the next step.)
        err = jax.tree_util.tree_map(lambda k: h * k, _weighted(_BERR, stacked))
        local = jnp.max(jnp.abs(h * contract(sums.T, jnp.asarray(_BERR, dtype))))
        weights = dyn.error_weights()
        y1 = dict(y1, res=y0["res"], acc=y0["acc"] + local,
                  mag=_aggregate(weights, y1["F"], y1["C"]))
        # Only aggregates are controlled: the per-mode errors weighted as the outputs weigh
        # them (a mode that carries nothing of B may be inaccurate relative to itself), the
        # auxiliary scalars, and the stage equations' residual.
        err = dict(jax.tree_util.tree_map(jnp.zeros_like, err), aux=err["aux"], res=res_max,
                   mag=_aggregate(weights, err["F"], err["C"]))
        last = (jax.tree_util.tree_map(lambda a: a[-1], stacked), sums[-1],
                u0 + h * contract(sums.T, jnp.asarray(_B, dtype)))
        return y1, err, dict(y0=y0, y1=y1), last, diffrax.RESULTS.successful


def _first_derivative(dyn: AbstractModeDynamics, t, y):
    """`(f(t, y), linear summary of it, summary of y)`: the solver state carried between steps."""
    k = dyn.field(t, y)
    return k, dyn.summary_linear(k["F"], k["C"]), dyn.summary(y["F"], y["C"])
