r"""Label-noise models $\varepsilon$ for the per-sample loss $f(x; x^*, \varepsilon)$ (SPEC §1.1).

A noise model does two things: it integrates a function of $\varepsilon$ exactly or by
quadrature (used by the deterministic equivalent), and it samples $\varepsilon$ (used by the SGD
simulator). Teacher models draw the label from a law that depends on the teacher's
pre-activation $x^* = a^\top X^*$.
"""

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ._custom_types import PRNGKey


class AbstractNoise(eqx.Module):
    """A law for $\\varepsilon$ given the teacher pre-activation $x^*$."""

    @abc.abstractmethod
    def expect(self, fn, x_star: Float[Array, " m_star"]):
        r"""$\mathbb{E}_\varepsilon[\text{fn}(\varepsilon) \mid x^*]$ (any pytree output)."""

    @abc.abstractmethod
    def sample(self, key: PRNGKey, x_star: Float[Array, " m_star"]):
        r"""One draw of $\varepsilon$ given $x^*$."""

    @property
    def variance(self):
        r"""$\mathbb{E}\varepsilon^2$ of an additive noise (`inf` if it has none); `None`
        (the default) when the law does not say."""
        return None

    def has_finite_variance(self) -> bool:
        r"""Whether $\mathbb{E}\varepsilon^2$ is known and finite — decided from static
        information, so also inside `jit` (a traced variance counts as finite)."""
        var = self.variance
        if var is None:
            return False
        if isinstance(var, jax.core.Tracer):
            return True
        return bool(np.isfinite(float(var)))


class NoNoise(AbstractNoise):
    """No noise: $\\varepsilon = 0$."""

    @property
    def variance(self):
        r"""$\mathbb{E}\varepsilon^2 = 0$."""
        return jnp.zeros(())

    def expect(self, fn, x_star):
        return fn(jnp.zeros((), x_star.dtype))

    def sample(self, key, x_star):
        return jnp.zeros((), x_star.dtype)


class GaussianNoise(AbstractNoise):
    r"""Additive Gaussian noise $\varepsilon \sim N(0, \sigma^2)$, independent of $x^*$.

    Expectations use a 20-node Gauss–Hermite rule: exact for polynomials in $\varepsilon$ of
    degree $< 40$.

    **Arguments:**

    - `std`: $\sigma \ge 0$.
    """

    std: Float[Array, ""]

    def __init__(self, std=0.0):
        self.std = jnp.asarray(std, dtype=float)
        if not isinstance(self.std, jax.core.Tracer):
            s = float(self.std)
            if not np.isfinite(s) or s < 0:
                raise ValueError(f"noise std must be finite and >= 0, got {s}")

    def expect(self, fn, x_star):
        z, w = np.polynomial.hermite_e.hermegauss(20)
        z = jnp.asarray(z, x_star.dtype)
        w = jnp.asarray(w / w.sum(), x_star.dtype)
        values = jax.vmap(fn)(self.std.astype(x_star.dtype) * z)
        return jax.tree_util.tree_map(lambda v: jnp.tensordot(w, v, axes=1), values)

    def sample(self, key, x_star):
        return self.std.astype(x_star.dtype) * jax.random.normal(key, (), x_star.dtype)

    @property
    def variance(self):
        r"""$\mathbb{E}\varepsilon^2 = \sigma^2$."""
        return self.std**2

    def density(self, z):
        r"""The density $e^{-z^2/2\sigma^2}/\sqrt{2\pi\sigma^2}$ (needs $\sigma > 0$)."""
        s = self.std.astype(jnp.result_type(z, float))
        return jnp.exp(-0.5 * (z / s) ** 2) / (s * np.sqrt(2 * np.pi))


class BernoulliTeacher(AbstractNoise):
    r"""Binary label $y \sim \text{Bernoulli}(\operatorname{sigmoid}(x^*_1))$; $\varepsilon = y$."""

    def expect(self, fn, x_star):
        prob = jax.nn.sigmoid(x_star[0])
        one = jnp.ones((), x_star.dtype)
        values = jax.vmap(fn)(jnp.stack([one, 0 * one]))
        w = jnp.stack([prob, 1 - prob])
        return jax.tree_util.tree_map(lambda v: jnp.tensordot(w, v, axes=1), values)

    def sample(self, key, x_star):
        return jax.random.bernoulli(key, jax.nn.sigmoid(x_star[0])).astype(x_star.dtype)


