r"""The exact finite-$d$ dynamics of one-pass SGD on least squares, per iteration (SPEC §8).

For Gaussian data $a\sim N(0, K)$, noise independent of $a$ with variance $\sigma^2$ and batch
$\beta$, Isserlis' theorem closes the diagonal of $\mathbb E[ee^\top]$ ($e = x - x^*$) on itself
at every $d$. With $v_j = d\,\mathbb E e_j^2$, $c_j = d\,\mathbb E[e_jx^*_j]$ (eigenbasis of
$K$), $\mu_k = \gamma(k/d)/d$ and $2h_k = \sum_j\omega_j\lambda_jv_j + \sigma^2$:

$$v_j \leftarrow \rho_jv_j + \frac{\gamma_k^2\lambda_j}{\beta d}\,2h_k,\qquad
\rho_j = (1 - \mu_k\lambda_j)^2 + \frac{\mu_k^2\lambda_j^2}{\beta},\qquad
c_j \leftarrow (1 - \mu_k\lambda_j)\,c_j.$$

`lax.scan` over the iterations, $O(d)$ each. This is the reference for modes with
$\gamma\lambda_j/d = O(1)$, where the continuous form ([`SGDModes`][] with `inv_d`) differs
from it during their first few iterations ($\rho_j^k$ against $e^{-(1-\rho_j)k}$).
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._blowup import after_first, nan_where
from .._checks import check_times
from .._loss.least_squares import LeastSquares
from .._optimizer import SGD
from .._problem import Problem
from .._results import Solution


def check_finite_d(problem: Problem):
    """The finite-$d$ form's requirements (SPEC §8), as clear errors."""
    if not isinstance(problem.loss, LeastSquares):
        raise ValueError(f"the exact finite-d dynamics (SPEC §8) are for least squares; a "
                         f"{type(problem.loss).__name__} loss does not close at finite d (pass "
                         f"finite_d=False for the d -> infinity ODE)")
    if problem.d is None:
        raise ValueError("the exact finite-d dynamics need the problem's d: build it with an "
                         "instance (Problem.random, Problem.from_arrays, Problem.plrf) or a "
                         "dimension (Problem.plrf(deterministic=True)), or pass "
                         "finite_d=False for the d -> infinity ODE")


def exact_recursion(problem: Problem, optimizer: SGD, ts, *, blowup: float = 1e6) -> Solution:
    r"""The exact per-iteration second-moment recursion of SPEC §8 (see the module docstring),
    recorded at iterations $k = \operatorname{round}(td)$ of the times `ts` (what
    `hsgd.ode(..., recursion=True)` runs).

    **Arguments:** a least-squares [`Problem`][] whose $d$ is known and concrete (an instance,
    or `dimension`; on a coarsened or deterministic spectrum each bin stands for its modes,
    $\omega_j$ their share, as in the ODE), an [`SGD`][] (its schedule at $t = k/d$, its
    batch $\beta$, continuous here), the times `ts` (concrete: with $d$ they fix the number
    of iterations), and
    `blowup`: divergence once $\max|B|$ exceeds `blowup` $\times(1 + \max|B(0)|)$ or a value is
    not finite.

    **Returns:** a [`Solution`][] with `risk` $h_k$, `B`, `distance`
    $\|X - X^*\|^2 = \sum_j\omega_jv_j$, `gamma`, `gamma_crit`, `iterations` (the integer
    $k$ of each time), `loss_path` the risk $h_k$ at **every** iteration $k = 0..K$ (for window
    averages), `num_steps` $= K$, and `diverged`, `divergence_time` (the first recorded time
    past the bound; values from then on are NaN).
    """
    check_finite_d(problem)
    if problem.loss.m != 1 or problem.loss.m_star != 1:
        raise ValueError("the exact recursion is for least squares with m = m* = 1")
    ts_np = check_times(ts)
    if isinstance(problem.d, jax.core.Tracer):
        raise ValueError("the exact recursion needs a concrete d (it fixes the number of "
                         "iterations, round(t d)); under vmap/jit over d use the ODE "
                         "(recursion=False)")
    d = int(problem.d)
    steps = np.rint(ts_np * d).astype(np.int64)
    return _run(problem, optimizer, jnp.asarray(ts_np, problem.V0.dtype),
                jnp.asarray(steps), int(steps[-1]), float(blowup), d)


