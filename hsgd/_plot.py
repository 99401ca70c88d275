"""Figures: the ODE risk curve over the band of SGD runs."""

import io
import warnings

import numpy as np


def risk_figure(ts, ode_risk=None, sgd_risk=None, title: str = "", log_time: bool = False,
                sde_risk=None):
    """The ODE curve over the SGD (and homogenized-SGD) mean ± std bands, with faint single
    runs. Returns PNG bytes.

    The risk axis is logarithmic when the curves span more than a decade; the time axis when
    `log_time` (a log-spaced grid)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    ts = np.asarray(ts)
    values = []
    for runs, color, label in ((sgd_risk, "tab:blue", "SGD"), (sde_risk, "tab:orange", "SDE")):
        if runs is None:
            continue
        runs = np.asarray(runs)
        with warnings.catch_warnings():  # all runs diverged at late times: NaN is the answer
            warnings.simplefilter("ignore", RuntimeWarning)
            mean, std = np.nanmean(runs, axis=0), np.nanstd(runs, axis=0)
        for r in runs:
            ax.plot(ts, r, color=color, alpha=0.15, lw=0.7)
        ax.fill_between(ts, mean - std, mean + std, color=color, alpha=0.3,
                        label=f"{label} mean ± std ({runs.shape[0]} paths)")
        ax.plot(ts, mean, color=color, lw=1.2)
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


def sweep_figure(table: dict) -> bytes:
    """Left: final risk over the (stepsize, batch) grid, diverged points marked ×. Right: the
    best stepsize for each batch size. Returns PNG bytes."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    gammas, batches = np.unique(table["gamma"]), np.unique(table["batch"])
    risk = np.full((batches.size, gammas.size), np.nan)
    div = np.zeros_like(risk, dtype=bool)
    gi = np.searchsorted(gammas, table["gamma"])
    bi = np.searchsorted(batches, table["batch"])
    risk[bi, gi] = table["final_risk"]
    div[bi, gi] = table["diverged"] > 0
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=110)
    if batches.size > 1:
        mesh = ax1.pcolormesh(gammas, batches, np.log10(risk), shading="nearest")
        fig.colorbar(mesh, ax=ax1, label="log10 final risk")
        ax1.set_yscale("log", base=2)
        ax1.set_ylabel("batch size")
        yy, xx = np.nonzero(div)
        ax1.scatter(gammas[xx], batches[yy], marker="x", color="red", label="diverged")
    else:
        ax1.plot(gammas, risk[0], "o-")
        ax1.scatter(gammas[div[0]], np.zeros(div[0].sum()) + np.nanmin(risk), marker="x",
                    color="red", label="diverged")
        ax1.set_ylabel("final risk")
        ax1.set_yscale("log")
    ax1.set_xscale("log")
    ax1.set_xlabel("stepsize γ")
    if div.any():
        ax1.legend(loc="upper left")
    best = [gammas[np.nanargmin(np.where(div[i], np.nan, risk[i]))]
            if np.any(~div[i] & np.isfinite(risk[i])) else np.nan for i in range(batches.size)]
    ax2.plot(batches, best, "o-")
    ax2.set_xscale("log", base=2)
    ax2.set_yscale("log")
    ax2.set_xlabel("batch size")
    ax2.set_ylabel("best stepsize")
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
