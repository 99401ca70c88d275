r"""The table that joins problems and optimizers: for each method (`ode`, `simulate`, `sde`,
`volterra`) and each (problem type, optimizer type), the function that computes it.

A cell is registered by the module that implements it (`hsgd._dynamics.*`, `hsgd._simulate.*`,
`hsgd._sde.*`); the public methods only look up. Adding an optimizer means: the module, its cells
registered here, and its config name ([`register_optimizer`][]) — nothing in `tune`, `sweep`,
the CLI or the config parser.
"""

from collections.abc import Callable

METHODS = ("ode", "simulate", "sde", "volterra")

_CELLS: dict[tuple[str, type, type], Callable] = {}
_OPTIMIZERS: dict[str, type] = {}


class UnsupportedError(TypeError):
    """A (problem, optimizer) pair that a method has no cell for."""


def register(method: str, problem_type: type, optimizer_type: type):
    r"""Decorator: register `fn(problem, optimizer, ts, ...)` as `method`'s cell for
    (`problem_type`, `optimizer_type`).

    The cell gets the problem and the optimizer as passed (after a bare schedule has become
    [`SGD`][]), then the method's positional arguments and keywords. Problem types match by
    inheritance (a subclass of [`Problem`][] uses `Problem`'s cells); optimizer types match
    exactly, so a subclass of `SGD` with a new rule never silently runs plain SGD.

    Example (a test registers its own optimizer this way):

    ```python
    @hsgd.register("ode", hsgd.Problem, MyOptimizer)
    def my_ode(problem, optimizer, ts, **options):
        return hsgd.ode(problem, hsgd.SGD(optimizer.schedule), ts, **options)
    ```
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")

    def decorate(fn: Callable) -> Callable:
        _CELLS[(method, problem_type, optimizer_type)] = fn
        return fn

    return decorate


def register_optimizer(name: str, optimizer_type: type) -> type:
    """Make `optimizer_type` the config's `[optimizer] name = "<name>"` (its keys are the
    module's fields). Returns the type. Re-registering a class of the same module and qualified
    name (a notebook cell run again) replaces it; another class under a taken name is an
    error."""
    old = _OPTIMIZERS.get(name)
    if old is not None and old is not optimizer_type and (
            (old.__module__, old.__qualname__)
            != (optimizer_type.__module__, optimizer_type.__qualname__)):
        raise ValueError(f"optimizer name {name!r} is already taken by "
                         f"{_OPTIMIZERS[name].__name__}")
    _OPTIMIZERS[name] = optimizer_type
    return optimizer_type


def optimizer_types() -> dict[str, type]:
    """The registered optimizers, config name → type."""
    return dict(_OPTIMIZERS)


def optimizer_name(optimizer_type: type) -> str:
    for name, t in _OPTIMIZERS.items():
        if t is optimizer_type:
            return name
    return optimizer_type.__name__


def supported(method: str | None = None) -> list[tuple[str, str, str]]:
    """The registered cells as `(method, problem type, optimizer type)` names, sorted; only
    `method`'s when given. Example: `("ode", "FiniteProblem", "HeavyBall")`."""
    rows = {(m, p.__name__, o.__name__) for (m, p, o) in _CELLS if method in (None, m)}
    return sorted(rows)


def lookup(method: str, problem, optimizer) -> Callable:
    """The cell for (type(problem), type(optimizer)); an [`UnsupportedError`][] naming the pair
    and listing the supported ones otherwise."""
    o = type(optimizer)
    for p in type(problem).__mro__:
        fn = _CELLS.get((method, p, o))
        if fn is not None:
            return fn
    pairs = ", ".join(f"({p}, {q})" for _, p, q in supported(method)) or "none"
    raise UnsupportedError(f"hsgd.{method} has no cell for ({type(problem).__name__}, "
                           f"{o.__name__}); supported pairs: {pairs}")
