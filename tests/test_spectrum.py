"""Tests for hsgd._spectrum.Spectrum (SPEC §5).

Tolerances: quantities computed by a handful of float64 operations are compared at 1e-12
(relative), a few hundred ulps; the Marchenko–Pastur quadrature is a Gauss rule, so its
polynomial moments are exact up to round-off in the sums over the nodes (1e-10 relative).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hsgd._spectrum import Spectrum

# ---------------------------------------------------------------- construction and validation


def test_constructor_and_basic_moments():
    spectrum = Spectrum(jnp.array([0.0, 1.0, 3.0]), jnp.array([0.5, 0.25, 0.25]))
    assert spectrum.num_modes == 3
    assert isinstance(spectrum.num_modes, int)
    assert spectrum.eigenvalues.dtype == jnp.float64
    # Reference: hand-computed sums of three terms; exact in binary up to one rounding.
    assert float(spectrum.mean()) == pytest.approx(1.0, rel=1e-15)
    assert float(spectrum.moment(lambda x: x**2)) == pytest.approx(2.5, rel=1e-15)
    assert float(spectrum.max()) == 3.0
    assert float(spectrum.min()) == 0.0


def test_roundoff_negative_eigenvalue_is_clipped():
    spectrum = Spectrum.from_eigenvalues([-1e-15, 1.0, 2.0])
    assert float(spectrum.eigenvalues[0]) == 0.0


@pytest.mark.parametrize(
    "eigenvalues, weights, match",
    [
        ([1.0, -0.5], [0.5, 0.5], r"eigenvalue 1 is -0\.5"),
        ([1.0, np.nan], [0.5, 0.5], r"eigenvalue 1 is nan"),
        ([np.inf, 1.0], [0.5, 0.5], r"eigenvalue 0 is inf"),
        ([1.0, 2.0], [0.5, 0.0], r"weight 1 is 0\.0"),
        ([1.0, 2.0], [-0.5, 1.5], r"weight 0 is -0\.5"),
        ([1.0, 2.0], [np.nan, 0.5], r"weight 0 is nan"),
        ([1.0, 2.0], [1.0], r"\(1,\)"),
        ([[1.0, 2.0]], [[0.5, 0.5]], r"\(1, 2\)"),
        ([], [], r"empty"),
    ],
)
def test_constructor_rejects_bad_input(eigenvalues, weights, match):
    with pytest.raises(ValueError, match=match):
        Spectrum(np.asarray(eigenvalues, dtype=float), np.asarray(weights, dtype=float))


# ---------------------------------------------------------------- constructors


def test_from_eigenvalues_weights():
    spectrum = Spectrum.from_eigenvalues([4.0, 2.0, 1.0, 1.0])
    np.testing.assert_array_equal(spectrum.weights, np.full(4, 0.25))
    assert float(spectrum.mean()) == 2.0  # exact: sums of dyadic numbers


def test_from_covariance_diagonal_and_rotated():
    eig = np.array([5.0, 2.0, 1.0, 0.25])
    # Reference: a diagonal matrix has its diagonal as eigenvalues (exactly, in descending order).
    spectrum = Spectrum.from_covariance(np.diag(eig[::-1]))
    np.testing.assert_allclose(spectrum.eigenvalues, eig, rtol=0, atol=1e-15)
    np.testing.assert_allclose(spectrum.weights, 0.25)
    # Rotated by a random orthogonal Q: eigvalsh is backward stable, so the error is a few ulps
    # of ||K|| = 5; 1e-12 leaves a wide margin.
    Q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(4, 4)))
    K = Q @ np.diag(eig) @ Q.T
    K = 0.5 * (K + K.T)
    np.testing.assert_allclose(Spectrum.from_covariance(K).eigenvalues, eig, atol=1e-12)


def test_from_covariance_rank_deficient_clips_roundoff():
    # A^T A / n with n < d is singular; eigvalsh may return -1e-16-size eigenvalues: they are
    # clipped to 0 instead of raising.
    A = np.random.default_rng(1).normal(size=(3, 6))
    spectrum = Spectrum.from_covariance(A.T @ A / 3)
    assert float(spectrum.min()) >= 0.0
    # Reference: tr(A^T A)/(3 d); the eigenvalue sum equals the trace to round-off.
    assert float(spectrum.mean()) == pytest.approx(np.sum(A**2) / 3 / 6, rel=1e-12)


@pytest.mark.parametrize(
    "K, match",
    [
        (np.ones((2, 3)), r"\(2, 3\)"),
        (np.ones(3), r"\(3,\)"),
        (np.array([[1.0, 0.5], [0.0, 1.0]]), r"not symmetric.*0\.5"),
        (np.array([[1.0, np.nan], [np.nan, 1.0]]), r"nan"),
        (np.array([[1.0, 0.0], [0.0, -2.0]]), r"eigenvalue 1 is -2\.0"),
    ],
)
def test_from_covariance_rejects_bad_input(K, match):
    with pytest.raises(ValueError, match=match):
        Spectrum.from_covariance(K)


def test_uniform():
    spectrum = Spectrum.uniform(4, 0.0, 2.0)
    np.testing.assert_array_equal(spectrum.eigenvalues, [0.25, 0.75, 1.25, 1.75])
    # Reference: the midpoint grid is symmetric about (low + high)/2, so its mean is that value
    # up to the rounding of a sum of d terms (1e-14 relative for d = 1000).
    spectrum = Spectrum.uniform(1000, 0.2, 1.8)
    assert float(spectrum.mean()) == pytest.approx(1.0, rel=1e-14)
    assert float(spectrum.min()) > 0.2 and float(spectrum.max()) < 1.8


@pytest.mark.parametrize(
    "args, match",
    [
        ((0, 0.0, 1.0), r"d must be >= 1, got 0"),
        ((2.5, 0.0, 1.0), r"2\.5"),
        ((4, -0.5, 1.0), r"low=-0\.5"),
        ((4, 1.0, 1.0), r"high=1\.0"),
        ((4, 2.0, 1.0), r"high=1\.0"),
    ],
)
def test_uniform_rejects_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        Spectrum.uniform(*args)


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.5])
def test_power_law_normalisations(alpha):
    d = 500
    j = np.arange(1, d + 1)
    raw = j ** (-alpha)
    # Reference: the formula λ_j = c j^{-α}; one power and one division per entry, 1e-12.
    none = Spectrum.power_law(d, alpha, normalize=None)
    np.testing.assert_allclose(none.eigenvalues, raw, rtol=1e-12)
    top = Spectrum.power_law(d, alpha, normalize="max")
    assert float(top.eigenvalues[0]) == 1.0
    np.testing.assert_allclose(top.eigenvalues, raw, rtol=1e-12)
    mean = Spectrum.power_law(d, alpha)
    assert float(mean.mean()) == pytest.approx(1.0, rel=1e-12)
    np.testing.assert_allclose(mean.eigenvalues, raw * d / raw.sum(), rtol=1e-12)
    assert np.all(np.diff(np.asarray(mean.eigenvalues)) <= 0)


@pytest.mark.parametrize(
    "args, kwargs, match",
    [
        ((10, -0.5), {}, r"alpha must be >= 0, got -0\.5"),
        ((10, np.nan), {}, r"alpha must be finite, got nan"),
        ((0, 1.0), {}, r"d must be >= 1, got 0"),
        ((10, 1.0), {"normalize": "sum"}, r"'sum'"),
    ],
)
def test_power_law_rejects_bad_input(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        Spectrum.power_law(*args, **kwargs)


@pytest.mark.parametrize("ratio", [0.25, 0.5, 0.99, 1.0, 1.01, 2.0])
@pytest.mark.parametrize("scale", [1.0, 0.7])
def test_marchenko_pastur_moments(ratio, scale):
    spectrum = Spectrum.marchenko_pastur(ratio, scale=scale, num_points=256)
    # Reference: the MP moments E[λ] = σ², E[λ²] = σ⁴(1 + r), E[λ³] = σ⁶(1 + 3r + r²)
    # (tr S^k/d of the sample covariance). The Gauss rule integrates polynomials of degree
    # < 512 exactly, so only round-off in the sums remains: 1e-10 relative is generous.
    assert float(jnp.sum(spectrum.weights)) == pytest.approx(1.0, rel=1e-12)
    assert float(spectrum.mean()) == pytest.approx(scale, rel=1e-10)
    assert float(spectrum.moment(lambda x: x**2)) == pytest.approx(scale**2 * (1 + ratio),
                                                                   rel=1e-10)
    assert float(spectrum.moment(lambda x: x**3)) == pytest.approx(
        scale**3 * (1 + 3 * ratio + ratio**2), rel=1e-10)
    lam = np.asarray(spectrum.eigenvalues)
    pos = lam[lam > 0]
    # The nodes lie inside the support (up to round-off of the eigensolver).
    assert pos.min() >= scale * (1 - np.sqrt(ratio)) ** 2 - 1e-12
    assert pos.max() <= scale * (1 + np.sqrt(ratio)) ** 2 + 1e-12


@pytest.mark.parametrize("ratio", [0.3, 0.999, 1.0, 3.0])
def test_marchenko_pastur_stieltjes_transform(ratio):
    # Reference: the closed-form Stieltjes transform m(z) = ∫ dμ(x)/(x - z) of MP with scale
    # σ² (Bai–Silverstein), here at z = -σ² outside the support, atom included when r > 1:
    # m(z) = (1 - r - ζ - sqrt((ζ - 1 - r)² - 4r)) / (2 r ζ σ²), ζ = z/σ². 1/(x - z) is
    # analytic on the support, so 64 Gauss nodes converge geometrically, also near r = 1;
    # the measured error is ~1e-15, 1e-12 leaves room for round-off.
    scale, z = 0.7, -0.7
    spectrum = Spectrum.marchenko_pastur(ratio, scale=scale, num_points=64)
    zeta = z / scale
    exact = (1 - ratio - zeta - np.sqrt((zeta - 1 - ratio) ** 2 - 4 * ratio)) / (
        2 * ratio * zeta * scale)
    assert float(spectrum.moment(lambda x: 1 / (x - z))) == pytest.approx(exact, rel=1e-12)


def test_marchenko_pastur_atom():
    spectrum = Spectrum.marchenko_pastur(2.0, num_points=64)
    assert spectrum.num_modes == 65
    lam, w = np.asarray(spectrum.eigenvalues), np.asarray(spectrum.weights)
    # Reference: atom of mass 1 - 1/r = 1/2 at zero; the continuous part has mass 1/r.
    assert np.sum(lam == 0) == 1
    assert w[lam == 0][0] == pytest.approx(0.5, rel=1e-15)
    assert np.sum(w[lam > 0]) == pytest.approx(0.5, rel=1e-13)
    assert Spectrum.marchenko_pastur(0.5, num_points=64).num_modes == 64


@pytest.mark.parametrize(
    "args, match",
    [
        ((0.0,), r"ratio=0\.0"),
        ((-1.0,), r"ratio=-1\.0"),
        ((0.5, -2.0), r"scale=-2\.0"),
        ((0.5, 1.0, 1), r"num_points must be >= 2, got 1"),
    ],
)
def test_marchenko_pastur_rejects_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        Spectrum.marchenko_pastur(*args)


# ---------------------------------------------------------------- bins and coarsening


def test_bins_linear():
    spectrum = Spectrum.from_eigenvalues([1.0, 1.1, 2.0, 5.0, 4.9])
    np.testing.assert_array_equal(spectrum.bins(4), [0, 0, 1, 2, 2])
    np.testing.assert_array_equal(spectrum.bins(1), [0, 0, 0, 0, 0])


def test_bins_count_and_order():
    spectrum = Spectrum.uniform(1000, 0.1, 3.0)
    for n_bins in (1, 2, 7, 50, 999):
        index = spectrum.bins(n_bins)
        assert index.dtype.kind == "i"
        assert index.max() + 1 <= n_bins
        np.testing.assert_array_equal(np.unique(index), np.arange(index.max() + 1))
        # increasing λ ⇒ non-decreasing bin number
        order = np.argsort(np.asarray(spectrum.eigenvalues))
        assert np.all(np.diff(index[order]) >= 0)


def test_bins_log_spacing_for_power_law():
    spectrum = Spectrum.power_law(10_000, 1.2)
    index = spectrum.bins(20)
    counts = np.bincount(index)
    lam = np.asarray(spectrum.eigenvalues)
    # Log spacing: every bin spans at most a factor (max/min)^(1/20) in λ ...
    ratio = np.exp(np.log(lam.max() / lam.min()) / 20) * (1 + 1e-12)
    for b in range(counts.size):
        lb = lam[index == b]
        assert lb.max() / lb.min() <= ratio
    # ... whereas linear spacing would put almost every mode into the lowest bin.
    assert np.bincount(spectrum.bins(20, log=False))[0] > 9_900
    assert counts.max() < 9_000
    np.testing.assert_array_equal(index, spectrum.bins(20, log=True))


def test_zero_eigenvalues_get_their_own_bin():
    spectrum = Spectrum.marchenko_pastur(3.0, num_points=100)
    lam = np.asarray(spectrum.eigenvalues)
    for n_bins in (2, 5, 40):
        index = spectrum.bins(n_bins)
        assert index.max() + 1 <= n_bins
        zero_bins = set(index[lam == 0])
        assert zero_bins == {0}
        assert 0 not in set(index[lam > 0])
    coarse = spectrum.coarsen(5)
    # Reference: the atom keeps its exact mass 1 - 1/r and stays at λ = 0.
    assert float(coarse.eigenvalues[0]) == 0.0
    assert float(coarse.weights[0]) == pytest.approx(2 / 3, rel=1e-15)
    with pytest.raises(ValueError, match=r"n_bins=1"):
        spectrum.bins(1)


@pytest.mark.parametrize(
    "spectrum",
    [
        Spectrum.power_law(3000, 0.8),
        Spectrum.uniform(500, 0.0, 2.0),
        Spectrum.marchenko_pastur(2.0, 0.5, num_points=300),
    ],
    ids=["power_law", "uniform", "marchenko_pastur"],
)
@pytest.mark.parametrize("n_bins", [3, 32])
def test_coarsen_preserves_mass_mean_and_values(spectrum, n_bins):
    n = spectrum.num_modes
    rng = np.random.default_rng(2)
    values = rng.normal(size=(n, 2, 2))
    coarse, coarse_values = spectrum.coarsen(n_bins, values=values)
    assert isinstance(coarse, Spectrum)
    assert coarse.num_modes <= n_bins
    assert coarse_values.shape == (coarse.num_modes, 2, 2)
    w, cw = np.asarray(spectrum.weights), np.asarray(coarse.weights)
    # Reference: the fine sums. Regrouping a sum of ≤ 3000 O(1) terms changes it by a few
    # hundred ulps at most, far below 1e-12.
    assert cw.sum() == pytest.approx(w.sum(), rel=1e-12)
    assert float(coarse.mean()) == pytest.approx(float(spectrum.mean()), rel=1e-12)
    np.testing.assert_allclose(
        np.einsum("b,bij->ij", cw, np.asarray(coarse_values)),
        np.einsum("j,jab->ab", w, values), rtol=1e-12, atol=1e-14)
    # Coarse eigenvalues are increasing and stay inside the fine range.
    lam = np.asarray(coarse.eigenvalues)
    assert np.all(np.diff(lam) > 0)
    assert lam.min() >= float(spectrum.min()) and lam.max() <= float(spectrum.max())
    # Without values only the spectrum comes back.
    alone = spectrum.coarsen(n_bins)
    assert isinstance(alone, Spectrum)
    np.testing.assert_array_equal(alone.eigenvalues, coarse.eigenvalues)


def test_coarsen_hand_computed():
    spectrum = Spectrum(jnp.array([1.0, 1.2, 3.0]), jnp.array([0.25, 0.25, 0.5]))
    coarse, v = spectrum.coarsen(2, log=False, values=jnp.array([2.0, 4.0, 8.0]))
    # Reference: bins {1.0, 1.2} and {3.0}; ω-weighted means computed by hand.
    np.testing.assert_allclose(coarse.weights, [0.5, 0.5], rtol=1e-15)
    np.testing.assert_allclose(coarse.eigenvalues, [1.1, 3.0], rtol=1e-15)
    np.testing.assert_allclose(v, [3.0, 8.0], rtol=1e-15)


def test_coarsen_noop_when_enough_bins():
    spectrum = Spectrum.uniform(10, 0.5, 1.5)
    assert spectrum.coarsen(10) is spectrum
    values = np.ones((10, 3))
    same, same_values = spectrum.coarsen(50, values=values)
    assert same is spectrum and same_values is values


def test_coarsen_rejects_bad_input():
    spectrum = Spectrum.uniform(10, 0.5, 1.5)
    with pytest.raises(ValueError, match=r"n_bins must be >= 1, got 0"):
        spectrum.coarsen(0)
    with pytest.raises(ValueError, match=r"\(9, 2\)"):
        spectrum.coarsen(3, values=np.ones((9, 2)))


# ---------------------------------------------------------------- pytree behaviour


def test_jit_and_vmap():
    spectrum = Spectrum.power_law(100, 0.5)

    @jax.jit
    def mean(s):
        return s.mean()

    # Reference: the eager value; jit must not change a single reduction (1e-14 relative).
    assert float(mean(spectrum)) == pytest.approx(float(spectrum.mean()), rel=1e-14)

    # Constructed inside jit from tracers: validation is skipped, no error.
    @jax.jit
    def build(lam):
        return Spectrum.from_eigenvalues(lam).moment(lambda x: x**2)

    assert float(build(jnp.array([1.0, 3.0]))) == pytest.approx(5.0, rel=1e-15)

    # vmap over a stack of spectra (pytree with batched leaves).
    stacked = jax.tree.map(lambda *x: jnp.stack(x), Spectrum.uniform(4, 0.0, 1.0),
                           Spectrum.uniform(4, 1.0, 3.0))
    np.testing.assert_allclose(jax.vmap(lambda s: s.mean())(stacked), [0.5, 2.0], rtol=1e-15)

    # grad with respect to the eigenvalues: d/dλ Σ ω λ² = 2 ω λ.
    g = jax.grad(lambda s: s.moment(lambda x: x**2))(Spectrum.uniform(4, 0.0, 1.0))
    np.testing.assert_allclose(g.eigenvalues, 2 * 0.25 * np.array([0.125, 0.375, 0.625, 0.875]),
                               rtol=1e-15)


# ---------------------------------------------------------------- further checks (constructors,
# Gauss exactness, log bins at scale, validation messages)


def test_from_eigenvalues_weights_are_one_over_d():
    lam = np.array([3.0, 0.1, 7.0, 2.5, 0.0, 1.0, 4.2])  # d = 7: 1/d is not a dyadic number
    spectrum = Spectrum.from_eigenvalues(lam)
    # Reference: 1/7 in float64; the weights are that one rounded number, exactly.
    np.testing.assert_array_equal(spectrum.weights, np.full(7, 1.0 / 7))
    np.testing.assert_array_equal(spectrum.eigenvalues, lam)  # order and values kept
    # Reference: np.mean = Σλ/d; Σ(λ/d) differs by a few ulps of reordered rounding: 1e-14.
    assert float(spectrum.mean()) == pytest.approx(lam.mean(), rel=1e-14)
    assert float(jnp.sum(spectrum.weights)) == pytest.approx(1.0, rel=1e-15)


def test_from_covariance_recovers_rotated_spectrum():
    d = 30
    rng = np.random.default_rng(3)
    lam = np.sort(np.concatenate([rng.uniform(0.1, 4.0, d - 3), [2.0, 2.0, 0.0]]))[::-1]
    Q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    K = Q @ np.diag(lam) @ Q.T
    K = 0.5 * (K + K.T)
    spectrum = Spectrum.from_covariance(K)
    # Reference: the λ used to build K = Q diag(λ) Qᵀ. eigvalsh is backward stable, so each
    # eigenvalue is off by O(d eps ||K||) ~ 3e-14 here (repeated and zero ones included): 1e-12.
    np.testing.assert_allclose(spectrum.eigenvalues, lam, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(spectrum.weights, np.full(d, 1.0 / d))
    assert float(spectrum.min()) >= 0.0  # the zero eigenvalue's round-off is clipped, not kept


@pytest.mark.parametrize("ratio", [0.25, 0.5, 2.0])
def test_marchenko_pastur_two_point_gauss_rule_is_exact(ratio):
    # A 2-node Gauss rule integrates polynomials of degree <= 3 exactly. Reference: the MP
    # moments σ², σ⁴(1 + r), σ⁶(1 + 3r + r²); a 2x2 eigenproblem leaves only round-off (1e-12).
    scale = 1.3
    spectrum = Spectrum.marchenko_pastur(ratio, scale=scale, num_points=2)
    assert spectrum.num_modes == (3 if ratio > 1 else 2)
    assert float(jnp.sum(spectrum.weights)) == pytest.approx(1.0, rel=1e-12)
    assert float(spectrum.mean()) == pytest.approx(scale, rel=1e-12)
    assert float(spectrum.moment(lambda x: x**2)) == pytest.approx(scale**2 * (1 + ratio),
                                                                   rel=1e-12)
    assert float(spectrum.moment(lambda x: x**3)) == pytest.approx(
        scale**3 * (1 + 3 * ratio + ratio**2), rel=1e-12)


def test_coarsen_large_power_law_uses_log_bins():
    spectrum = Spectrum.power_law(100_000, 0.5)
    rng = np.random.default_rng(4)
    values = rng.uniform(size=spectrum.num_modes)
    coarse, coarse_values = spectrum.coarsen(64, values=values)
    assert 1 < coarse.num_modes <= 64
    w, lam = np.asarray(spectrum.weights), np.asarray(spectrum.eigenvalues)
    cw, clam = np.asarray(coarse.weights), np.asarray(coarse.eigenvalues)
    # Reference: the fine sums in NumPy. Regrouping 1e5 O(1)-sized terms moves a float64 sum by
    # at most ~1e5 ulps in the worst case, ~1e-13 relative in practice: 1e-12.
    assert cw.sum() == pytest.approx(w.sum(), rel=1e-12)
    assert float(coarse.mean()) == pytest.approx(np.sum(w * lam), rel=1e-12)
    assert float(cw @ np.asarray(coarse_values)) == pytest.approx(np.sum(w * values), rel=1e-12)
    # Log bins: consecutive coarse eigenvalues are roughly geometric. Their ratios lie between
    # the bin factor (max/min)^(1/64) ≈ 1.07 and the top gap λ_1/λ_2 = √2 (empty top bins
    # dropped), so they vary by far less than a factor 3 ...
    ratios = clam[1:] / clam[:-1]
    assert np.all(ratios > 1)
    assert ratios.max() / ratios.min() < 3
    # ... whereas linear bins crowd the small eigenvalues into one bin (check discriminates).
    lin = np.asarray(spectrum.coarsen(64, log=False).eigenvalues)
    lin_ratios = lin[1:] / lin[:-1]
    assert lin_ratios.max() / lin_ratios.min() > 3


def test_coarsen_with_at_least_num_modes_bins_returns_same_spectrum():
    spectrum = Spectrum.power_law(50, 1.0)
    for n_bins in (50, 51, 1000):
        same = spectrum.coarsen(n_bins)
        assert same is spectrum
        np.testing.assert_array_equal(same.eigenvalues, spectrum.eigenvalues)
        np.testing.assert_array_equal(same.weights, spectrum.weights)


def test_jit_mean_of_spectrum_argument():
    spectrum = Spectrum.from_eigenvalues([1.0, 2.0, 4.0, 9.0])
    # Reference: Σλ/d = 16/4 = 4, exact in binary.
    assert float(jax.jit(lambda s: s.mean())(spectrum)) == 4.0


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: Spectrum.from_eigenvalues([1.0, 2.0, -0.5]), r"eigenvalue 2 is -0\.5"),
        (lambda: Spectrum.from_eigenvalues([1.0, np.nan]), r"eigenvalue 1 is nan"),
        (lambda: Spectrum(np.ones(3), np.array([0.5, -0.1, 0.6])), r"weight 1 is -0\.1"),
        (lambda: Spectrum(np.ones(3), np.full(2, 0.5)), r"weights have shape \(2,\)"),
        (lambda: Spectrum.from_covariance(np.ones((3, 2))), r"square.*\(3, 2\)"),
        (lambda: Spectrum.from_covariance(np.array([[2.0, 1.0], [1.5, 2.0]])),
         r"not symmetric"),
        (lambda: Spectrum.power_law(10, 1.0, normalize="bogus"), r"normalize.*'bogus'"),
        (lambda: Spectrum.power_law(10, -1.0), r"alpha must be >= 0, got -1\.0"),
        (lambda: Spectrum.uniform(10, 2.0, 1.0), r"high must be > low.*high=1\.0"),
        (lambda: Spectrum.uniform(10, 1.0, 1.0), r"high must be > low.*high=1\.0"),
        (lambda: Spectrum.marchenko_pastur(0.0), r"ratio must be > 0.*ratio=0\.0"),
        (lambda: Spectrum.marchenko_pastur(-0.5), r"ratio must be > 0.*ratio=-0\.5"),
    ],
)
def test_bad_inputs_name_the_value(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_weights_not_summing_to_one_are_rejected():
    with pytest.raises(ValueError, match=r"sum"):
        Spectrum(np.array([1.0, 2.0]), np.array([0.5, 0.7]))
