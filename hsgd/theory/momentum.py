r"""Closed-form facts about mini-batch SGD with heavy-ball momentum on finite least squares
(SPEC §3, 2206.01029), constant stepsize $\gamma$, momentum $\Delta$ and batch fraction $\zeta$.

**The discrete Volterra equation.** Per mode, $\mu_j = \lambda_j + \delta$,
$c_j = 1 + \Delta - \gamma\zeta\mu_j$ and the heavy-ball roots $z_{j,\pm}$ of
$z^2 - c_jz + \Delta = 0$. A unit of variance injected into mode $j$ at one step is, $m$ steps
later, $u_{j,m}^2$ with $u_{j,0} = 1$, $u_{j,-1} = 0$, $u_{j,m+1} = c_ju_{j,m} - \Delta u_{j,m-1}$
(the second-moment recursion of [`hsgd.ode`][] on [`HeavyBall`][] keeps a rank-one state rank
one), so

$$\psi_k = F_k + \sum_{l<k}\mathcal K(k-1-l)\,\psi_l,\qquad
\mathcal K(m) = \frac{\gamma^2\zeta(1-\zeta)}{n}\sum_j\nu_j\lambda_j^2u_{j,m}^2,$$

$F_k$ the loss on the heavy-ball mean path. The squares of a second-order recurrence have the
rational generating function (Chebyshev: $u_{j,m} = \Delta^{m/2}U_m(c_j/2\sqrt\Delta)$)

$$\sum_{m\ge0}u_{j,m}^2x^m = \frac{1 + \Delta x}{(1 - \Delta x)\,(1 - (c_j^2 - 2\Delta)x +
\Delta^2x^2)},\qquad 1 - (c_j^2 - 2\Delta)x + \Delta^2x^2 = (1 - z_{j,+}^2x)(1 - z_{j,-}^2x).$$

**Rates.** The generating function of $\psi$ is $\hat F(x)/(1 - x\hat{\mathcal K}(x))$, so with
$r = 1/x$ the noise rate $\Xi^{-1}$ is the root $r > \Lambda$ of the **Malthusian equation**

$$\frac{\gamma^2\zeta(1-\zeta)}{n}\sum_j\nu_j\lambda_j^2\,
\frac{r\,(r + \Delta)}{(r - \Delta)\,(r^2 - (c_j^2 - 2\Delta)\,r + \Delta^2)} = 1,$$

whose left side decreases in $r$ (a power series in $1/r$ with non-negative coefficients). The
deterministic (GD+M) rate is $\Lambda = \max_j|z_{j,\pm}|^2$ over modes with $\lambda_j > 0$
($= \Delta$ for complex roots; eq. 22 of the paper), and
$\lim_k(\psi_k - \psi_\infty)^{1/k} = \max\{\Lambda, \Xi^{-1}\}$. For a discrete spectrum with
$\zeta < 1$ the left side blows up as $r\downarrow\Lambda$, so $\Xi^{-1} > \Lambda$ always;
$\Lambda$ wins only without noise ($\zeta = 1$) or when a continuous spectrum leaves no root.
With ridge the training loss has a term linear in the mean, $-\delta\sum_j\nu_jc_je_j$, which
decays like $|z_j|$ (not $|z_j|^2$); [`momentum_rate`][] includes it. A root $r\ge1$ means the
loss grows by that factor per iteration: the rate is defined (and is $\ge 1$) past the
convergence limit too.

**Kernel norm and limits** ($r = 1$): $1 - (c_j^2 - 2\Delta) + \Delta^2 = \gamma\zeta\mu_j
(2(1+\Delta) - \gamma\zeta\mu_j)$, hence

$$\|\mathcal K\| = \frac{\gamma(1-\zeta)(1+\Delta)}{n(1-\Delta)}\sum_j\frac{\nu_j\lambda_j^2}
{\mu_j\,(2(1+\Delta) - \gamma\zeta\mu_j)},\qquad \psi_\infty = \frac{L_{\min}}{1-\|\mathcal K\|},$$

and SGD+M converges iff $\gamma\zeta\mu_{\max} < 2(1+\Delta)$ (every mean mode is stable) and
$\|\mathcal K\| < 1$. The paper's sufficient conditions (Prop. 4.3, SPEC §3) replace these by
$\gamma < (1+\Delta)/(\zeta\lambda_{\max})$ and $(1-\zeta)\gamma\operatorname{tr}(A^\top A)/
(n(1-\Delta)) < 1$. For $\Delta = 0$, $\zeta\to0$ everything reduces to SPEC §2.

All functions are branch-free JAX functions of the problem's arrays and the parameters (so they
`vmap` over $\gamma$, $\Delta$, $\zeta$).
"""

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .._dynamics.finite_heavy_ball import heavy_ball_coefficient
from .._optimizer.heavy_ball import check_momentum
from .._problem import FiniteProblem