class CategoricalTeacher(AbstractNoise):
    r"""Class label $y \sim \text{Categorical}(\operatorname{softmax}(x^*))$; $\varepsilon$ is
    the one-hot vector $e_y \in \mathbb{R}^C$."""

    def expect(self, fn, x_star):
        probs = jax.nn.softmax(x_star)
        eye = jnp.eye(x_star.shape[0], dtype=x_star.dtype)
        values = jax.vmap(fn)(eye)
        return jax.tree_util.tree_map(lambda v: jnp.tensordot(probs, v, axes=1), values)

    def sample(self, key, x_star):
        y = jax.random.categorical(key, x_star)
        return jax.nn.one_hot(y, x_star.shape[0], dtype=x_star.dtype)


def _density_expect(density, scale, half_width: float, fn, dtype, step: float = 0.03):
    r"""$\int \text{fn}(z)\,p(z)\,dz$ by the trapezoid rule on $z = s\sinh u$, $|u| \le$
    `half_width` (exponentially accurate for smooth integrands; the map puts nodes out to
    $s e^{L}/2$ for heavy tails)."""
    u = np.arange(-half_width, half_width + step / 2, step)
    z = jnp.asarray(np.sinh(u), dtype) * jnp.asarray(scale, dtype)
    w = jnp.asarray(np.cosh(u) * step, dtype) * jnp.asarray(scale, dtype) * density(z)
    values = jax.vmap(fn)(z)
    return jax.tree_util.tree_map(lambda v: jnp.tensordot(w, v, axes=1), values)


class StudentTNoise(AbstractNoise):
    r"""Additive Student-$t$ noise $\varepsilon = s\,T_\nu$, independent of $x^*$: density

    $$p_\varepsilon(z) = \frac{\Gamma(\frac{\nu+1}{2})}{\Gamma(\frac\nu2)\sqrt{\nu\pi}\,s}
    \Big(1 + \frac{z^2}{\nu s^2}\Big)^{-\frac{\nu+1}{2}},$$

    heavy-tailed: $\mathbb{E}|\varepsilon|^q < \infty$ only for $q < \nu$, so the variance
    $s^2\nu/(\nu - 2)$ is infinite for $\nu \le 2$. SGD's closed forms need that variance
    (SPEC §1: $I(B) = \tau^2 + \mathbb{E}\varepsilon^2$), so with $\nu \le 2$ SGD's
    deterministic equivalent does not exist and [`LeastSquares`][] refuses it; signSGD's
    (SPEC §11) needs only the density and applies for every $\nu > 0$.

    Expectations ([`expect`][hsgd.StudentTNoise.expect]) integrate against the density by the
    trapezoid rule on $z = s\sinh u$, $|u| \le \max(12, 1 + 28/\nu)$ (tail mass beyond
    $\approx 10^{-12}$), step 0.03: exponentially accurate for smooth functions (measured:
    $10^{-13}$ on $\mathbb{E}e^{-\varepsilon^2}$ at $\nu = 1.5$); an expectation that is
    infinite (a moment of order $\ge\nu$) comes out finite and meaningless.

    **Arguments:**

    - `nu`: degrees of freedom $\nu > 0$ (a Python number: it fixes the quadrature rule).
    - `scale`: $s > 0$ (an array leaf).

    Example: `hsgd.LeastSquares(noise=hsgd.StudentTNoise(1.5, 0.5))`.
    """

    nu: float = eqx.field(static=True)
    scale: Float[Array, ""]

    def __init__(self, nu, scale=1.0):
        nu_value = float(nu)
        if not (np.isfinite(nu_value) and nu_value > 0):
            raise ValueError(f"StudentTNoise needs nu > 0 (degrees of freedom), got nu={nu!r}")
        self.nu = nu_value
        self.scale = jnp.asarray(scale, dtype=float)
        if not isinstance(self.scale, jax.core.Tracer):
            s = float(self.scale)
            if not (np.isfinite(s) and s > 0):
                raise ValueError(f"StudentTNoise needs scale > 0, got scale={scale!r}")

    @property
    def variance(self):
        r"""$\mathbb{E}\varepsilon^2 = s^2\nu/(\nu - 2)$ for $\nu > 2$, `inf` otherwise."""
        if self.nu <= 2.0:
            return jnp.full((), jnp.inf, self.scale.dtype)
        return self.scale**2 * self.nu / (self.nu - 2.0)

    def has_finite_variance(self) -> bool:
        r"""$\nu > 2$."""
        return self.nu > 2.0

    @property
    def std(self):
        r"""$\sqrt{\mathbb{E}\varepsilon^2}$ — a `ValueError` for $\nu \le 2$, where it is
        infinite (a closed form that needs $\sigma$ cannot use this noise)."""
        if self.nu <= 2.0:
            raise ValueError(f"{self!r} has infinite variance (nu = {self.nu:g} <= 2): no "
                             f"closed form that needs the noise standard deviation applies "
                             f"(SGD's deterministic equivalent does not exist; SPEC §11)")
        return jnp.sqrt(self.variance)

    def __repr__(self):
        scale = "<traced>" if isinstance(self.scale, jax.core.Tracer) \
            else f"{float(self.scale):g}"
        return f"StudentTNoise(nu={self.nu:g}, scale={scale})"

    def density(self, z):
        r"""$p_\varepsilon(z)$ (see the class docstring)."""
        nu = self.nu
        s = self.scale.astype(jnp.result_type(z, float))
        log_c = (jax.scipy.special.gammaln((nu + 1) / 2) - jax.scipy.special.gammaln(nu / 2)
                 - 0.5 * np.log(nu * np.pi))
        return jnp.exp(log_c - 0.5 * (nu + 1) * jnp.log1p((z / s) ** 2 / nu)) / s

    def expect(self, fn, x_star):
        r"""$\mathbb{E}[\text{fn}(\varepsilon)]$ by the trapezoid rule against the density (see
        the class docstring)."""
        return _density_expect(self.density, self.scale, max(12.0, 1.0 + 28.0 / self.nu), fn,
                               x_star.dtype)

    def sample(self, key, x_star):
        r"""One draw $s\,T_\nu$ (`jax.random.t`)."""
        return self.scale.astype(x_star.dtype) * jax.random.t(key, self.nu, (), x_star.dtype)


