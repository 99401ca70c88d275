r"""The scan of the SGD+M second-moment recursion, with its adjoint written out.

[`momentum_recursion`][] reduces SPEC §3's recursion to this core: per mode $j$ and iteration
$k$, with $c_{kj} = 1 + \Delta - g_k\mu_j$ (where $g_k = \gamma_k\zeta$),

$$\begin{aligned}
v_k &= P_q(m_k^2 + V_k) + P_mm_k + p_0 &&\text{(outputs; } \psi_k = v_{k,0}\text{)}\\
V_{k+1} &= c^2V_k - 2c\Delta C_k + \Delta^2Q_k + s_k\eta\,\psi_k, &
C_{k+1} &= cV_k - \Delta C_k, \quad Q_{k+1} = V_k,\\
m_{k+1} &= cm_k - \Delta p_k, & p_{k+1} &= m_k,
\end{aligned}$$

from $m_0 = p_0 = e_0$, $V_0 = C_0 = Q_0 = 0$ (with $s_k = \gamma_k^2$ and the noise vector
$\eta$). Optionally $(m_k, V_k)$ are also written to a buffer row `slot[k]`.

**Why a hand-written adjoint.** Reverse-mode autodiff of a `lax.scan` replays the step's
transpose op by op: on CPU, ~60 µs per iteration against ~5 µs forward for a thousand modes
(a gradient ~8 forward solves, even with `jax.checkpoint`). The recursion is a few fused
elementwise lines, and so is its adjoint (below): [`momentum_scan`][] is a `jax.custom_vjp`
whose backward pass is a reverse `lax.scan` of those lines (~4-5 forward solves in all,
measured by `benchmarks/tune.py`). Memory: the forward pass keeps the state at the start of
each segment of `segment` iterations and the outputs $v_k$; the backward pass replays one
segment at a time from them (given $\psi_k$ the replay has no sums over modes: one fused loop
per iteration), keeping its states (in cache), then runs the adjoint back through it.
Cotangents of inputs that are not differentiated (`symbolic_zeros`: e.g. the problem's vectors
while tuning a schedule) are not accumulated.

**The adjoint.** With $(\bar m', \bar p', \bar V', \bar C', \bar Q')$ the cotangent of
the state after step $k$ and $\bar v_k$ that of the outputs,
$\bar\psi = s_k\,\eta\cdot\bar V'$ is added to $\bar v_{k,0}$, and with
$\bar u = P_q^\top\bar v_k$ and $\bar c = \bar V'(2cV - 2\Delta C) + \bar C'V + \bar m'm$:

$$\begin{aligned}
\bar m &= c\bar m' + \bar p' + 2m\bar u + P_m^\top\bar v_k, & \bar p &= -\Delta\bar m',\\
\bar V &= c^2\bar V' + c\bar C' + \bar Q' + \bar u, & \bar C &= -2c\Delta\bar V' - \Delta\bar C',
\quad \bar Q = \Delta^2\bar V',\\
\bar g_k &= -\mu\cdot\bar c, \quad \bar s_k = \psi_k\,\eta\cdot\bar V', &
\bar\Delta &\mathrel{+}= \textstyle\sum\bar c + \bar V'\cdot(2\Delta Q - 2cC) - \bar C'\cdot C
- \bar m'\cdot p,
\end{aligned}$$

and $\bar\mu \mathrel{+}= -g_k\bar c$, $\bar\eta \mathrel{+}= s_k\psi_k\bar V'$,
$\bar P_q \mathrel{+}= \bar v_k(m^2+V)^\top$, $\bar P_m \mathrel{+}= \bar v_km^\top$,
$\bar p_0 \mathrel{+}= \bar v_k$; finally $\bar e_0 = \bar m_0 + \bar p_0$. Tested against
autodiff of the plain scan (`tests/test_momentum.py`).
"""

import functools
import math

import jax
import jax.numpy as jnp
from jax.custom_derivatives import SymbolicZero

#: Names of the vectors of `coef`, in order (for the cotangent flags).
_VECTORS = ("mu", "eta", "P_q", "P_m", "const")


def _coefficient(coef, momentum, g):
    """c = 1 + Delta - g mu per mode (`heavy_ball_coefficient`, from the scan's inputs)."""
    return 1.0 + momentum - g * coef[0]


def _advance(coef, momentum, state, g, s, psi):
    """The state after one iteration, given the loss psi_k (elementwise in the modes)."""
    eta = coef[1]
    m, p, V, C, Q = state
    c = _coefficient(coef, momentum, g)
    V_next = c * c * V - 2.0 * momentum * c * C + momentum**2 * Q + s * eta * psi
    return (c * m - momentum * p, m, V_next, c * V - momentum * C, V)


