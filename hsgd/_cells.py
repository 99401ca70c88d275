"""The built-in cells of the problems × optimizers table: importing this module registers each
(method, problem type, optimizer type) with `hsgd._registry`.

                  | SGD                          | HeavyBall                   | SignSGD
    Problem       | ode, simulate, sde           | ode, simulate, sde (§9)     | ode, simulate, sde
                  |                              |                             | (LS;
                  |                              |                             | logistic β = 1)
    FiniteProblem | ode, volterra, simulate, sde | ode (recursion), simulate   | —

                  | LinearMomentum, DANAConstant, DANADecaying
    Problem       | ode, simulate, sde (SPEC §9, any loss)
    FiniteProblem | —

                  | AdaGradNorm, LineSearch, Polyak, FeedbackSchedule
    Problem       | ode, simulate, sde (SPEC §10, any loss; Polyak: h* known)
    FiniteProblem | —
"""

from ._dynamics import (
    finite_heavy_ball,
    finite_sgd,
    streaming_adaptive,
    streaming_momentum,
    streaming_sgd,
    streaming_signsgd,
)
from ._sde import (
                finite_sgd as sde_finite_sgd,
                streaming_adaptive as sde_streaming_adaptive,
                streaming_momentum as sde_streaming_momentum,
                streaming_sgd as sde_streaming_sgd,
                streaming_signsgd as sde_streaming_signsgd,
)
from ._simulate import (
                finite_heavy_ball as simulate_finite_heavy_ball,
                finite_sgd as simulate_finite_sgd,
                streaming_adaptive as simulate_streaming_adaptive,
                streaming_momentum as simulate_streaming_momentum,
                streaming_sgd as simulate_streaming_sgd,
                streaming_signsgd as simulate_streaming_signsgd,
)

CELL_MODULES = (streaming_adaptive, simulate_streaming_adaptive, sde_streaming_adaptive,
                streaming_sgd, finite_sgd, finite_heavy_ball, streaming_signsgd,
                simulate_streaming_sgd, simulate_finite_sgd, simulate_finite_heavy_ball,
                sde_streaming_sgd, sde_finite_sgd, simulate_streaming_signsgd,
                sde_streaming_signsgd, streaming_momentum, simulate_streaming_momentum,
                sde_streaming_momentum)