class _GivenVariance(AbstractNoise):
    """A noise whose variance is given by the user, not computed (None: unknown)."""

    variance_value: eqx.AbstractVar[object]

    @property
    def variance(self):
        r"""The given $\mathbb{E}\varepsilon^2$ (`None`: unknown)."""
        return None if self.variance_value is None else jnp.asarray(self.variance_value)

    def has_finite_variance(self) -> bool:
        """Whether a finite `variance` was given."""
        return self.variance_value is not None and bool(np.isfinite(self.variance_value))

    @property
    def std(self):
        r"""$\sqrt{\mathbb{E}\varepsilon^2}$; a `ValueError` when unknown or infinite."""
        if not self.has_finite_variance():
            raise ValueError(f"this {type(self).__name__} has no finite known variance (pass "
                             f"variance=): closed forms that need the noise standard deviation "
                             f"cannot use it")
        return jnp.sqrt(self.variance)


class DensityNoise(_GivenVariance):
    r"""A user's additive noise law given by its density $p_\varepsilon$ (and a sampler for the
    simulators), independent of $x^*$.

    What uses it: signSGD's deterministic equivalent at batch 1 (SPEC §11) needs only the
    density (assumed **symmetric**, $p_\varepsilon(-z) = p_\varepsilon(z)$); the simulators
    need `sample`; SGD's closed forms ([`LeastSquares`][]) need `variance`.

    **Arguments:**

    - `density`: a JAX function $z \mapsto p_\varepsilon(z)$ (vectorised over $z$).
    - `sample`: a function `key -> ε` (one scalar draw), or `None` (no simulation).
    - `variance`: $\mathbb{E}\varepsilon^2$ if known (`inf` for a law without one); `None`
      (unknown) keeps SGD's closed forms from using it.
    - `scale`: the width of the law, for the quadrature grid of
      [`expect`][hsgd.DensityNoise.expect] (the trapezoid rule on $z = s\sinh u$,
      $|u| \le 12$, step 0.03: 801 nodes).

    Example (Laplace noise of scale 0.3):

    ```python
    laplace = hsgd.DensityNoise(lambda z: jnp.exp(-jnp.abs(z) / 0.3) / 0.6,
                                lambda key: 0.3 * jax.random.laplace(key), variance=2 * 0.3**2)
    ```
    """

    density_fn: object = eqx.field(static=True)
    sampler: object = eqx.field(static=True)
    variance_value: object = eqx.field(static=True)
    scale: float = eqx.field(static=True)

    def __init__(self, density, sample=None, *, variance=None, scale=1.0):
        if not callable(density):
            raise TypeError(f"density must be a function z -> p(z), got {density!r}")
        if sample is not None and not callable(sample):
            raise TypeError(f"sample must be a function key -> eps or None, got {sample!r}")
        if variance is not None and not (float(variance) >= 0):
            raise ValueError(f"variance must be >= 0 (or inf, or None), got {variance!r}")
        if not (np.isfinite(float(scale)) and float(scale) > 0):
            raise ValueError(f"scale must be > 0, got {scale!r}")
        self.density_fn = density
        self.sampler = sample
        self.variance_value = None if variance is None else float(variance)
        self.scale = float(scale)

    def density(self, z):
        r"""The user's $p_\varepsilon(z)$."""
        return self.density_fn(z)

    def expect(self, fn, x_star):
        r"""$\mathbb{E}[\text{fn}(\varepsilon)]$ by the trapezoid rule against the density
        (see `scale` in the class docstring)."""
        return _density_expect(self.density_fn, self.scale, 12.0, fn, x_star.dtype)

    def sample(self, key, x_star):
        if self.sampler is None:
            raise ValueError("this DensityNoise has no sampler: pass sample=lambda key: ... to "
                             "simulate with it")
        return jnp.asarray(self.sampler(key), x_star.dtype)