@eqx.filter_jit
def _run(problem, optimizer, ts, steps, num_iterations: int, blowup: float, d: int):
    dtype = problem.V0.dtype
    lam = problem.spectrum.eigenvalues.astype(dtype)
    w = problem.spectrum.weights.astype(dtype)
    V0 = problem.V0
    v0 = jnp.maximum(V0[:, 0, 0] - 2 * V0[:, 0, 1] + V0[:, 1, 1], 0.0)
    c0 = V0[:, 0, 1] - V0[:, 1, 1]
    tt = V0[:, 1, 1]
    noise = problem.loss._finite_variance(dtype)
    batch = jnp.asarray(optimizer.batch, dtype)
    batch = eqx.error_if(batch, ~(batch >= 1), "batch must be >= 1")
    schedule = optimizer.schedule
    wl = w * lam

    def aggregates(v, c):
        return jnp.stack([jnp.sum(wl * v), jnp.sum(wl * c), jnp.sum(w * v)])

    def body(carry, k):
        v, c = carry
        g = schedule(k.astype(dtype) / d).astype(dtype)
        mu = g / d
        two_h = jnp.sum(wl * v) + noise
        decay = 1 - mu * lam
        v = (decay**2 + mu**2 * lam**2 / batch) * v + (g**2 / (batch * d)) * lam * two_h
        c = decay * c
        return (v, c), aggregates(v, c)

    _, path = jax.lax.scan(body, (v0, c0), jnp.arange(num_iterations))
    path = jnp.concatenate([aggregates(v0, c0)[None], path])  # (K + 1, 3): k = 0..K
    Svv, Svc, Sv = path[steps, 0], path[steps, 1], path[steps, 2]
    Stt = jnp.sum(wl * tt)
    B11 = Svv + 2 * Svc + Stt
    B12 = Svc + Stt
    B = jnp.stack([jnp.stack([B11, B12], -1),
                   jnp.stack([B12, jnp.broadcast_to(Stt, B12.shape)], -1)], -2)
    risk = 0.5 * (Svv + noise)
    gammas = jax.vmap(schedule)(ts).astype(dtype)
    ts = eqx.error_if(ts, ~jnp.all(gammas >= 0),
                      "the learning rate must be non-negative and finite at every output time")
    # SPEC §1: gamma_crit = 2 beta A / ((tr K/d) tr I), A = I_tr - sigma^2 = sum w lam v here.
    gamma_crit = 2 * batch * Svv / (jnp.sum(wl) * (Svv + noise))
    bound = blowup * (1 + jnp.max(jnp.abs(problem.B0())))
    bad = ~jnp.isfinite(risk) | ~(jnp.max(jnp.abs(B), axis=(-1, -2)) < bound)
    bad, diverged, divergence_time = after_first(ts, bad)
    path_risk = 0.5 * (path[:, 0] + noise)
    path_bad = after_first(jnp.arange(num_iterations + 1, dtype=dtype),
                           ~jnp.isfinite(path_risk) | ~(jnp.abs(path[:, 0]) < bound))[0]
    return Solution(ts=ts, risk=nan_where(bad, risk), loss=None, gamma=gammas,
                    diverged=diverged, divergence_time=divergence_time,
                    num_steps=jnp.asarray(num_iterations), B=nan_where(bad, B),
                    distance=nan_where(bad, Sv), gamma_crit=nan_where(bad, gamma_crit),
                    iterations=steps, loss_path=nan_where(path_bad, path_risk))