def _step(coef, momentum, state, g, s, slot, saved):
    """One iteration: outputs v_k, the next state, and the buffer with (m_k, V_k) written."""
    _, _, P_q, P_m, const = coef
    m, _, V, _, _ = state
    values = jnp.sum(P_q * (m * m + V) + P_m * m, axis=1) + const
    if saved is not None:
        saved = saved.at[slot].set(jnp.stack([m, V]), mode="drop")
    return values, _advance(coef, momentum, state, g, s, values[0]), saved


def _initial(e0):
    zeros = jnp.zeros_like(e0)
    return (e0, e0, zeros, zeros, zeros)


def _run(coef, momentum, state, gs, ss, slots, saved):
    """Scan `_step` over (gs, ss, slots): (outputs, final state, buffer)."""
    def body(carry, inputs):
        state, saved = carry
        values, nxt, saved = _step(coef, momentum, state, *inputs, saved)
        return (nxt, saved), values

    (final, saved), values = jax.lax.scan(body, (state, saved), (gs, ss, slots))
    return values, final, saved


def _replay(coef, momentum, state, gs, ss, psis):
    """Re-run iterations whose losses psi_k are known (no sums over modes: one fused loop per
    iteration), keeping the state before each as (m, p, V, C, Q), each `(S, J)`. Only m, V and
    C are written per iteration (p and Q are the previous m and V). Measured on CPU: writing
    whole trajectories (K x 3J) costs more than re-running short segments whose states stay
    in cache, hence the segments of the backward pass."""
    def body(state, inputs):
        m, _, V, C, _ = state
        return _advance(coef, momentum, state, *inputs), jnp.stack([m, V, C])

    _, rows = jax.lax.scan(body, state, (gs, ss, psis))
    m, V, C = rows[:, 0], rows[:, 1], rows[:, 2]
    return (m, jnp.concatenate([state[1][None], m[:-1]]), V, C,
            jnp.concatenate([state[4][None], V[:-1]]))


def _blocks(x, count, size, fill=0.0):
    """`x` (leading axis K) padded with `fill` to `count * size` and shaped (count, size, ...)."""
    pad = jnp.full((count * size - x.shape[0],) + x.shape[1:], fill, x.dtype)
    return jnp.concatenate([x, pad]).reshape((count, size) + x.shape[1:])


def _segmented(coef, momentum, e0, gs, ss, slots, saved, segment):
    """All iterations as a scan over segments of `segment` iterations, keeping the state at
    the start of each. Returns (outputs, buffer, segment starts, the inputs
    padded to whole segments and shaped (segments, segment))."""
    K = gs.shape[0]
    size = max(1, min(segment, K))
    count = math.ceil(K / size)
    # Padded iterations (zero steps, written nowhere: their slot is past the buffer) come
    # after the last requested one: they change nothing returned.
    past = 0 if saved is None else saved.shape[0]
    inputs = (_blocks(gs, count, size), _blocks(ss, count, size),
              _blocks(slots, count, size, past))

    def body(carry, inputs):
        state, saved = carry
        values, nxt, saved = _run(coef, momentum, state, *inputs, saved)
        return (nxt, saved), (values, state)

    (_, saved), (values, starts) = jax.lax.scan(body, (_initial(e0), saved), inputs)
    return values.reshape((count * size,) + values.shape[2:]), saved, starts, inputs


@functools.partial(jax.custom_vjp, nondiff_argnums=(7,))
def _core(coef, momentum, e0, gs, ss, slots, saved, segment):
    # Not differentiated: one plain scan.
    values, _, saved = _run(coef, momentum, _initial(e0), gs, ss, slots, saved)
    return values, saved


def _core_fwd(coef, momentum, e0, gs, ss, slots, saved, segment):
    # symbolic_zeros: every leaf comes as (value, perturbed); the cotangent of an unperturbed
    # vector is never accumulated (a tuning gradient needs only gs, ss and momentum).
    flags = (() if momentum.perturbed else None, tuple(() if x.perturbed else None
                                                       for x in coef))
    coef = tuple(x.value for x in coef)
    momentum, e0, gs, ss, slots = (x.value for x in (momentum, e0, gs, ss, slots))
    saved = None if saved is None else saved.value
    values, saved, starts, inputs = _segmented(coef, momentum, e0, gs, ss, slots, saved,
                                               segment)
    # The outputs (K x R, small) are kept: the backward pass replays segments from them.
    shaped = values.reshape(inputs[0].shape + values.shape[1:])
    return (values[:gs.shape[0]], saved), (coef, momentum, starts, inputs + (shaped,), flags)


