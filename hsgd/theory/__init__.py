r"""Closed-form theory, grouped the way `optax.schedules` groups schedules: thresholds, limits
and rates of the dynamics, as branch-free JAX functions of a problem and the hyperparameters.

- Finite-data SGD (SPEC §2): [`gamma_max`][hsgd.theory.gamma_max],
  [`kernel_norm`][hsgd.theory.kernel_norm], [`limit_loss`][hsgd.theory.limit_loss],
  [`limit_risk`][hsgd.theory.limit_risk], [`malthusian_root`][hsgd.theory.malthusian_root],
  [`asymptotic_rate`][hsgd.theory.asymptotic_rate],
  [`marchenko_pastur_edge`][hsgd.theory.marchenko_pastur_edge],
  [`phase_transition_stepsize`][hsgd.theory.phase_transition_stepsize].
- Streaming least squares at finite $d$ (SPEC §8):
  [`finite_d_stability`][hsgd.theory.finite_d_stability]
  ([`FiniteDStability`][hsgd.theory.FiniteDStability]),
  [`finite_d_gamma_max`][hsgd.theory.finite_d_gamma_max].
- Streaming SGD, strongly convex losses (SPEC §1): [`convex_rate`][hsgd.theory.convex_rate],
  [`convex_stepsize`][hsgd.theory.convex_stepsize], [`convex_bound`][hsgd.theory.convex_bound].
- signSGD, streaming least squares (SPEC §11):
  [`signsgd_preconditioned_spectrum`][hsgd.theory.signsgd_preconditioned_spectrum],
  [`signsgd_kappa`][hsgd.theory.signsgd_kappa],
  [`signsgd_effective_lr`][hsgd.theory.signsgd_effective_lr],
  [`signsgd_fixed_point`][hsgd.theory.signsgd_fixed_point],
  [`signsgd_limit_risk`][hsgd.theory.signsgd_limit_risk],
  [`signsgd_vs_sgd`][hsgd.theory.signsgd_vs_sgd].
- Adaptive stepsizes, streaming least squares (SPEC §10):
  [`polyak_stepsize`][hsgd.theory.polyak_stepsize],
  [`line_search_stepsize`][hsgd.theory.line_search_stepsize],
  [`adagrad_norm_limit_stepsize`][hsgd.theory.adagrad_norm_limit_stepsize],
  [`adagrad_norm_noisy_stepsize`][hsgd.theory.adagrad_norm_noisy_stepsize],
  [`adagrad_norm_power_law_exponents`][hsgd.theory.adagrad_norm_power_law_exponents].
- Streaming momentum, the linear family (SPEC §9):
  [`heavy_ball_effective_stepsize`][hsgd.theory.heavy_ball_effective_stepsize],
  [`effective_stepsize`][hsgd.theory.effective_stepsize],
  [`streaming_momentum_kappa`][hsgd.theory.streaming_momentum_kappa],
  [`streaming_momentum_stable`][hsgd.theory.streaming_momentum_stable],
  [`streaming_momentum_limit_risk`][hsgd.theory.streaming_momentum_limit_risk],
  [`sgd_power_law_exponent`][hsgd.theory.sgd_power_law_exponent],
  [`dana_power_law_exponent`][hsgd.theory.dana_power_law_exponent],
  [`fitted_exponent`][hsgd.theory.fitted_exponent].
- Heavy ball on finite data (SPEC §3): `conditioning`, `heavy_ball_roots`, `gdm_rate`,
  `momentum_*`, `near_optimal_parameters`, `optimize_momentum`; batch saturation and rate maps
  (`batch_saturation`, `rate_map`, `rate_maps`).
"""

from .adaptive import (
    adagrad_norm_limit_stepsize as adagrad_norm_limit_stepsize,
    adagrad_norm_noisy_stepsize as adagrad_norm_noisy_stepsize,
    adagrad_norm_power_law_exponents as adagrad_norm_power_law_exponents,
    line_search_stepsize as line_search_stepsize,
    polyak_stepsize as polyak_stepsize,
)
from .convex import (
    convex_bound as convex_bound,
    convex_rate as convex_rate,
    convex_stepsize as convex_stepsize,
)
from .finite import (
    asymptotic_rate as asymptotic_rate,
    gamma_max as gamma_max,
    kernel_norm as kernel_norm,
    limit_loss as limit_loss,
    limit_risk as limit_risk,
    malthusian_root as malthusian_root,
    marchenko_pastur_edge as marchenko_pastur_edge,
    phase_transition_stepsize as phase_transition_stepsize,
)
from .momentum import (
    Conditioning as Conditioning,
    MomentumParameters as MomentumParameters,
    conditioning as conditioning,
    gdm_rate as gdm_rate,
    heavy_ball_roots as heavy_ball_roots,
    momentum_converges as momentum_converges,
    momentum_kernel_norm as momentum_kernel_norm,
    momentum_limit_loss as momentum_limit_loss,
    momentum_limit_risk as momentum_limit_risk,
    momentum_noise_rate as momentum_noise_rate,
    momentum_rate as momentum_rate,
    momentum_stepsize_limit as momentum_stepsize_limit,
    near_optimal_parameters as near_optimal_parameters,
    optimize_momentum as optimize_momentum,
)
from .momentum_streaming import (
    dana_power_law_exponent as dana_power_law_exponent,
    effective_stepsize as effective_stepsize,
    fitted_exponent as fitted_exponent,
    heavy_ball_effective_stepsize as heavy_ball_effective_stepsize,
    sgd_power_law_exponent as sgd_power_law_exponent,
    streaming_momentum_kappa as streaming_momentum_kappa,
    streaming_momentum_limit_risk as streaming_momentum_limit_risk,
    streaming_momentum_stable as streaming_momentum_stable,
)
from .saturation import (
    Saturation as Saturation,
    batch_saturation as batch_saturation,
    rate_map as rate_map,
    rate_maps as rate_maps,
)
from .signsgd import (
    SignSGDComparison as SignSGDComparison,
    signsgd_effective_lr as signsgd_effective_lr,
    signsgd_fixed_point as signsgd_fixed_point,
    signsgd_kappa as signsgd_kappa,
    signsgd_limit_risk as signsgd_limit_risk,
    signsgd_preconditioned_spectrum as signsgd_preconditioned_spectrum,
    signsgd_vs_sgd as signsgd_vs_sgd,
)
from .streaming import (
    FiniteDStability as FiniteDStability,
    finite_d_gamma_max as finite_d_gamma_max,
    finite_d_stability as finite_d_stability,
)
