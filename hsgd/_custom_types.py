"""Type aliases used across hsgd (jaxtyping)."""

from typing import TypeAlias

from jaxtyping import Array, ArrayLike, Float, Int

Scalar: TypeAlias = Float[Array, ""]
ScalarLike: TypeAlias = Float[ArrayLike, ""] | float
Modes: TypeAlias = Float[Array, " n"]
ModeMoments: TypeAlias = Float[Array, "n p p"]
Moment: TypeAlias = Float[Array, "p p"]
Times: TypeAlias = Float[Array, " T"]
PRNGKey: TypeAlias = Array

__all__ = ["Array", "ArrayLike", "Float", "Int", "Scalar", "ScalarLike", "Modes", "ModeMoments",
           "Moment", "Times", "PRNGKey"]
