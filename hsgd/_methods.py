r"""The four methods, each one lookup in the problems × optimizers table (`hsgd._registry`).

`optimizer` may be an [`AbstractOptimizer`][] or, meaning [`SGD`][] of it, a float, a schedule or
a callable $t\mapsto\gamma$ (then `batch=` may be given as before optimizers were values). The
keywords after it are the cell's options (see each cell's page: e.g. `rtol`, `solver`,
`statistics` for the streaming ODE; `num_runs`, `progress` for the simulators).
"""

import inspect

from ._optimizer import as_optimizer
from ._registry import lookup


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


def ode(problem, optimizer, ts, *, batch=None, **options):
    r"""The deterministic equivalent of `optimizer` on `problem` at the times `ts`: the per-mode
    ODE (streaming SGD, SPEC §1; finite-data SGD, SPEC §2) or the exact recursion where the
    dynamics are discrete by nature (heavy ball on finite data, SPEC §3).

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
    return _call("ode", problem, optimizer, ts, **options)


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


def sde(problem, optimizer, ts, key, *, batch=None, **options):
    r"""Paths of homogenized SGD — the diffusion between the optimiser and its deterministic
    equivalent — recorded at `ts`.

    **Returns:** [`Runs`][] over `num_paths` paths.

    Cells (see [`supported`][]`("sde")`):

    - [`Problem`][] × [`SGD`][]: [`hsgd._sde.streaming_sgd.sde`][] — `num_paths`, `dt`,
      `solver`, `coupled`, `blowup`, `risk_samples`;
    - [`FiniteProblem`][] × [`SGD`][] (time in epochs): the same options.
    """
    optimizer = as_optimizer(optimizer, batch=batch)
    return _call("sde", problem, optimizer, ts, key, **options)


def volterra(problem, optimizer, ts, **options):
    r"""The integral-equation form of the deterministic equivalent, where one exists.

    **Returns:** a [`Solution`][].

    Cells: [`FiniteProblem`][] × [`SGD`][]: [`hsgd._dynamics.finite_sgd.volterra`][] (SPEC §2,
    the training loss as a convolution Volterra equation) — `resolution`, `blowup`.
    """
    optimizer = as_optimizer(optimizer)
    return _call("volterra", problem, optimizer, ts, **options)