def _adjoint_step(coef, momentum, state, values, g, s, cot_state, cot_values, cot_row, acc):
    """The cotangent of the state before step k from that after it (see the module doc).
    Written elementwise (no matrix products; sums over modes only for per-step scalars) so
    that XLA fuses it into few loops; the per-mode parts of the cotangents of the vectors and
    of Delta are accumulated as vectors (those of unperturbed vectors not at all)."""
    mu, eta, P_q, P_m, const = coef
    m, p, V, C, Q = state
    Mb, Pb, Vb, Cb, Qb = cot_state
    c = _coefficient(coef, momentum, g)
    eta_Vb = jnp.sum(eta * Vb)
    vbar = cot_values.at[0].add(s * eta_Vb)
    ubar = jnp.sum(vbar[:, None] * P_q, axis=0)
    cbar = Vb * (2.0 * c * V - 2.0 * momentum * C) + Cb * V + Mb * m
    m_bar = c * Mb + Pb + 2.0 * m * ubar + jnp.sum(vbar[:, None] * P_m, axis=0)
    V_bar = c * c * Vb + c * Cb + Qb + ubar
    if cot_row is not None:
        m_bar, V_bar = m_bar + cot_row[0], V_bar + cot_row[1]
    new_cot = (m_bar, -momentum * Mb, V_bar, -2.0 * momentum * c * Vb - momentum * Cb,
               momentum**2 * Vb)
    dmom, vecs = acc
    if dmom is not None:
        dmom = dmom + jnp.sum(cbar + Vb * (2.0 * momentum * Q - 2.0 * c * C) - Cb * C - Mb * p)
    update = {"mu": lambda: -g * cbar, "eta": lambda: (s * values[0]) * Vb,
              "P_q": lambda: vbar[:, None] * (m * m + V), "P_m": lambda: vbar[:, None] * m,
              "const": lambda: vbar}
    vecs = tuple(None if a is None else a + update[name]() for name, a in zip(_VECTORS, vecs))
    return new_cot, (dmom, vecs), -jnp.sum(mu * cbar), values[0] * eta_Vb


def _core_bwd(segment, res, cots):
    coef, momentum, starts, (gs, ss, slots, outputs), flags = res
    cot_values, cot_saved = cots
    count, size = gs.shape
    if isinstance(cot_values, SymbolicZero):
        cot_values = jnp.zeros(cot_values.shape, cot_values.dtype)
    K = cot_values.shape[0]
    has_saved = cot_saved is not None and not isinstance(cot_saved, SymbolicZero)
    cot_values = _blocks(cot_values, count, size)
    mu = coef[0]
    acc = (None if flags[0] is None else jnp.zeros_like(momentum),
           tuple(None if f is None else jnp.zeros_like(x) for f, x in zip(flags[1], coef)))
    carry = (tuple(jnp.zeros_like(mu) for _ in range(5)), acc,
             cot_saved if has_saved else None)

    def segment_body(carry, inputs):
        start, g, s, sl, values, cv = inputs
        # Re-run the segment from its start, keeping its states, then the adjoint through it.
        states = _replay(coef, momentum, start, g, s, values[:, 0])

        def body(carry, inputs):
            cot_state, acc, cot_saved = carry
            state, v, gk, sk, slk, cvk = inputs
            row = None
            if has_saved:  # a row keeps its last write: its cotangent goes to that one only
                rows = cot_saved.shape[0]
                row = jnp.where(slk < rows, cot_saved[jnp.minimum(slk, rows - 1)], 0.0)
                cot_saved = cot_saved.at[slk].set(0.0, mode="drop")
            cot_state, acc, dg, ds = _adjoint_step(coef, momentum, state, v, gk, sk,
                                                   cot_state, cvk, row, acc)
            return (cot_state, acc, cot_saved), (dg, ds)

        return jax.lax.scan(body, carry, (states, values, g, s, sl, cv), reverse=True)

    carry, (dg, ds) = jax.lax.scan(segment_body, carry,
                                   (starts, gs, ss, slots, outputs, cot_values), reverse=True)
    cot_state, (dmom, vecs), cot_saved = carry
    # The buffer's initial rows survive only where never written: their cotangent is what
    # is left of cot_saved.
    return (vecs, None if dmom is None else jnp.sum(dmom), cot_state[0] + cot_state[1],
            dg.reshape(-1)[:K], ds.reshape(-1)[:K], None, cot_saved if has_saved else None)


_core.defvjp(_core_fwd, _core_bwd, symbolic_zeros=True)


def momentum_scan(coef, momentum, e0, gs, ss, slots, saved=None, segment: int = 16):
    r"""Run the recursion (module doc) for `gs.shape[0]` iterations.

    `coef = (mu, eta, P_q, P_m, const)` (`P_q`, `P_m` of shape `(R, J)`, `const` `(R,)`),
    `momentum` $\Delta$, `e0` the initial error per mode; `gs` $= \gamma_k\zeta$ and `ss`
    $= \gamma_k^2$ per iteration; `slots` the buffer row written at each iteration and `saved`
    a `(rows, 2, J)` buffer or None; `segment`: iterations re-run together in the backward
    pass (16: the states of a segment stay in cache). Returns the outputs `(K, R)` and the
    buffer.
    """
    return _core(tuple(coef), momentum, e0, gs, ss, slots, saved, segment)