def _jit_params(fn):
    """`eqx.filter_jit` with the numeric parameters after `problem` converted to arrays of the
    problem's dtype (Python floats would otherwise be static and recompile per value)."""
    inner = eqx.filter_jit(fn)

    @functools.wraps(fn)
    def wrapper(problem, *params, **options):
        dtype = problem.eigenvalues.dtype
        return inner(problem, *(p if isinstance(p, str) else jnp.asarray(p, dtype)
                                 for p in params), **options)

    return wrapper


# ---------------------------------------------------------------------- condition numbers


class Conditioning(eqx.Module):
    r"""Condition numbers of $A^\top A + \delta$ (over modes with $\lambda_j > 0$):
    `average` $\bar\kappa = (\operatorname{tr}(A^\top A)/n)/\mu_{\min}$, `classic`
    $\kappa = \mu_{\max}/\mu_{\min}$ and the implicit conditioning ratio `icr`
    $= \bar\kappa/\sqrt\kappa$ (SPEC §3). `crossover` $= \mathrm{ICR}/(1 + \mathrm{ICR})$ is the
    batch fraction where the two terms of the talk's near-optimal $\Delta$ meet,
    $\zeta/((1-\zeta)\bar\kappa) = 1/\sqrt\kappa$; for $\mathrm{ICR}\ll1$ it is ICR itself."""

    average: Float[Array, ""]
    classic: Float[Array, ""]
    icr: Float[Array, ""]
    crossover: Float[Array, ""]
    mu_min: Float[Array, ""]
    mu_max: Float[Array, ""]


def _mu_range(problem):
    lam = problem.eigenvalues
    mu = lam + problem.ridge
    pos = lam > 0
    return (jnp.min(jnp.where(pos, mu, jnp.inf)), jnp.max(jnp.where(pos, mu, -jnp.inf)))


@_jit_params
def conditioning(problem: FiniteProblem) -> Conditioning:
    r"""$\bar\kappa$, $\kappa$ and ICR of a problem (see [`Conditioning`][])."""
    mu_min, mu_max = _mu_range(problem)
    average = problem.trace() / problem.n / mu_min
    classic = mu_max / mu_min
    icr = average / jnp.sqrt(classic)
    return Conditioning(average=average, classic=classic, icr=icr, crossover=icr / (1 + icr),
                        mu_min=mu_min, mu_max=mu_max)


# ---------------------------------------------------------------------- deterministic part


@_jit_params
def heavy_ball_roots(problem: FiniteProblem, gamma, momentum, batch_fraction):
    r"""The roots $z_{j,\pm} = \big(c_j \pm \sqrt{c_j^2 - 4\Delta}\big)/2$ of
    $z^2 - c_jz + \Delta$ per mode (complex arrays, $c_j = 1 + \Delta - \gamma\zeta\mu_j$): the
    mean error of mode $j$ is a combination of $z_{j,+}^k$ and $z_{j,-}^k$."""
    c = heavy_ball_coefficient(problem, gamma, momentum, batch_fraction)
    root = jnp.sqrt((c**2 - 4.0 * momentum).astype(jnp.result_type(c, jnp.complex64)))
    return 0.5 * (c + root), 0.5 * (c - root)


def _modulus(c, momentum):
    """max |z|^2 per mode, without complex arithmetic."""
    disc = c**2 - 4.0 * momentum
    real = disc >= 0
    big = 0.5 * (jnp.abs(c) + jnp.sqrt(jnp.where(real, disc, 0.0)))
    return jnp.where(real, big**2, momentum)


