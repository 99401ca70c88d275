"""Tests for hsgd._schedule (SPEC §4): the learning-rate schedules γ(t).

Every value is compared with the closed form of the docstring written out in NumPy. Both sides
evaluate the same few float64 operations (exp, cos, a power), so they agree up to rounding:
rtol 1e-12 leaves three orders of magnitude above a few ulps. Gradients are compared with central
finite differences, h = 1e-6: the truncation error h²|f'''|/6 ~ 1e-13 and the cancellation error
eps|f|/h ~ 2e-10 for O(1) schedules, so rtol 1e-7 is safe for these smooth functions.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import hsgd

RTOL = 1e-12  # same float64 formula on both sides: a few ulps apart
FD_H = 1e-6
FD_RTOL = 1e-7  # central differences in float64, see the module docstring

TS = np.array([0.0, 0.3, 1.0, 2.5, 4.0, 7.75, 10.0, 13.0])


def central_difference(f, x, h=FD_H):
    """Central finite difference of a scalar function of a scalar, in float64."""
    return (float(f(x + h)) - float(f(x - h))) / (2 * h)


# ---------------------------------------------------------------- reference closed forms


def cosine_ref(t, peak, horizon, final=0.0):
    u = np.clip(t / horizon, 0.0, 1.0)
    return final + 0.5 * (peak - final) * (1 + np.cos(np.pi * u))


def warmup_ref(t, peak, warmup, horizon, final, decay, initial):
    u = np.clip((t - warmup) / (horizon - warmup), 0.0, 1.0)
    if decay == "cosine":
        dec = final + 0.5 * (peak - final) * (1 + np.cos(np.pi * u))
    elif decay == "linear":
        dec = peak + (final - peak) * u
    else:
        dec = peak * (final / peak) ** u
    ramp = initial + (peak - initial) * t / warmup
    return np.where(t < warmup, ramp, dec)


# (schedule, reference values on TS)
CASES = {
    "constant": (hsgd.Constant(0.37), np.full(TS.shape, 0.37)),
    "piecewise_linear": (
        hsgd.PiecewiseLinear([0.5, 2.0, 8.0], [0.1, 1.0, 0.05]),
        np.interp(TS, [0.5, 2.0, 8.0], [0.1, 1.0, 0.05]),
    ),
    "exponential": (hsgd.ExponentialDecay(1.5, 0.3), 1.5 * np.exp(-0.3 * TS)),
    "step": (hsgd.StepDecay(2.0, 0.5, 2.0), 2.0 * 0.5 ** np.floor(TS / 2.0)),
    "cosine": (hsgd.Cosine(1.2, 10.0), cosine_ref(TS, 1.2, 10.0)),
    "cosine_final": (hsgd.Cosine(1.2, 10.0, final=0.2), cosine_ref(TS, 1.2, 10.0, 0.2)),
    "warmup_cosine": (
        hsgd.WarmupDecay(1.0, 2.0, 10.0, final=0.1, decay="cosine", initial=0.05),
        warmup_ref(TS, 1.0, 2.0, 10.0, 0.1, "cosine", 0.05),
    ),
    "warmup_linear": (
        hsgd.WarmupDecay(1.0, 2.0, 10.0, final=0.1, decay="linear"),
        warmup_ref(TS, 1.0, 2.0, 10.0, 0.1, "linear", 0.0),
    ),
    "warmup_exponential": (
        hsgd.WarmupDecay(1.0, 2.0, 10.0, final=0.01, decay="exponential"),
        warmup_ref(TS, 1.0, 2.0, 10.0, 0.01, "exponential", 0.0),
    ),
    # t_w = 0: no warm-up, WarmupDecay("cosine") is Cosine.
    "warmup_zero": (hsgd.WarmupDecay(1.3, 0.0, 10.0, final=0.1), cosine_ref(TS, 1.3, 10.0, 0.1)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_values_vmap_on_grid_and_jit(name):
    schedule, expected = CASES[name]
    loop = np.array([float(schedule(t)) for t in TS])
    # Reference: the docstring formula in NumPy; same operations, so rtol 1e-12 (a few ulps).
    np.testing.assert_allclose(loop, expected, rtol=RTOL, atol=0)
    # vmap over t and on_grid equal the scalar Python loop; vectorised XLA kernels may differ
    # from scalar ones in the last ulp, hence 1e-14.
    np.testing.assert_allclose(jax.vmap(schedule)(jnp.asarray(TS)), loop, rtol=1e-14)
    grid = schedule.on_grid(TS)
    assert grid.shape == TS.shape and grid.dtype == jnp.float64
    np.testing.assert_allclose(grid, loop, rtol=1e-14)
    # jit, with the schedule as a pytree argument; reference: the closed form, as above.
    jitted = jax.jit(lambda s, t: s.on_grid(t))(schedule, jnp.asarray(TS))
    np.testing.assert_allclose(jitted, expected, rtol=RTOL)


def test_hand_computed_points():
    # Reference: values at binary-exact points worked out by hand (no transcendental rounding
    # beyond cos(π/2) ≈ 6e-17, hence atol 1e-15).
    assert float(hsgd.Cosine(2.0, 4.0)(0.0)) == 2.0
    assert float(hsgd.Cosine(2.0, 4.0)(2.0)) == pytest.approx(1.0, abs=1e-15)
    assert float(hsgd.Cosine(2.0, 4.0)(4.0)) == pytest.approx(0.0, abs=1e-15)
    assert float(hsgd.Cosine(2.0, 4.0)(9.0)) == pytest.approx(0.0, abs=1e-15)  # constant after T
    assert float(hsgd.StepDecay(1.0, 0.5, 1.0)(3.0)) == 0.125  # ⌊3/1⌋ = 3 halvings, exact
    assert float(hsgd.StepDecay(1.0, 0.5, 1.0)(2.999)) == 0.25
    assert float(hsgd.StepDecay(1.0, 0.5, 1.0)(-3.0)) == 1.0  # γ_0 for t < 0 (docstring)
    assert float(hsgd.PiecewiseLinear([0.0, 1.0], [1.0, 3.0])(0.5)) == 2.0  # exact midpoint
    assert float(hsgd.PiecewiseLinear([0.0, 1.0], [1.0, 3.0])(-1.0)) == 1.0  # constant before
    assert float(hsgd.PiecewiseLinear([0.0, 1.0], [1.0, 3.0])(5.0)) == 3.0  # constant after
    assert float(hsgd.PiecewiseLinear([2.0], [0.7])(9.0)) == 0.7  # a single knot is constant
    # warm-up ramp: initial + (peak - initial) t / t_w = 0.5 + 0.5 * 0.5 = 0.75, exact
    assert float(hsgd.WarmupDecay(1.0, 2.0, 10.0, initial=0.5)(1.0)) == 0.75
    assert float(hsgd.WarmupDecay(1.0, 2.0, 10.0)(2.0)) == 1.0  # peak at the end of warm-up


def test_on_grid_accepts_lists_and_ints():
    schedule = hsgd.ExponentialDecay(1.0, 0.5)
    got = schedule.on_grid([0, 1, 2])
    assert got.dtype == jnp.float64
    # Reference: e^{-t/2} in NumPy, same float64 exp: rtol 1e-12.
    np.testing.assert_allclose(got, np.exp(-0.5 * np.arange(3.0)), rtol=RTOL)


def test_vmap_over_constant_value():
    got = jax.vmap(lambda g: hsgd.Constant(g)(1.0))(jnp.array([0.1, 0.2]))
    # Reference: Constant(g)(t) = g; g * 1.0 is exact.
    np.testing.assert_array_equal(got, [0.1, 0.2])


def test_vmap_over_parameters():
    peaks = jnp.array([0.5, 1.0, 2.0])
    got = jax.vmap(lambda p: hsgd.Cosine(p, 10.0)(2.5))(peaks)
    # Reference: the closed form for each peak; constructed from tracers (checks skipped).
    np.testing.assert_allclose(got, cosine_ref(2.5, np.asarray(peaks), 10.0), rtol=RTOL)
    rates = jnp.array([0.0, 0.1, 1.0])
    got = jax.vmap(lambda r: hsgd.ExponentialDecay(1.0, r).on_grid(TS))(rates)
    np.testing.assert_allclose(got, np.exp(-np.outer(np.asarray(rates), TS)), rtol=RTOL)


# ---------------------------------------------------------------- gradients


@pytest.mark.parametrize("t", [0.0, 2.5, 7.0, 12.0])
def test_grad_cosine_peak(t):
    f = lambda p: hsgd.Cosine(p, 10.0, final=0.1)(t)
    g = float(jax.grad(f)(1.3))
    # Reference 1: central differences (rtol 1e-7, module docstring).
    assert g == pytest.approx(central_difference(f, 1.3), rel=FD_RTOL)
    # Reference 2: ∂γ/∂γ_p = (1 + cos(π min(t,T)/T))/2, same float64 cos: rtol 1e-12.
    assert g == pytest.approx(0.5 * (1 + np.cos(np.pi * min(t, 10.0) / 10.0)), rel=RTOL,
                              abs=1e-15)


@pytest.mark.parametrize("t", [0.2, 1.5, 4.0, 9.0])
def test_grad_piecewise_linear_values(t):
    times = jnp.array([0.5, 2.0, 8.0])
    v0 = np.array([0.1, 1.0, 0.05])
    g = np.asarray(jax.grad(lambda v: hsgd.PiecewiseLinear(times, v)(t))(jnp.asarray(v0)))
    fd = np.empty(3)
    for i in range(3):
        e = np.zeros(3)
        e[i] = 1.0
        fd[i] = central_difference(lambda x: hsgd.PiecewiseLinear(times, v0 + x * e)(t), 0.0)
    # Reference: central differences. Knots not bracketing t do not enter the value at all, so
    # their difference quotient is exactly 0; atol 1e-9 covers the cancellation error of the others.
    np.testing.assert_allclose(g, fd, rtol=FD_RTOL, atol=1e-9)
    # The interpolation weights: nonnegative, summing to 1 (linear interpolation), to round-off.
    assert np.all(g >= 0) and g.sum() == pytest.approx(1.0, rel=1e-14)


@pytest.mark.parametrize("decay", ["cosine", "linear", "exponential"])
@pytest.mark.parametrize("t", [0.7, 5.0, 15.0])  # warm-up, decay, after T
def test_grad_warmup_peak(decay, t):
    f = lambda p: hsgd.WarmupDecay(p, 2.0, 10.0, final=0.05, decay=decay, initial=0.01)(t)
    g = float(jax.grad(f)(1.1))
    # Reference: central differences (rtol 1e-7, module docstring).
    assert g == pytest.approx(central_difference(f, 1.1), rel=FD_RTOL)


@pytest.mark.parametrize("t", [0.0, 0.5, 3.0, 20.0])
def test_grad_exponential_rate(t):
    f = lambda r: hsgd.ExponentialDecay(1.5, r)(t)
    g = float(jax.grad(f)(0.2))
    # Reference 1: central differences (rtol 1e-7, module docstring); at t = 0 both are 0
    # (the function does not depend on the rate), hence the tiny atol.
    assert g == pytest.approx(central_difference(f, 0.2), rel=FD_RTOL, abs=1e-12)
    # Reference 2: ∂γ/∂ρ = -t γ_0 e^{-ρt}, the same exp: rtol 1e-12.
    assert g == pytest.approx(-t * 1.5 * np.exp(-0.2 * t), rel=RTOL)


# ---------------------------------------------------------------- as_schedule, FunctionSchedule


def test_as_schedule():
    s = hsgd.as_schedule(0.5)
    assert isinstance(s, hsgd.Constant)
    assert float(s(3.0)) == 0.5
    assert isinstance(hsgd.as_schedule(2), hsgd.Constant)
    assert isinstance(hsgd.as_schedule(jnp.asarray(0.5)), hsgd.Constant)
    cosine = hsgd.Cosine(1.0, 10.0)
    assert hsgd.as_schedule(cosine) is cosine
    f = hsgd.as_schedule(lambda t: 0.1)
    assert isinstance(f, hsgd.FunctionSchedule)
    assert float(f(2.0)) == 0.1
    # a function that ignores t still broadcasts over a grid
    np.testing.assert_array_equal(f.on_grid(TS), np.full(TS.shape, 0.1))
    with pytest.raises(TypeError, match="str"):
        hsgd.as_schedule("x")
    with pytest.raises(ValueError, match="value"):
        hsgd.as_schedule(-0.5)


def test_function_schedule_wraps_optax():
    d = 10
    opt = optax.cosine_decay_schedule(1.0, 100)
    schedule = hsgd.FunctionSchedule(lambda t: opt(t * d))
    ts = np.array([0.0, 0.5, 3.3, 7.0, 10.0, 12.0])
    got = schedule.on_grid(ts)
    assert got.dtype == jnp.float64
    # Reference 1: optax's own values at step k = t d (same function, same arithmetic).
    expected = np.array([float(opt(t * d)) for t in ts])
    np.testing.assert_allclose(got, expected, rtol=RTOL)
    # Reference 2: optax's documented closed form ½(1 + cos(π min(k, K)/K)). optax may evaluate
    # in float32 depending on its inputs, so compare at float32 accuracy (1e-6 absolute).
    k = np.minimum(ts * d, 100)
    np.testing.assert_allclose(got, 0.5 * (1 + np.cos(np.pi * k / 100)), atol=1e-6)
    np.testing.assert_allclose(jax.jit(lambda t: schedule(t))(0.5), expected[1], rtol=RTOL)


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: hsgd.Constant(0.0), r"value must be > 0"),
        (lambda: hsgd.Constant(-1.0), r"value must be > 0"),
        (lambda: hsgd.Constant(np.nan), r"value must be finite"),
        (lambda: hsgd.Cosine(0.0, 10.0), r"peak must be > 0"),
        (lambda: hsgd.Cosine(1.0, 0.0), r"horizon must be > 0"),
        (lambda: hsgd.Cosine(1.0, 10.0, final=-0.1), r"final must be >= 0"),
        (lambda: hsgd.Cosine(1.0, 10.0, final=2.0), r"final.*must not exceed peak"),
        (lambda: hsgd.ExponentialDecay(0.0, 0.1), r"initial must be > 0"),
        (lambda: hsgd.ExponentialDecay(1.0, -0.1), r"rate must be >= 0"),
        (lambda: hsgd.StepDecay(-1.0, 0.5, 1.0), r"initial must be > 0"),
        (lambda: hsgd.StepDecay(1.0, 1.5, 1.0), r"factor must be in \(0, 1\]"),
        (lambda: hsgd.StepDecay(1.0, 0.0, 1.0), r"factor must be > 0"),
        (lambda: hsgd.StepDecay(1.0, 0.5, 0.0), r"interval must be > 0"),
        (lambda: hsgd.PiecewiseLinear([0.0, 1.0], [0.1, 0.0]), r"values must be > 0"),
        (lambda: hsgd.PiecewiseLinear([0.0, 1.0, 1.0], [0.1, 0.2, 0.3]),
         r"times must be strictly increasing"),
        (lambda: hsgd.PiecewiseLinear([1.0, 0.0], [0.1, 0.2]),
         r"times must be strictly increasing"),
        (lambda: hsgd.PiecewiseLinear([0.0, 1.0], [0.1, 0.2, 0.3]),
         r"times and values.*same length"),
        (lambda: hsgd.PiecewiseLinear([], []), r"times.*at least one"),
        (lambda: hsgd.PiecewiseLinear([0.0, np.inf], [0.1, 0.2]), r"times must be finite"),
        (lambda: hsgd.WarmupDecay(0.0, 1.0, 10.0), r"peak must be > 0"),
        (lambda: hsgd.WarmupDecay(1.0, 10.0, 10.0), r"warmup.*must be < horizon.*10\.0"),
        (lambda: hsgd.WarmupDecay(1.0, 12.0, 10.0), r"warmup.*must be < horizon.*12\.0"),
        (lambda: hsgd.WarmupDecay(1.0, -1.0, 10.0), r"warmup must be >= 0"),
        (lambda: hsgd.WarmupDecay(1.0, 1.0, 10.0, decay="bogus"), r"decay.*'bogus'"),
        (lambda: hsgd.WarmupDecay(1.0, 1.0, 10.0, final=0.0, decay="exponential"),
         r"final must be > 0"),
        (lambda: hsgd.WarmupDecay(1.0, 1.0, 10.0, final=2.0), r"final.*must not exceed peak"),
        (lambda: hsgd.WarmupDecay(1.0, 1.0, 10.0, initial=-0.5), r"initial must be >= 0"),
    ],
)
def test_bad_parameters_raise(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_boundary_parameters_are_accepted():
    # The closed ends of the documented ranges: rate 0, factor 1, final 0 (cosine/linear).
    assert float(hsgd.ExponentialDecay(1.0, 0.0)(5.0)) == 1.0
    assert float(hsgd.StepDecay(1.0, 1.0, 1.0)(5.0)) == 1.0
    assert float(hsgd.WarmupDecay(1.0, 1.0, 10.0, final=0.0, decay="linear")(10.0)) == 0.0
    assert float(hsgd.Cosine(1.0, 10.0, final=1.0)(5.0)) == 1.0


def test_warmup_stable_decay():
    # WSD by hand: ramp 0 -> 1 on [0, 1], peak on [1, 8], linear cool-down to 0 at T = 10
    s = hsgd.WarmupDecay(1.0, 1.0, 10.0, decay="linear", stable=8.0)
    np.testing.assert_allclose([s(t) for t in (0.5, 1.0, 5.0, 8.0, 9.0, 10.0, 11.0)],
                               [0.5, 1.0, 1.0, 1.0, 0.5, 0.0, 0.0], atol=1e-12)
    # stable = warmup is the schedule without a stable phase
    a, b = hsgd.WarmupDecay(1.0, 1.0, 10.0), hsgd.WarmupDecay(1.0, 1.0, 10.0, stable=1.0)
    np.testing.assert_allclose([a(t) for t in (2.0, 6.0)], [b(t) for t in (2.0, 6.0)])
    with pytest.raises(ValueError, match="stable must be in"):
        hsgd.WarmupDecay(1.0, 1.0, 10.0, stable=0.5)
