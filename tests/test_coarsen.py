"""Coarsening refinement study (SPEC §5): a power law with 10^6 eigenvalues, binned in log-spaced
bins; the ODE risk with 256 bins must be within 0.5% of the 4096-bin curve, and the error must
shrink as bins are refined (the O(bin width) law)."""

import jax.numpy as jnp
import numpy as np
import pytest

import hsgd


@pytest.mark.slow  # 16 s in the suite; test_problem's coarsening check stays
def test_power_law_coarsening_refinement():
    spec = hsgd.Spectrum.power_law(1_000_000, 0.5)  # tr K/d = 1, lambda from ~500 to ~0.5
    prob = hsgd.Problem.isotropic(hsgd.Logistic(), spec, target_norm=2.0)
    ts = jnp.geomspace(0.01, 10.0, 12)
    curves = {n: np.asarray(hsgd.ode(prob.coarsen(n), 1.0, ts).risk) for n in (64, 256, 4096)}
    err = {n: np.max(np.abs(curves[n] - curves[4096]) / curves[4096]) for n in (64, 256)}
    assert err[256] < 5e-3, err
    # refinement: 4x more bins must cut the error (bin width shrinks 4x in log lambda)
    assert err[256] < 0.5 * err[64], err
    # coarsening preserves tr K/d exactly, hence the initial risk
    np.testing.assert_allclose(float(prob.coarsen(256).spectrum.mean()), 1.0, rtol=1e-12)