@_jit_params
def gdm_rate(problem: FiniteProblem, gamma, momentum, batch_fraction):
    r"""$\Lambda_{\rm GD+M} = \max_j\max_\pm|z_{j,\pm}|^2$ over modes with $\lambda_j > 0$: the
    per-iteration rate of full-batch heavy ball (no noise) on the loss (SPEC §3)."""
    c = heavy_ball_coefficient(problem, gamma, momentum, batch_fraction)
    return jnp.max(jnp.where(problem.eigenvalues > 0, _modulus(c, momentum), 0.0))


# ---------------------------------------------------------------------- the noise part


@_jit_params
def momentum_kernel_norm(problem: FiniteProblem, gamma, momentum, batch_fraction):
    r"""$\|\mathcal K\| = \sum_m\mathcal K(m)$ (module docstring); $+\infty$ when a mean mode is
    unstable ($\gamma\zeta\mu_j\ge2(1+\Delta)$)."""
    lam = problem.eigenvalues
    mu = lam + problem.ridge
    pos = lam > 0
    gap = 2.0 * (1.0 + momentum) - gamma * batch_fraction * mu
    stable = jnp.all(jnp.where(pos, gap > 0, True))
    terms = jnp.where(pos, problem.counts * lam**2 / jnp.where(pos, mu * gap, 1.0), 0.0)
    norm = (gamma * (1.0 - batch_fraction) * (1.0 + momentum)
            / (problem.n * (1.0 - momentum)) * jnp.sum(terms))
    return jnp.where(stable, norm, jnp.inf)


def _malthusian(problem, gamma, momentum, zeta, r):
    r"""Left side of the Malthusian equation at r (> Lambda); see the module docstring."""
    lam = problem.eigenvalues
    pos = lam > 0
    c = heavy_ball_coefficient(problem, gamma, momentum, zeta)
    a = 0.5 * c**2 - momentum
    b = 0.25 * c**2 * (c**2 - 4.0 * momentum)
    sb = jnp.sqrt(jnp.abs(b))
    # (r - z+^2)(r - z-^2) = (r - a)^2 - b, factored when the roots are real (no cancellation).
    denom = jnp.where(b >= 0, (r - a - sb) * (r - a + sb), (r - a) ** 2 + jnp.abs(b))
    denom = denom * (r - momentum)
    terms = jnp.where(pos, problem.counts * lam**2 * r * (r + momentum)
                      / jnp.where(pos, denom, 1.0), 0.0)
    return gamma**2 * zeta * (1.0 - zeta) / problem.n * jnp.sum(terms)


def _kernel_edge(problem, gamma, momentum, zeta):
    """max |z|^2 over the modes the kernel sees (lambda > 0): its singularity."""
    return gdm_rate(problem, gamma, momentum, zeta)


@_jit_params
def momentum_noise_rate(problem: FiniteProblem, gamma, momentum, batch_fraction,
                        iterations: int = 40):
    r"""$\Xi^{-1}$: the root $r > \Lambda$ of the Malthusian equation of the discrete Volterra
    equation (module docstring) — the per-iteration rate the batch noise imposes on
    $\psi_k - \psi_\infty$. 0 without noise ($\zeta = 1$ or $\gamma = 0$); $\ge 1$ past the
    convergence limit (the growth factor). Solved by bisection on a bracket found by doubling,
    then Newton steps from the left (the left side is convex and decreasing in $r$, so Newton
    from the left never overshoots); the gradient with respect to the parameters is the
    implicit-function one."""
    gamma, momentum, zeta = (jnp.asarray(x) for x in (gamma, momentum, batch_fraction))
    edge = _kernel_edge(problem, gamma, momentum, zeta)
    root = jax.lax.stop_gradient(_root(problem, gamma, momentum, zeta, edge, iterations))
    # One Newton step with the gradient switched on gives d(root)/d(params) by the implicit
    # function theorem (value unchanged at a converged root).
    phi = lambda r: _malthusian(problem, gamma, momentum, zeta, r) - 1.0
    slope = jax.grad(phi)(root)
    root = root - phi(root) / jax.lax.stop_gradient(slope)
    noisy = (zeta < 1) & (gamma > 0)
    return jnp.where(noisy, root, 0.0)


