"""signSGD: the sign of the mini-batch gradient, coordinate by coordinate (SPEC §11)."""


from .._noise import GaussianNoise, NoNoise
from .._problem import Problem
from .._schedule import AbstractSchedule, as_schedule
from .base import AbstractOptimizer, checked_batch


class SignSGD(AbstractOptimizer):
    r"""signSGD on streaming data (SPEC §11): the sign of the mini-batch gradient, taken
    coordinate by coordinate,

    $$X_{k+1} = X_k - \frac{\gamma(k/d)}{d}\,\operatorname{sign}\Big(\frac1\beta
    \sum_{b\in\mathcal B_k} a_b\otimes\nabla_x f(a_b^\top X_k;\ a_b^\top X^*, \varepsilon_b)
    \Big),$$

    fresh samples every step, time $t = k/d$ (the scaling of SGD in SPEC §1: each step moves
    every coordinate by $\gamma/d$). It is Adam with $\beta_1 = \beta_2 = 0$.

    **The coordinates are the eigenbasis.** The sign is taken coordinate by coordinate, so the
    dynamics depend on the basis; hsgd's [`Problem`][] is posed in the eigenbasis of the data
    covariance ($a\sim N(0, \operatorname{diag}\lambda)$), so `SignSGD` describes signSGD on data
    whose covariance is **diagonal in the coordinates**. For a covariance that is not (say, a
    spectrum from [`Spectrum.from_covariance`][hsgd.Spectrum.from_covariance] of a non-diagonal
    $K$), its curves are those of signSGD after rotating the data to the eigenbasis, not
    signSGD in the original coordinates — the per-mode system does not close there (SPEC §11).
    There is no cell for a [`FiniteProblem`][] (its $A^\top A$ is not diagonal in general).

    The deterministic equivalent ([`ode`][]) is SPEC §11 for least squares: per mode
    $v_j' = -2\gamma\sqrt{2\lambda_j/\pi}\,\kappa(\tau^2)\,v_j + \gamma^2$ — the spectrum is
    preconditioned ($\lambda_j\to\sqrt{\lambda_j}$), the effective learning rate is
    $\propto\gamma/\sqrt{\text{risk}}$, the noise $\gamma^2$ is the same for every
    mode and batch size, and label noise enters only through $\kappa$ (heavy tails are
    compressed). See [`signsgd_effective_lr`][hsgd.theory.signsgd_effective_lr] and the other
    signSGD helpers of [`hsgd.theory`][].

    **Arguments:**

    - `schedule`: the learning rate $\gamma(t)\ge 0$ — a float, an [`AbstractSchedule`][] or
      a callable $t\mapsto\gamma$.
    - `batch`: $\beta\ge 1$ samples per step (their gradients averaged before the sign). With
      Gaussian (or no) label noise the ODE is continuous in $\beta$ ($\kappa\propto c_\beta =
      \sqrt2\,\Gamma(\frac{\beta+1}2)/\Gamma(\frac\beta2)$), so it may be an array leaf there;
      with any other noise law the ODE exists for $\beta = 1$ only (SPEC §11).

    Example: `hsgd.ode(problem, hsgd.SignSGD(0.5), ts)`.
    """

    schedule: AbstractSchedule
    batch: object = 1

    def __init__(self, schedule, batch=1):
        self.schedule = as_schedule(schedule)
        self.batch = checked_batch(batch)

    @property
    def label(self) -> str:
        return "signSGD"

    def tunable(self, problem) -> dict[str, tuple[float, float]]:
        r"""`batch` $\beta\in(1, 256)$ on a streaming [`Problem`][] with Gaussian or no label
        noise (the ODE is differentiable in $\beta$ through $c_\beta$); nothing otherwise (the
        ODE needs $\beta = 1$)."""
        noise = getattr(getattr(problem, "loss", None), "noise", None)
        if isinstance(problem, Problem) and isinstance(noise, GaussianNoise | NoNoise):
            return {"batch": (1.0, 256.0)}
        return {}

    def for_simulation(self, problem) -> "SignSGD":
        """`batch` rounded to the nearest integer (a tuned or vmapped batch is a float)."""
        batch = int(round(float(self.batch)))
        return self if isinstance(self.batch, int) else self.replace(batch=batch)
