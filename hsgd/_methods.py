r"""The four methods, each one lookup in the problems × optimizers table (`hsgd._registry`).

`optimizer` may be an [`AbstractOptimizer`][] or, meaning [`SGD`][] of it, a float, a schedule or
a callable $t\mapsto\gamma$ (then `batch=` may be given as before optimizers were values). The
keywords after it are the cell's options (see each cell's page: e.g. `rtol`, `solver`,
`statistics` for the streaming ODE; `num_runs`, `progress` for the simulators).
"""

import inspect

from ._accuracy import controlled, default_rtol, with_rule_for
from ._optimizer import as_optimizer
from ._problem import Problem
from ._registry import lookup

_DEFAULT = object()


def _expectation_rtol(problem, rtol):
    """The tolerance on the loss's moments for a streaming problem (default 1e-5; float32
    1e-4); other problems have closed forms and take none."""
    if isinstance(problem, Problem):
        return default_rtol(problem.V0.dtype) if rtol is _DEFAULT else rtol
    if rtol is not _DEFAULT:
        raise ValueError(f"expectation_rtol applies to streaming problems (their losses' Gaussian "
                         f"moments); a {type(problem).__name__} has closed forms")
    return None


def _call(method: str, problem, optimizer, *args, **options):
    """Look the cell up and call it; an option the cell does not take is a `ValueError` naming
    it and listing the ones it takes (not Python's bare `TypeError`)."""
    cell = lookup(method, problem, optimizer)
    params = inspect.signature(cell).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        known = [n for n, p in params.items() if p.kind is p.KEYWORD_ONLY]
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise ValueError(f"hsgd.{method} on ({type(problem).__name__}, "
                             f"{type(optimizer).__name__}) does not take {unknown}; it takes "
                             f"{known}")
    return cell(problem, optimizer, *args, **options)


def ode(problem, optimizer, ts, *, batch=None, expectation_rtol=_DEFAULT, **options):
    r"""The deterministic equivalent of `optimizer` on `problem` at the times `ts`: the per-mode
    ODE (streaming SGD, SPEC §1; finite-data SGD, SPEC §2) or the exact recursion where the
    dynamics are discrete by nature (heavy ball on finite data, SPEC §3).

    On a streaming [`Problem`][] the loss's Gaussian moments come from a quadrature rule chosen
    to meet `expectation_rtol` (default $10^{-5}$ relative on each of $h, J, I, A$; $10^{-4}$ in
    float32; `None`: the loss's own rule, unchecked) at $B(0)$, checked along the solution
    (`Solution.moment_error`), chosen again at the worst time and the solve repeated once if
    needed, and an `ExpectationAccuracyWarning` if the tolerance is still missed
    (`hsgd._accuracy`). This is for losses on the generic quadrature engine
    ([`CustomLoss`][], [`Softmax`][]); closed forms and fixed rules (least squares, phase
    retrieval, logistic) have nothing to choose and cost nothing extra.

    **Returns:** a [`Solution`][] (the same fields and meanings for every pair).

    Cells (see [`supported`][]`("ode")`):

    - [`Problem`][] × [`SGD`][]: [`hsgd._dynamics.streaming_sgd.ode`][] — options
      `statistics`, `rtol`, `atol`, `solver`, `stepsize_controller`, `dt0`, `adjoint`,
      `max_steps`, `blowup`;
    - [`FiniteProblem`][] × [`SGD`][] (batch 1, time in epochs):
      [`hsgd._dynamics.finite_sgd.ode`][] — `rtol`, `atol`, `solver`, `adjoint`, `max_steps`,
      `blowup`;
    - [`FiniteProblem`][] × [`HeavyBall`][] (`ts` are iterations):
      [`hsgd._dynamics.finite_heavy_ball.ode`][] — `blowup`.

    ```python
    spec = hsgd.Spectrum.power_law(2000, 0.5)
    prob = hsgd.Problem.isotropic(hsgd.Logistic(), spec, target_norm=2.0)
    sol = hsgd.ode(prob, hsgd.SGD(1.0), jnp.linspace(0, 10, 50))
    sol.risk
    ```
    """
    optimizer = as_optimizer(optimizer, batch=batch)
    rtol = _expectation_rtol(problem, expectation_rtol)
    if not isinstance(problem, Problem):
        return _call("ode", problem, optimizer, ts, **options)
    return controlled(lambda p: _call("ode", p, optimizer, ts, **options), problem, rtol)


def simulate(problem, optimizer, ts, key, *, batch=None, **options):
    r"""The real optimiser on real samples — the ground truth, computed without any of the
    deterministic equivalent's approximations — recorded at `ts`.

    **Returns:** [`Runs`][] over `num_runs` independent runs (vmapped over seeds).

    Cells (see [`supported`][]`("simulate")`):

    - [`Problem`][] × [`SGD`][]: [`hsgd._simulate.streaming_sgd.simulate`][] (fresh Gaussian
      samples every step) — `num_runs`, `blowup`, `progress`, `risk_samples`;
    - [`FiniteProblem`][] × [`SGD`][]: [`hsgd._simulate.finite_sgd.simulate`][] (over the
      rows, epochs) — `num_runs`, `reshuffle`, `blowup`, `progress`;
    - [`FiniteProblem`][] × [`HeavyBall`][]: [`hsgd._simulate.finite_heavy_ball.simulate`][]
      (`ts` are iterations) — `num_runs`, `blowup`, `progress`.
    """
    optimizer = as_optimizer(optimizer, batch=batch)
    return _call("simulate", problem, optimizer, ts, key, **options)


def sde(problem, optimizer, ts, key, *, batch=None, expectation_rtol=_DEFAULT, **options):
    r"""Paths of homogenized SGD — the diffusion between the optimiser and its deterministic
    equivalent — recorded at `ts`.

    On a streaming [`Problem`][] the drift and noise use the loss's moments with the rule chosen
    as for [`ode`][] (`expectation_rtol`, at $B(0)$).

    **Returns:** [`Runs`][] over `num_paths` paths.

    Cells (see [`supported`][]`("sde")`):

    - [`Problem`][] × [`SGD`][]: [`hsgd._sde.streaming_sgd.sde`][] — `num_paths`, `dt`,
      `solver`, `coupled`, `blowup`, `risk_samples`;
    - [`FiniteProblem`][] × [`SGD`][] (time in epochs): the same options.
    """
    optimizer = as_optimizer(optimizer, batch=batch)
    rtol = _expectation_rtol(problem, expectation_rtol)
    if rtol is not None:
        problem = with_rule_for(problem, problem.B0(), rtol)
    return _call("sde", problem, optimizer, ts, key, **options)


def volterra(problem, optimizer, ts, **options):
    r"""The integral-equation form of the deterministic equivalent, where one exists.

    **Returns:** a [`Solution`][].

    Cells: [`FiniteProblem`][] × [`SGD`][]: [`hsgd._dynamics.finite_sgd.volterra`][] (SPEC §2,
    the training loss as a convolution Volterra equation) — `resolution`, `blowup`.
    """
    optimizer = as_optimizer(optimizer)
    return _call("volterra", problem, optimizer, ts, **options)