def _root(problem, gamma, momentum, zeta, edge, iterations):
    gamma, momentum, zeta = (jax.lax.stop_gradient(x) for x in (gamma, momentum, zeta))
    phi = lambda r: _malthusian(problem, gamma, momentum, zeta, r) - 1.0
    lo = edge
    hi0 = jnp.maximum(edge, 1.0) + 1.0

    def expand(_, hi):  # phi -> -1 as r -> inf: double the gap until phi(hi) < 0
        return jnp.where(phi(hi) > 0, edge + 2.0 * (hi - edge), hi)

    hi = jax.lax.fori_loop(0, 30, expand, hi0)

    def bisect(_, bracket):
        lo, hi = bracket
        mid = 0.5 * (lo + hi)
        above = phi(mid) > 0
        return jnp.where(above, mid, lo), jnp.where(above, hi, mid)

    lo, hi = jax.lax.fori_loop(0, iterations, bisect, (lo, hi))

    def newton(_, r):  # from the left of the root of a convex decreasing function
        value, slope = jax.value_and_grad(phi)(r)
        step = jnp.where(slope < 0, -value / jnp.where(slope < 0, slope, -1.0), 0.0)
        return jnp.clip(r + step, r, hi)

    # lo has phi(lo) > 0 unless the bracket collapsed onto the edge (no Newton needed then).
    start = jnp.where(lo > edge, lo, 0.5 * (lo + hi))
    return jax.lax.fori_loop(0, 8, newton, start)


@_jit_params
def momentum_rate(problem: FiniteProblem, gamma, momentum, batch_fraction):
    r"""The exact asymptotic rate $\lim_k(\psi_k - \psi_\infty)^{1/k} =
    \max\{\Lambda_{\rm GD+M}, \Xi^{-1}\}$ (SPEC §3; module docstring), per iteration. With
    ridge, the term of the loss linear in the mean adds $\max_j|z_j|$ over modes with
    $\delta c_je_j(0)\ne0$. A value $\ge 1$ means no convergence."""
    c = heavy_ball_coefficient(problem, gamma, momentum, batch_fraction)
    lam = problem.eigenvalues
    linear = (problem.ridge * problem.x_opt_coords * problem.init_error != 0) & (lam > 0)
    linear_rate = jnp.max(jnp.where(linear, jnp.sqrt(_modulus(c, momentum)), 0.0))
    return jnp.maximum(jnp.maximum(gdm_rate(problem, gamma, momentum, batch_fraction),
                                   momentum_noise_rate(problem, gamma, momentum,
                                                       batch_fraction)), linear_rate)


# ---------------------------------------------------------------------- convergence, limits


@_jit_params
def momentum_stepsize_limit(problem: FiniteProblem, momentum, batch_fraction,
                            iterations: int = 80):
    r"""The largest stepsize for which SGD+M converges at momentum $\Delta$ and batch fraction
    $\zeta$: the smaller of $2(1+\Delta)/(\zeta\mu_{\max})$ and the root of
    $\|\mathcal K\|(\gamma) = 1$ (increasing in $\gamma$; bisection)."""
    _, mu_max = _mu_range(problem)
    top = 2.0 * (1.0 + momentum) / (batch_fraction * mu_max)

    def bisect(_, bracket):
        lo, hi = bracket
        mid = 0.5 * (lo + hi)
        ok = momentum_kernel_norm(problem, mid, momentum, batch_fraction) < 1
        return jnp.where(ok, mid, lo), jnp.where(ok, hi, mid)

    lo, hi = jax.lax.fori_loop(0, iterations, bisect, (jnp.zeros_like(top), top))
    return lo


