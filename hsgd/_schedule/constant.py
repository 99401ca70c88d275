import jax.numpy as jnp

from .base import AbstractSchedule, parameter


class Constant(AbstractSchedule):
    r"""A constant learning rate (SPEC §4):

    $$\gamma(t) = \gamma_0.$$

    **Arguments:**

    - `value`: $\gamma_0 > 0$.

    Example: `Constant(0.5)(3.0)` is `0.5`.
    """

    value: jnp.ndarray

    def __init__(self, value):
        self.value = parameter(value, "value", positive=True)

    def __call__(self, t):
        return self.value * jnp.ones_like(jnp.asarray(t, dtype=self.value.dtype))
