"""Learning rates >= 0 everywhere (issue 14: zero is legitimate, negative/NaN are not) and
checks whose message comes first, outside `jit` and inside it (`hsgd._checks`)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hsgd
from hsgd._checks import CheckError, check, check_learning_rate, plain_errors


@pytest.fixture(scope="module")
def streaming():
    return hsgd.Problem.random(hsgd.LeastSquares(0.3), hsgd.Spectrum.uniform(60, 0.5, 1.5),
                               jax.random.PRNGKey(0))


@pytest.fixture(scope="module")
def finite():
    return hsgd.FiniteProblem.gaussian(n=80, d=40, noise_std=0.3)


def _runners(streaming, finite):
    ts = np.linspace(0.0, 2.0, 5)
    ks = np.arange(0, 41, 10)
    key = jax.random.PRNGKey(1)
    return {
        "simulate": lambda s: hsgd.simulate(streaming, s, ts, key, num_runs=2).risk,
        "sde": lambda s: hsgd.sde(streaming, s, ts, key, num_paths=2).risk,
        "finite simulate": lambda s: hsgd.simulate(finite, s, ts, key, num_runs=2).loss,
        "finite sde": lambda s: hsgd.sde(finite, s, ts, key, num_paths=2).loss,
        "momentum_recursion": lambda s: hsgd.momentum_recursion(
            finite, lambda k: s(k / 40.0), ks, batch=4, momentum=0.5).loss,
        "simulate_momentum": lambda s: hsgd.simulate_momentum(
            finite, lambda k: s(k / 40.0), ks, key, batch=4, momentum=0.5).loss,
    }


RUNNERS = ["simulate", "sde", "finite simulate", "finite sde", "momentum_recursion",
           "simulate_momentum"]


@pytest.mark.parametrize("name", RUNNERS)
def test_zero_learning_rate_is_allowed(name, streaming, finite):
    # Cosine annealing to 0 at the horizon (the README quickstart's schedule): gamma(T) = 0.
    run = _runners(streaming, finite)[name]
    out = np.asarray(run(hsgd.Cosine(0.05, 2.0)))
    assert np.all(np.isfinite(out))
    # gamma = 0 from the start: nothing moves, so the recorded loss is constant (exactly: the
    # iterate is unchanged and its loss/risk is a deterministic function of it — the finite
    # SDE's noise is gamma times a Brownian increment, zero too).
    frozen = np.asarray(run(lambda t: 0.0 * t))
    np.testing.assert_allclose(frozen, frozen[..., :1] * np.ones_like(frozen), rtol=0, atol=0)


@pytest.mark.parametrize("name", RUNNERS)
@pytest.mark.parametrize("bad,shown", [(-0.1, "-0.1"), (float("nan"), "nan")])
def test_negative_or_nan_learning_rate_is_rejected_first(name, bad, shown, streaming, finite):
    run = _runners(streaming, finite)[name]
    with pytest.raises(ValueError) as info:
        run(lambda t: bad + 0.0 * t)
    msg = str(info.value)
    assert msg.startswith("the learning rate must be finite and >= 0"), msg
    assert shown in msg and "Above is the stack" not in msg


def test_negative_learning_rate_between_record_times_is_caught(streaming):
    # Negative only on (0.9, 1.1), between the record times 0 and 2: the probe grid catches it.
    def dip(t):
        return jnp.where(jnp.abs(t - 1.0) < 0.1, -1.0, 0.5)

    with pytest.raises(ValueError, match="learning rate must be finite and >= 0"):
        hsgd.simulate(streaming, dip, [0.0, 2.0], jax.random.PRNGKey(0), num_runs=1)


def test_traced_learning_rate_check_reads_plainly(finite):
    # Inside vmap the schedule is traced: the check runs inside the jitted recursion and the
    # error is re-raised with its own sentence first.
    ks = np.arange(0, 21, 10)
    with pytest.raises(ValueError) as info:
        jax.vmap(lambda g: hsgd.momentum_recursion(finite, hsgd.PiecewiseLinear([0.0, 20.0], [
            0.01, g]), ks, batch=4).loss)(jnp.array([0.01, -0.01]))
    assert str(info.value).startswith("the learning rate must be finite and >= 0")
    assert isinstance(info.value, RuntimeError)  # still caught by `except RuntimeError`


def test_check_concrete_and_traced():
    with pytest.raises(ValueError, match=r"^x must be >= 0, got -2.0; pass x >= 0$"):
        check(None, np.array([False, True]), "x must be >= 0",
              lambda bad: f", got {[1.0, -2.0][int(np.argmax(bad))]}", fix="pass x >= 0")
    assert check(3, np.array([False]), "never") == 3

    @eqx.filter_jit
    def f(x):
        return check(x, x < 0, "x must be >= 0", fix="pass x >= 0")

    assert float(f(jnp.array(1.0))) == 1.0
    with pytest.raises(CheckError) as info, plain_errors():
        f(jnp.array(-1.0))
    assert str(info.value).startswith("x must be >= 0; pass x >= 0")


def test_check_learning_rate_returns_rates_and_names_the_time():
    ts = jnp.linspace(0.0, 10.0, 3)
    np.testing.assert_allclose(check_learning_rate(hsgd.Cosine(1.0, 10.0), ts), [1, 0.5, 0],
                               atol=1e-15)
    with pytest.raises(ValueError, match=r"got gamma\(epoch = 5\) = -4.0"):
        check_learning_rate(lambda t: 1.0 - t, ts, time_name="epoch")


def test_sweep_accepts_zero_and_rejects_negative_stepsizes(streaming):
    fn = hsgd.ode_outcomes(streaming.coarsen(8), jnp.linspace(0.0, 1.0, 3))
    with pytest.raises(ValueError, match=r"^sweep point gamma must be finite and >= 0, got "
                                         r"gamma = -0.5 at point 1"):
        hsgd.sweep(fn, hsgd.grid(gamma=[0.5, -0.5]), progress=False)
    with pytest.raises(ValueError, match="sweep point batch must be finite and >= 1"):
        hsgd.sweep(fn, hsgd.grid(gamma=[0.5], batch=[0.0]), progress=False)
