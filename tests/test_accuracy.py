"""Error-controlled expectations inside a solve (issue 14 part 1, `hsgd._accuracy`): hsgd.ode
chooses the rule of a generic-engine loss to meet `expectation_rtol`, reports the estimate along
the solution, caches the choice, and warns when the tolerance cannot be met."""

import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hsgd
from hsgd import _accuracy


def _tanh_pair(x, x_star, eps):
    # a smooth, non-polynomial loss of p = 2 (a tanh student against a tanh teacher)
    return 0.5 * (jnp.tanh(x[0]) - jnp.tanh(x_star[0])) ** 2


def _hinge(x, x_star, eps):
    return jnp.maximum(0.0, 1.0 - jnp.sign(x_star[0]) * x[0])


@pytest.fixture(scope="module")
def tanh_problem():
    spec = hsgd.Spectrum.uniform(200, 0.5, 1.5)
    return hsgd.Problem.random(hsgd.CustomLoss(_tanh_pair), spec, jax.random.PRNGKey(0),
                               target_norm=1.5, init_norm=0.5)


def test_chosen_rule_meets_the_tolerance_against_a_fine_rule(tanh_problem):
    # Reference: the same ODE on a 120 x 120 Gauss-Hermite rule (its own error on this analytic
    # integrand is far below 1e-10). With moments within 1e-5 the risk curve is within ~1e-5
    # too (the ODE is Lipschitz in the moments over this horizon); allow 5e-5 for the solver's
    # rtol 1e-7 steps and the error propagation through 6 time units.
    ts = jnp.linspace(0.0, 6.0, 13)
    with warnings.catch_warnings():
        warnings.simplefilter("error", hsgd.ExpectationAccuracyWarning)
        sol = hsgd.ode(tanh_problem, 0.8, ts)
    assert sol.moment_error is not None and float(sol.moment_error) <= 1e-5
    fine = hsgd.CustomLoss(_tanh_pair, rule=hsgd.GaussianRule.gauss_hermite(2, 120))
    ref = hsgd.ode(eqx.tree_at(lambda p: p.loss, tanh_problem, fine), 0.8, ts,
                   expectation_rtol=None)
    np.testing.assert_allclose(sol.risk, ref.risk, rtol=5e-5)


def test_the_choice_is_cached_and_skipped_for_closed_forms(tanh_problem, monkeypatch):
    calls = []
    real = type(tanh_problem.loss).refined

    def counting(self, B0, rtol=1e-5, **kw):
        calls.append(1)
        return real(self, B0, rtol, **kw)

    monkeypatch.setattr(type(tanh_problem.loss), "refined", counting)
    _accuracy._CACHE.clear()
    ts = jnp.linspace(0.0, 2.0, 5)
    first = hsgd.ode(tanh_problem, 0.8, ts)
    n_first = len(calls)
    second = hsgd.ode(tanh_problem, 0.8, ts)
    assert n_first >= 1 and len(calls) == n_first  # the second solve chose nothing again
    np.testing.assert_array_equal(first.risk, second.risk)
    ls = hsgd.Problem.random(hsgd.LeastSquares(0.3), hsgd.Spectrum.uniform(50, 0.5, 1.5),
                             jax.random.PRNGKey(1))
    assert hsgd.ode(ls, 0.5, ts).moment_error is None  # closed form: nothing to choose


def test_a_coarse_user_rule_is_kept_and_its_error_reported_loudly(tanh_problem):
    # A 3 x 3 Gauss-Hermite rule on the tanh loss is off by ~1e-3 (measured against the 120 x
    # 120 rule below): hsgd keeps the user's rule, estimates its error and warns.
    coarse = hsgd.CustomLoss(_tanh_pair, rule=hsgd.GaussianRule.gauss_hermite(2, 3))
    prob = eqx.tree_at(lambda p: p.loss, tanh_problem, coarse)
    ts = jnp.linspace(0.0, 2.0, 5)
    with pytest.warns(hsgd.ExpectationAccuracyWarning):
        sol = hsgd.ode(prob, 0.8, ts)
    fine = hsgd.CustomLoss(_tanh_pair, rule=hsgd.GaussianRule.gauss_hermite(2, 120))
    true = float(jnp.max(jax.vmap(lambda B: jnp.max(jnp.abs(
        coarse.moments(B).h - fine.moments(B).h) / fine.moments(B).h))(sol.B)))
    assert float(sol.moment_error) >= true > 1e-5  # the estimate covers the true error


@pytest.mark.slow
def test_a_kinked_loss_that_misses_the_tolerance_warns_with_the_estimate():
    spec = hsgd.Spectrum.uniform(100, 0.5, 1.5)
    prob = hsgd.Problem.random(hsgd.CustomLoss(_hinge), spec, jax.random.PRNGKey(2),
                               target_norm=1.0, init_norm=0.5)
    with pytest.warns(hsgd.ExpectationAccuracyWarning, match="off by|miss rtol"):
        sol = hsgd.ode(prob, 0.5, jnp.linspace(0.0, 1.0, 3), expectation_rtol=1e-7)
    assert float(sol.moment_error) > 1e-7


def test_traced_solves_keep_the_rule_and_still_report(tanh_problem):
    ts = jnp.linspace(0.0, 1.0, 3)
    err = jax.jit(lambda p: hsgd.ode(p, 0.8, ts).moment_error)(tanh_problem)
    assert np.isfinite(float(err))


def test_expectation_rtol_on_a_finite_problem_is_an_error():
    fin = hsgd.FiniteProblem.gaussian(40, 20)
    with pytest.raises(ValueError, match="expectation_rtol applies to streaming problems"):
        hsgd.ode(fin, 0.1, [0.0, 1.0], expectation_rtol=1e-5)
