"""Cost and accuracy of the Gaussian expectations (h, J, I, A) of the shipped losses: today's
default rule against the automatic rule of `AbstractLoss.refined(B0, rtol=1e-5)` (issue 14,
part 1).

For each loss, at one B0 (a typical start: [[0.7, 0.3], [0.3, 1.2]] for p = 2, 0.6 I + 0.15 11^T
for Softmax(3), the same pattern for p = 3):

* the rule used (label, points) and its estimated relative error `moment_error(B0)`;
* the time of one `moments(B)` call, jitted, after warm-up (best of 4 alternating rounds of 30,
  `block_until_ready`), and of a vmapped batch of 16 B's (a sweep's lane width), compile time
  separately (first call minus best);
* the one-off cost of `refined` itself (the automatic choice; Python level, before a solve).

    python benchmarks/expectations.py   # ~2 minutes on 2 cores; writes results/expectations.json
"""

import time
import warnings
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from _common import parser, setup, timed, write

REPEATS = 30  # best of: the same rule must time the same (0.1 ms calls on a shared machine)


def _losses(hsgd):
    def softplus_teacher(x, x_star, eps):  # a smooth user loss (logistic with E[y | x*])
        return jax.nn.softplus(x[0]) - jax.nn.sigmoid(x_star[0]) * x[0]

    def huber(x, x_star, eps, delta=1.0):  # the CustomLoss docstring / README example
        u = x[0] - x_star[0] - eps
        return jnp.where(abs(u) < delta, 0.5 * u**2, delta * (abs(u) - 0.5 * delta))

    def committee(x, x_star, eps):  # issue 14's tanh committee, p = 3
        return 0.5 * (jnp.mean(jnp.tanh(x)) - jnp.tanh(x_star[0])) ** 2

    return [
        ("Logistic", hsgd.Logistic()),
        ("PhaseRetrieval", hsgd.PhaseRetrieval(noise_std=0.2)),
        ("Softmax(3)", hsgd.Softmax(3)),
        ("CustomLoss(softplus_teacher)", hsgd.CustomLoss(softplus_teacher)),
        ("CustomLoss(huber, GaussianNoise(0.5))",
         hsgd.CustomLoss(huber, noise=hsgd.GaussianNoise(0.5))),
        ("CustomLoss(tanh committee, m=2)", hsgd.CustomLoss(committee, m=2, m_star=1)),
    ]


def _B0(p):
    if p == 2:
        return jnp.array([[0.7, 0.3], [0.3, 1.2]])
    return jnp.asarray(0.6 * np.eye(p) + 0.15 * np.ones((p, p)))


def _rule_info(loss):
    if not hasattr(loss, "quadrature"):
        return f"{type(loss).__name__}'s own rules", None
    rule = loss.rule()
    return rule.label, rule.num_points


def _time_pair(old, new, B, rounds=4):
    """Compile and best-of times of `moments` for both losses, alternating rounds (the machine
    is shared: a slow spell then hits both sides)."""
    one = eqx.filter_jit(lambda lo, b: lo.moments(b))
    batch = eqx.filter_jit(lambda lo, bs: jax.vmap(lo.moments)(bs))
    Bs = jnp.stack([B * (1 + 0.05 * k) for k in range(16)])
    out = []
    for loss in (old, new):
        first1, best1, _ = timed(lambda: one(loss, B), repeats=REPEATS)
        first16, best16, _ = timed(lambda: batch(loss, Bs), repeats=REPEATS)
        out.append({"compile_s": first1 - best1, "moments_ms": 1e3 * best1,
                    "compile_batch16_s": first16 - best16, "moments_batch16_ms": 1e3 * best16})
    for _ in range(rounds - 1):
        for loss, rec in zip((old, new), out):
            rec["moments_ms"] = min(rec["moments_ms"],
                                    1e3 * timed(lambda: one(loss, B), repeats=REPEATS)[1])
            rec["moments_batch16_ms"] = min(
                rec["moments_batch16_ms"], 1e3 * timed(lambda: batch(loss, Bs), repeats=REPEATS)[1])
    return out


def run(hsgd):
    rows = {}
    for name, loss in _losses(hsgd):
        B = _B0(loss.p)
        print(f"--- {name}", flush=True)
        old_err = float(eqx.filter_jit(lambda lo, b: lo.moment_error(b))(loss, B))
        start = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            auto, est = loss.refined(B)
        refine_s = time.perf_counter() - start
        old_label, old_points = _rule_info(loss)
        auto_label, auto_points = _rule_info(auto)
        old_t, auto_t = _time_pair(loss, auto, B)
        rows[name] = {
            "default": {"rule": old_label, "points": old_points, "estimated_error": old_err,
                        **old_t},
            "auto": {"rule": auto_label, "points": auto_points, "estimated_error": est,
                     "warned": [str(w.message) for w in caught], **auto_t},
            "same_rule": old_label == auto_label,
            "refine_s": refine_s,
            "cost_ratio": auto_t["moments_ms"] / old_t["moments_ms"],
            "cost_ratio_batch16": auto_t["moments_batch16_ms"] / old_t["moments_batch16_ms"],
        }
    return rows


def main():
    args = parser(__doc__.splitlines()[0]).parse_args()
    setup(args)
    import hsgd

    rows = run(hsgd)
    head = (f"{'loss':40s} {'rule: default -> auto':58s} {'err default':>11s} "
            f"{'err auto':>9s} {'ms def':>7s} {'ms auto':>8s} {'ratio':>6s} {'x16':>6s} "
            f"{'refine s':>8s}")
    print(head)
    print("-" * len(head))
    for name, r in rows.items():
        rule = ("same: " + r["default"]["rule"]) if r["same_rule"] else \
            f"{r['default']['rule']} -> {r['auto']['rule']}"
        print(f"{name:40s} {rule[:58]:58s} {r['default']['estimated_error']:11.2e} "
              f"{r['auto']['estimated_error']:9.2e} {r['default']['moments_ms']:7.3f} "
              f"{r['auto']['moments_ms']:8.3f} {r['cost_ratio']:6.2f} "
              f"{r['cost_ratio_batch16']:6.2f} {r['refine_s']:8.2f}")
    if args.out is None:  # the committed record
        args.out = str(Path(__file__).resolve().parent / "results")
    write(args, __file__, {"rtol": 1e-5, "losses": rows})


if __name__ == "__main__":
    main()