class SampledNoise(_GivenVariance):
    r"""A user's additive, symmetric noise law given by samples $arepsilon_1, \dots,
    arepsilon_N$ (independent of $x^*$), symmetrised: the law of $\pmarepsilon_i$, each with
    probability $1/(2N)$.

    What uses it: signSGD's deterministic equivalent at batch 1 (SPEC §11) needs only the density
    of the residual $u = z + arepsilon$, $z\sim N(0, 	au^2)$, at 0, which the samples give
    without a bandwidth: $p_u(0) = \mathbb{E}_arepsilon\,\phi_	au(arepsilon)$
    ([`residual_density_at_zero`][hsgd.SampledNoise.residual_density_at_zero]; relative
    error $O(N^{-1/2})$ while $	au$ is not far below the samples' spacing near 0). The
    simulators resample it; SGD's closed forms need `variance` (not estimated from the samples:
    a heavy-tailed law's sample variance is finite but meaningless).

    **Arguments:** `samples` (a 1-D array, e.g. $10^5$ draws or a residual data set);
    `variance`: $\mathbb{E}arepsilon^2$ if known (`inf` for a law without one), `None` unknown.
    """

    samples: Array
    variance_value: object = eqx.field(static=True)

    def __init__(self, samples, *, variance=None):
        samples = jnp.ravel(jnp.asarray(samples))
        if samples.size < 2 or not bool(jnp.all(jnp.isfinite(samples))):
            raise ValueError("samples must be a 1-D array of at least 2 finite draws")
        if variance is not None and not (float(variance) >= 0):
            raise ValueError(f"variance must be >= 0 (or inf, or None), got {variance!r}")
        self.samples = samples
        self.variance_value = None if variance is None else float(variance)

    def residual_density_at_zero(self, tau):
        r"""$p_u(0) = \mathbb{E}_arepsilon\,\phi_	au(arepsilon)$ for $u = z + arepsilon$,
        $z\sim N(0, 	au^2)$: the sample mean (elementwise in `tau`)."""
        tau = jnp.asarray(tau)
        eps = self.samples.astype(jnp.result_type(tau, float))
        phi = jnp.exp(-0.5 * (eps / tau[..., None]) ** 2) / (np.sqrt(2 * np.pi) * tau[..., None])
        return jnp.mean(phi, axis=-1)

    def expect(self, fn, x_star):
        r"""$\mathbb{E}[\text{fn}(\varepsilon)]$ over the symmetrised samples."""
        eps = self.samples.astype(x_star.dtype)
        values = jax.vmap(fn)(jnp.concatenate([eps, -eps]))
        return jax.tree_util.tree_map(lambda v: jnp.mean(v, axis=0), values)

    def sample(self, key, x_star):
        """One draw: a uniformly chosen sample with a random sign."""
        k1, k2 = jax.random.split(key)
        i = jax.random.randint(k1, (), 0, self.samples.shape[0])
        sign = jnp.where(jax.random.bernoulli(k2), 1.0, -1.0)
        return (sign * self.samples[i]).astype(x_star.dtype)