@_jit_params
def momentum_converges(problem: FiniteProblem, gamma, momentum, batch_fraction,
                       condition: str = "exact"):
    r"""Whether SGD+M converges. `condition="exact"`: $\gamma\zeta\mu_{\max} < 2(1+\Delta)$ and
    $\|\mathcal K\| < 1$ (module docstring). `condition="paper"`: the paper's sufficient
    conditions (Prop. 4.3 as extracted in SPEC §3), $\gamma < (1+\Delta)/(\zeta\lambda_{\max})$
    and $(1-\zeta)\gamma\operatorname{tr}(A^\top A)/(n(1-\Delta)) < 1$."""
    if condition == "exact":
        return momentum_kernel_norm(problem, gamma, momentum, batch_fraction) < 1
    if condition == "paper":
        lam_max = jnp.max(problem.eigenvalues) + problem.ridge
        return ((gamma < (1.0 + momentum) / (batch_fraction * lam_max))
                & ((1.0 - batch_fraction) * gamma * problem.trace()
                   / (problem.n * (1.0 - momentum)) < 1))
    raise ValueError(f"condition must be 'exact' or 'paper', got condition={condition!r}")


@_jit_params
def momentum_limit_loss(problem: FiniteProblem, gamma, momentum, batch_fraction):
    r"""$\psi_\infty = L_{\min}/(1 - \|\mathcal K\|)$; $+\infty$ when SGD+M does not
    converge."""
    k = momentum_kernel_norm(problem, gamma, momentum, batch_fraction)
    return jnp.where(k < 1, problem.loss_min / jnp.where(k < 1, 1.0 - k, 1.0), jnp.inf)


@_jit_params
def momentum_limit_risk(problem: FiniteProblem, gamma, momentum, batch_fraction):
    r"""$R_\infty = R(x_{\rm opt} + m_\infty) + \tfrac12\sum_j\nu_j(S_v)_{jj}V_j(\infty)$ with
    the stationary variance $V_j(\infty) = \frac{2\gamma(1-\zeta)(1+\Delta)\lambda_j}
    {n(1-\Delta)\mu_j(2(1+\Delta) - \gamma\zeta\mu_j)}\psi_\infty$; modes with $\mu_j = 0$ keep
    their initial error. NaN without a population, $+\infty$ without convergence."""
    if not problem.has_population:
        return jnp.full((), jnp.nan, problem.eigenvalues.dtype)
    psi = momentum_limit_loss(problem, gamma, momentum, batch_fraction)
    lam = problem.eigenvalues
    mu = lam + problem.ridge
    pos = mu > 0
    gap = 2.0 * (1.0 + momentum) - gamma * batch_fraction * mu
    var = jnp.where(pos, 2.0 * gamma * (1.0 - batch_fraction) * (1.0 + momentum) * lam * psi
                    / (problem.n * (1.0 - momentum) * jnp.where(pos, mu * gap, 1.0)), 0.0)
    mean = problem.risk_at(jnp.where(pos, 0.0, problem.init_error))
    value = mean + 0.5 * jnp.sum(problem.counts * problem.risk_diagonal * var)
    return jnp.where(jnp.isfinite(psi), value, jnp.inf)


# ---------------------------------------------------------------------- parameters


class MomentumParameters(eqx.Module):
    r"""A stepsize `gamma`, a momentum `momentum` and the exact rate `rate`
    ([`momentum_rate`][]) they give at `batch_fraction`; `guide` is the rate the formula that
    chose them promises (NaN for the numerical optimiser)."""

    gamma: Float[Array, ""]
    momentum: Float[Array, ""]
    batch_fraction: Float[Array, ""]
    rate: Float[Array, ""]
    guide: Float[Array, ""]


