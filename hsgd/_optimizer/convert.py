"""A bare schedule where an optimizer is expected means SGD of it."""

from .base import AbstractOptimizer
from .sgd import SGD


def as_optimizer(x, **legacy) -> AbstractOptimizer:
    r"""`x` as an optimizer: an [`AbstractOptimizer`][] is returned as is; a float, a schedule
    or a callable $t\mapsto\gamma$ means [`SGD`][]`(x, **legacy)` (`legacy`: the `batch=`
    keyword the methods accepted before optimizers were values). Passing `batch=` together with
    an optimizer is an error: the batch is the optimizer's field."""
    legacy = {k: v for k, v in legacy.items() if v is not None}
    if isinstance(x, AbstractOptimizer):
        if legacy:
            raise TypeError(f"{sorted(legacy)} given together with the optimizer "
                            f"{type(x).__name__}: set them on the optimizer instead, e.g. "
                            f"optimizer.replace(batch=...)")
        return x
    return SGD(x, **legacy)
