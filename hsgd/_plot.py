"""Figures: the ODE risk curve over the band of SGD runs."""

import io
import warnings

import numpy as np


def risk_figure(ts, ode_risk=None, sgd_risk=None, title: str = "", log_time: bool = False):
    """The ODE curve over the SGD mean ± std band (and faint single runs). Returns PNG bytes.

    The risk axis is logarithmic when the curves span more than a decade; the time axis when
    `log_time` (a log-spaced grid)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    ts = np.asarray(ts)
    values = []
    if sgd_risk is not None:
        runs = np.asarray(sgd_risk)
        with warnings.catch_warnings():  # all runs diverged at late times: NaN is the answer
            warnings.simplefilter("ignore", RuntimeWarning)
            mean, std = np.nanmean(runs, axis=0), np.nanstd(runs, axis=0)
        for r in runs:
            ax.plot(ts, r, color="tab:blue", alpha=0.15, lw=0.7)
        ax.fill_between(ts, mean - std, mean + std, color="tab:blue", alpha=0.3,
                        label=f"SGD mean ± std ({runs.shape[0]} runs)")
        ax.plot(ts, mean, color="tab:blue", lw=1.2)
        values.append(runs)
    if ode_risk is not None:
        ax.plot(ts, np.asarray(ode_risk), color="black", lw=1.8, ls="--", label="ODE")
        values.append(np.asarray(ode_risk))
    finite = np.concatenate([np.ravel(v) for v in values]) if values else np.array([])
    finite = finite[np.isfinite(finite) & (finite > 0)]
    if finite.size and finite.max() / finite.min() > 10:
        ax.set_yscale("log")
    if log_time:
        ax.set_xscale("symlog", linthresh=max(ts[1] if len(ts) > 1 else 1.0, 1e-12))
    ax.set_xlabel("t = iterations / d")
    ax.set_ylabel("risk")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
