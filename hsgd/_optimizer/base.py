"""The abstract optimizer."""

import dataclasses

import equinox as eqx
import jax.numpy as jnp
import numpy as np

from .._checks import is_traced
from .._schedule import AbstractSchedule


class AbstractOptimizer(eqx.Module):
    r"""How the iterate moves — never what the data are.

    An optimizer is a value you pass around, like an optax transformation: an `eqx.Module` whose
    continuous parameters (the schedule's parameters, the momentum, …) are array leaves, so
    `jax.vmap`, `jax.grad`, [`tune`][] and [`sweep`][] go through it. The methods
    [`ode`][], [`simulate`][], [`sde`][] and [`volterra`][] look the pair (problem type,
    optimizer type) up in one registry; a new optimizer is usable everywhere once its cells are
    registered with [`register`][] and its name with [`register_optimizer`][].

    Every optimizer has a `schedule` (the learning rate $\gamma$ as a function of the problem's
    time) and a `batch` (samples per step).
    """

    schedule: eqx.AbstractVar[AbstractSchedule]
    batch: eqx.AbstractVar[object]

    def replace(self, **changes) -> "AbstractOptimizer":
        """A copy with the given fields changed (`dataclasses.replace`; the constructor runs, so
        its checks do too). Example: `SGD(0.5).replace(schedule=hsgd.Cosine(1.0, 10.0))`."""
        return dataclasses.replace(self, **changes)

    def tunable(self, problem) -> dict[str, tuple[float, float]]:
        r"""The continuous fields [`tune`][] may optimise jointly with the schedule on
        `problem`: field name → open bounds `(low, high)` (the deterministic equivalent must be
        differentiable in them). `{}` by default; [`tune`][]'s `bounds=` adds or narrows
        entries."""
        return {}

    @property
    def label(self) -> str:
        """The optimiser's name in tables and plots (`hsgd run`'s "signSGD mean" column, the
        bands of its figure); the class name unless a subclass says otherwise."""
        return type(self).__name__

    def for_simulation(self, problem) -> "AbstractOptimizer":
        r"""This optimizer as the real optimiser runs it on `problem`: fields that [`tune`][]
        and `vmap` treat as continuous but a simulator needs as integers (a batch size) are
        rounded. The identity by default."""
        return self


def checked_batch(batch):
    """`batch` as an optimizer field: a number >= 1 (a `ValueError` naming it otherwise; a traced
    value is kept as is), an array when given one."""
    if not is_traced(batch):
        value = np.asarray(batch, dtype=float)
        if value.ndim != 0 or not (np.isfinite(value) and value >= 1):
            raise ValueError(f"batch must be a number >= 1, got batch={batch!r}")
    return batch if isinstance(batch, int | float) or is_traced(batch) else jnp.asarray(batch)