@_jit_params
def near_optimal_parameters(problem: FiniteProblem, batch_fraction,
                            version: str = "talk") -> MomentumParameters:
    r"""The near-optimal $(\gamma, \Delta)$ of SPEC §3, with the exact rate they achieve.

    - `version="talk"`: $\Delta = \max\{(1 - \zeta/((1-\zeta)\bar\kappa))_+^2,
      (1 - 1/\sqrt\kappa)^2\}$, $\gamma = (1 - \sqrt\Delta)^2/(\zeta\lambda_{\min})$, promised
      rate $\Delta$. (The first term is clipped at 0: for $\zeta/((1-\zeta)\bar\kappa) > 1$ the
      unclipped square would grow again, which the formula does not mean; at $\zeta = 1$ it is
      0.)
    - `version="paper"`: Prop. 4.6 as extracted in SPEC §3 (constants may be garbled):
      $\Delta = \max\{\frac{1 - 1/\sqrt{2\kappa}}{1 + 1/\sqrt{2\kappa}},
      \frac{1 - C/\bar\kappa}{1 + C/\bar\kappa}\}^2$, $C = \zeta/(8(1-\zeta))$, promised rate
      $\Delta$. SPEC gives no stepsize for it; we use the same relation
      $\gamma = (1 - \sqrt\Delta)^2/(\zeta\lambda_{\min})$ (for $\zeta = 1$ it is classical
      heavy ball tuned for condition number $2\kappa$).

    $\lambda_{\min}$, $\kappa$, $\bar\kappa$ are those of [`conditioning`][] (with ridge, of
    $\mu = \lambda + \delta$). Treat these as guides; [`optimize_momentum`][] finds the best
    parameters for the exact rate.
    """
    cond = conditioning(problem)
    zeta = jnp.asarray(batch_fraction, cond.average.dtype)
    ratio = jnp.where(zeta < 1, zeta / jnp.where(zeta < 1, 1.0 - zeta, 1.0), jnp.inf)
    if version == "talk":
        sgd = jnp.maximum(1.0 - ratio / cond.average, 0.0) ** 2
        gdm = (1.0 - 1.0 / jnp.sqrt(cond.classic)) ** 2
        delta = jnp.maximum(sgd, gdm)
    elif version == "paper":
        q = 1.0 / jnp.sqrt(2.0 * cond.classic)
        C = ratio / 8.0
        s = jnp.maximum((1.0 - C / cond.average) / (1.0 + C / cond.average), 0.0)
        delta = jnp.maximum((1.0 - q) / (1.0 + q), s) ** 2
    else:
        raise ValueError(f"version must be 'talk' or 'paper', got version={version!r}")
    gamma = (1.0 - jnp.sqrt(delta)) ** 2 / (zeta * cond.mu_min)
    return MomentumParameters(gamma=gamma, momentum=delta, batch_fraction=zeta,
                              rate=momentum_rate(problem, gamma, delta, zeta), guide=delta)


def optimize_momentum(problem: FiniteProblem, batch_fraction, *, momentum=None,
                      max_log_gap: float = 9.0, coarse: int = 16,
                      golden_steps: int = 36) -> MomentumParameters:
    r"""Minimise the exact rate [`momentum_rate`][] over $(\gamma, \Delta)$ at batch fraction
    $\zeta$ — the best parameters for this spectrum rather than a bound.

    The rate is a maximum over modes, not smooth, and its valley runs diagonally in
    $(\gamma, \Delta)$, so this profiles: the momentum is parametrised as
    $1 - \Delta = e^{-u}$, $u\in[0,$ `max_log_gap`$]$, the stepsize as a fraction
    $s\in(0, 1)$ of the convergence limit [`momentum_stepsize_limit`][] at that $\Delta$; for
    each $u$ the best $s$ is found by a `coarse` grid followed by `golden_steps` golden-section
    steps on the bracket around the grid's best point, and the same one-dimensional search runs
    over $u$ on the profile. (Each one-dimensional rate curve is unimodal in the cases we
    checked; the coarse grids guard against a poor bracket.) `momentum` fixes $\Delta$ (e.g. 0
    for the best plain SGD) and searches $\gamma$ only. Jitted; `vmap` over `batch_fraction`
    works. Cost about $(\text{coarse} + \text{golden\_steps})^2$ rate evaluations of $O(J)$
    (about 1.5 s for $J = 1500$ on one CPU core, plus a few seconds of compilation).

    **Returns:** [`MomentumParameters`][] (`guide` is NaN).
    """
    dtype = problem.eigenvalues.dtype
    zeta = jnp.asarray(batch_fraction, dtype)
    fixed = momentum is not None
    value = jnp.asarray(check_momentum(momentum) if fixed else 0.0, dtype)
    return _optimize(problem, zeta, value, fixed, float(max_log_gap), int(coarse),
                     int(golden_steps))


_INVPHI = 0.5 * (5**0.5 - 1.0)


