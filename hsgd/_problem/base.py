"""The abstract base every problem derives from."""

import equinox as eqx


class AbstractProblem(eqx.Module):
    r"""What the data and the loss are — never how the iterate moves.

    A problem is one axis of hsgd's problems × optimizers table: [`Problem`][] (streaming
    Gaussian data, one pass, time $t = k/d$) and [`FiniteProblem`][] (a data set of $n$ rows
    revisited, least squares, time in epochs $t = k\beta/n$). The methods [`ode`][],
    [`simulate`][], [`sde`][] and [`volterra`][] look the pair (problem type, optimizer type)
    up in one registry (see [`supported`][]).
    """