def _minimize_1d(f, lo, hi, coarse, iterations):
    """Minimise `f(x) -> (value, aux)` on [lo, hi]: a `coarse` grid, then golden section on
    the bracket around the grid's best point. One loop that evaluates `f` once per iteration
    (so `f` is traced once — it may itself contain a search); branch-free. Returns
    (x, value, aux) of the best point seen."""
    xs = lo + (hi - lo) * jnp.linspace(0.0, 1.0, coarse, dtype=lo.dtype)
    _, aux0 = jax.eval_shape(f, lo)
    aux0 = jax.tree_util.tree_map(lambda t: jnp.zeros(t.shape, t.dtype), aux0)
    inf = jnp.asarray(jnp.inf, lo.dtype)

    def body(i, state):
        a, b, c, d, fc, fd, best_i, best_grid, best = state
        # Phase 1 (i < coarse): the grid. Then the golden bracket around the grid's best.
        grid_done = i >= coarse
        a0 = xs[jnp.maximum(best_i - 1, 0)]
        b0 = xs[jnp.minimum(best_i + 1, coarse - 1)]
        start = i == coarse
        a, b = jnp.where(start, a0, a), jnp.where(start, b0, b)
        c = jnp.where(start, b0 - _INVPHI * (b0 - a0), c)
        d = jnp.where(start, a0 + _INVPHI * (b0 - a0), d)
        second = i == coarse + 1
        golden = i >= coarse + 2
        left = fc < fd
        a_g, b_g = jnp.where(left, a, c), jnp.where(left, d, b)
        x_g = jnp.where(left, b_g - _INVPHI * (b_g - a_g), a_g + _INVPHI * (b_g - a_g))
        x = jnp.where(~grid_done, xs[jnp.minimum(i, coarse - 1)],
                      jnp.where(start, c, jnp.where(second, d, x_g)))
        fx, aux = f(x)
        # Golden-section bookkeeping.
        c_new = jnp.where(left, x, d)
        d_new = jnp.where(left, c, x)
        fc_new = jnp.where(left, fx, fd)
        fd_new = jnp.where(left, fc, fx)
        a = jnp.where(golden, a_g, a)
        b = jnp.where(golden, b_g, b)
        c, d = jnp.where(golden, c_new, c), jnp.where(golden, d_new, d)
        fc = jnp.where(golden, fc_new, jnp.where(start, fx, fc))
        fd = jnp.where(golden, fd_new, jnp.where(second, fx, fd))
        # The grid's best index and the best point overall.
        better_grid = ~grid_done & (fx < best_grid)
        best_i = jnp.where(better_grid, i, best_i)
        best_grid = jnp.where(better_grid, fx, best_grid)
        bx, bv, baux = best
        better = fx < bv
        best = (jnp.where(better, x, bx), jnp.where(better, fx, bv),
                jax.tree_util.tree_map(lambda new, old: jnp.where(better, new, old), aux, baux))
        return a, b, c, d, fc, fd, best_i, best_grid, best

    zero = jnp.zeros_like(lo)
    state = (zero, zero, zero, zero, inf, inf, jnp.zeros((), jnp.int32), inf, (lo, inf, aux0))
    *_, (x, value, aux) = jax.lax.fori_loop(0, coarse + 2 + iterations, body, state)
    return x, value, aux


@eqx.filter_jit
def _optimize(problem, zeta, fixed, fix_momentum, max_log_gap, coarse, iterations):
    dtype = zeta.dtype

    def momentum_of(u):
        return fixed if fix_momentum else -jnp.expm1(-u)

    def best_s(u):
        delta = momentum_of(u)
        limit = momentum_stepsize_limit(problem, delta, zeta)

        def rate_at(s):
            rate = momentum_rate(problem, s * limit, delta, zeta)
            return jnp.where(jnp.isfinite(rate) & (rate > 0), rate, jnp.inf), s * limit

        _, rate, gamma = _minimize_1d(rate_at, jnp.asarray(1e-3, dtype),
                                      jnp.asarray(1.0 - 1e-9, dtype), coarse, iterations)
        return rate, (gamma, delta)

    if fix_momentum:
        rate, (gamma, delta) = best_s(jnp.zeros((), dtype))
    else:
        _, rate, (gamma, delta) = _minimize_1d(best_s, jnp.zeros((), dtype),
                                               jnp.asarray(max_log_gap, dtype), coarse,
                                               iterations)
    return MomentumParameters(gamma=gamma, momentum=delta, batch_fraction=zeta, rate=rate,
                              guide=jnp.full((), jnp.nan, dtype))
