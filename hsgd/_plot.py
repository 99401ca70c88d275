"""Figures (PNG bytes for the command line, or matplotlib figures): deterministic curves over
the bands of sampled runs, sweeps, tuning, SGD+M saturation and rate maps."""

import io
import warnings

import numpy as np


def _draw_curves(ax, ts, lines: dict, bands: dict, log_time: bool = False):
    """On `ax`: for each `bands` label → runs $(R, T)$, faint single runs under a mean ± std
    band; for each `lines` label → a curve $(T,)$, dashed (black for the first). Log scale on
    the value axis when the curves span more than a decade; symlog time when `log_time`."""
    ts = np.asarray(ts)
    values = []
    for (label, runs), color in zip(bands.items(), ("tab:blue", "tab:orange", "tab:green")):
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
    for (label, curve), (color, ls) in zip(lines.items(), (("black", "--"), ("tab:red", ":"))):
        ax.plot(ts, np.asarray(curve), color=color, lw=1.8, ls=ls, label=label)
        values.append(np.asarray(curve))
    finite = np.concatenate([np.ravel(v) for v in values]) if values else np.array([])
    finite = finite[np.isfinite(finite) & (finite > 0)]
    if finite.size and finite.max() / finite.min() > 10:
        ax.set_yscale("log")
    if log_time:
        ax.set_xscale("symlog", linthresh=max(ts[1] if len(ts) > 1 else 1.0, 1e-12))
    ax.grid(alpha=0.3)
    if lines or bands:
        ax.legend()


def risk_figure(ts, ode_risk=None, sgd_risk=None, title: str = "", log_time: bool = False,
                sde_risk=None, simulated: str = "SGD", gamma=None, gamma_runs=None):
    """The ODE curve over the simulated optimiser's (`simulated`, e.g. "signSGD") and the
    homogenized SDE's mean ± std bands, with faint single runs. Returns PNG bytes.

    The risk axis is logarithmic when the curves span more than a decade; the time axis when
    `log_time` (a log-spaced grid). With `gamma` (the predicted stepsize, $(T,)$) and/or
    `gamma_runs` (the runs' stepsizes, $(R, T)$) — a feedback stepsize (SPEC §10) — a second
    panel under the risk shows the learning-rate curves."""
    plt = _pyplot()
    two = gamma is not None or gamma_runs is not None
    fig, axes = plt.subplots(2 if two else 1, 1, figsize=(6.4, 6.8 if two else 4.2), dpi=120,
                             squeeze=False, sharex=True)
    ax = axes[0, 0]
    bands = {k: v for k, v in ((simulated, sgd_risk), ("SDE", sde_risk)) if v is not None}
    _draw_curves(ax, ts, {} if ode_risk is None else {"ODE": ode_risk}, bands, log_time)
    ax.set_ylabel("risk")
    ax.set_title(title)
    if two:
        ax = axes[1, 0]
        _draw_curves(ax, ts, {} if gamma is None else {"ODE": gamma},
                     {} if gamma_runs is None else {simulated: gamma_runs}, log_time)
        ax.set_ylabel("stepsize γ(t)")
    ax.set_xlabel("t = iterations / d")
    fig.tight_layout()
    return _figure_out(fig, True)


def finite_figure(ts, loss_lines: dict, loss_bands: dict, risk_lines: dict, risk_bands: dict,
                  title: str = "", xlabel: str = "epochs t = k/n") -> bytes:
    """Finite data: the training loss (left) and the population risk (right), deterministic
    curves (label → $(T,)$) over the bands of sampled runs (label → $(R, T)$). The risk panel
    is drawn only when some risk curve is finite. Returns PNG bytes."""
    plt = _pyplot()
    has_risk = any(np.any(np.isfinite(np.asarray(v)))
                   for v in (*risk_lines.values(), *risk_bands.values()))
    fig, axes = plt.subplots(1, 2 if has_risk else 1, figsize=(11 if has_risk else 6.4, 4.2),
                             dpi=110, squeeze=False)
    _draw_curves(axes[0, 0], ts, loss_lines, loss_bands)
    axes[0, 0].set_ylabel("training loss per sample ψ/n")
    if has_risk:
        _draw_curves(axes[0, 1], ts, risk_lines, risk_bands)
        axes[0, 1].set_ylabel("population risk R")
    for ax in axes[0]:
        ax.set_xlabel(xlabel)
    fig.suptitle(title)
    fig.tight_layout()
    return _figure_out(fig, True)


def _pyplot():
    import sys

    import matplotlib

    # Headless (CLI, tests) unless pyplot is already in use: a notebook's inline backend is
    # kept, so figures made here show there (switching to Agg would silence every plt.show())
    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def sweep_figure(table: dict, metric: str = "final_risk") -> bytes:
    """Left: `metric` (final risk) over the (stepsize, batch) grid, diverged points marked ×.
    Right: the best stepsize for each batch size. Returns PNG bytes."""
    plt = _pyplot()
    gammas, batches = np.unique(table["gamma"]), np.unique(table["batch"])
    risk = np.full((batches.size, gammas.size), np.nan)
    div = np.zeros_like(risk, dtype=bool)
    gi = np.searchsorted(gammas, table["gamma"])
    bi = np.searchsorted(batches, table["batch"])
    risk[bi, gi] = table[metric]
    label = metric.replace("_", " ")
    div[bi, gi] = table["diverged"] > 0
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=110)
    if batches.size > 1:
        mesh = ax1.pcolormesh(gammas, batches, np.log10(risk), shading="nearest")
        fig.colorbar(mesh, ax=ax1, label=f"log10 {label}")
        ax1.set_yscale("log", base=2)
        ax1.set_ylabel("batch size")
        yy, xx = np.nonzero(div)
        ax1.scatter(gammas[xx], batches[yy], marker="x", color="red", label="diverged")
    else:
        ax1.plot(gammas, risk[0], "o-")
        ax1.scatter(gammas[div[0]], np.zeros(div[0].sum()) + np.nanmin(risk), marker="x",
                    color="red", label="diverged")
        ax1.set_ylabel(label)
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
    return _figure_out(fig, True)


def _figure_out(fig, as_png: bool):
    import matplotlib.pyplot as plt

    if not as_png:
        return fig
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def saturation_figure(saturation, title: str = "", as_png: bool = True):
    r"""The batch-saturation plot of SGD+M (SPEC §3) from a
    [`Saturation`][hsgd.theory.Saturation]: left, the optimised exponent $-\log(\text{rate})$ per
    iteration against the batch fraction $\zeta$
    (SGD+M and plain SGD, the small-batch line, the full-batch heavy-ball level, ICR and the
    measured knee marked); right, the loss after the fixed number of iterations and of epochs
    (when computed). PNG bytes, or the figure with `as_png=False`."""
    plt = _pyplot()
    s = saturation
    z = np.asarray(s.batch_fraction)
    has_loss = bool(np.any(np.isfinite(np.asarray(s.loss_iterations)))
                    or np.any(np.isfinite(np.asarray(s.loss_epochs))))
    fig, axes = plt.subplots(1, 2 if has_loss else 1, figsize=(11 if has_loss else 6, 4.2),
                             dpi=110, squeeze=False)
    ax = axes[0, 0]
    ex = -np.log(np.asarray(s.rate))
    ax.plot(z, ex, "o-", label="SGD+M, optimised (γ, Δ)")
    ax.plot(z, -np.log(np.asarray(s.sgd_rate)), "s--", ms=4, label="SGD (Δ = 0), optimised γ")
    ax.plot(z, ex[0] / z[0] * z, ":", color="gray", label="small-batch line ∝ ζ")
    ax.axhline(-np.log(float(s.heavy_ball_rate)), color="black", lw=0.8,
               label="full-batch heavy ball (optimal)")
    if s.conditioning is not None:
        ax.axvline(float(s.conditioning.icr), color="tab:red", ls="--",
                   label=f"ICR = {float(s.conditioning.icr):.3g}")
    if s.knee is not None:
        ax.axvline(float(s.knee), color="tab:green", ls="-.",
                   label=f"measured knee = {float(s.knee):.3g}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylim(ex.min() / 2, 2 * max(ex.max(), -np.log(float(s.heavy_ball_rate))))
    ax.set_xlabel("batch fraction ζ = β / n")
    ax.set_ylabel("−log(rate) per iteration")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    if has_loss:
        ax = axes[0, 1]
        if s.iterations is not None:
            ax.plot(z, np.asarray(s.loss_iterations), "o-",
                    label=f"after {s.iterations} iterations")
        if s.epochs is not None:
            ax.plot(z, np.asarray(s.loss_epochs), "s-", label=f"after {s.epochs:g} epochs")
        ax.plot(z, np.asarray(s.limit_loss), ":", color="gray", label="limit ψ∞")
        if s.conditioning is not None:
            ax.axvline(float(s.conditioning.icr), color="tab:red", ls="--")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("batch fraction ζ = β / n")
        ax.set_ylabel("training loss at the optimised (γ, Δ)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return _figure_out(fig, as_png)


def rate_map_figure(maps: dict, title: str = "", as_png: bool = True):
    r"""Heat maps of the exact SGD+M rate over (momentum Δ, stepsize γ), one panel per batch
    fraction, from [`rate_maps`][hsgd.theory.rate_maps]: rates $\ge 1$ (no convergence) blank, the
    convergence limit drawn, the optimum starred. PNG bytes, or the figure with `as_png=False`."""
    plt = _pyplot()
    zs = np.asarray(maps["batch_fractions"])
    g, d = np.asarray(maps["gammas"]), np.asarray(maps["momenta"])
    fig, axes = plt.subplots(1, zs.size, figsize=(3.6 * zs.size, 3.6), dpi=110, squeeze=False,
                             sharey=True)
    rates = np.asarray(maps["rates"])
    finite = rates[np.isfinite(rates) & (rates < 1)]
    vmin = float(finite.min()) if finite.size else 0.0
    for i, ax in enumerate(axes[0]):
        r = np.where(np.isfinite(rates[i]) & (rates[i] < 1), rates[i], np.nan)
        mesh = ax.pcolormesh(d, g, r.T, shading="nearest", vmin=vmin, vmax=1.0, cmap="viridis")
        ax.plot(d, np.asarray(maps["limits"])[i], color="white", lw=1.0, label="limit")
        ax.plot(maps["best_momentum"][i], maps["best_gamma"][i], "*", color="red", ms=12,
                label=f"best {maps['best_rate'][i]:.3f}")
        ax.set_title(f"ζ = {zs[i]:g}")
        ax.set_xlabel("momentum Δ")
        ax.set_ylim(g.min(), g.max())
        ax.legend(fontsize=7, loc="upper left")
    axes[0, 0].set_ylabel("stepsize γ")
    fig.colorbar(mesh, ax=axes[0].tolist(), label="rate per iteration")
    fig.suptitle(title)
    return _figure_out(fig, as_png)


def tune_figure(ts, gammas: dict, predicted: dict, sgd: dict | None = None, floor=None,
                title: str = "") -> bytes:
    """Left: the learning rate of each schedule (name → values on `ts`). Right: the predicted
    risk (lines) and, when given, the SGD mean (markers), as excess risk over `floor` when it
    is finite. Returns PNG bytes."""
    plt = _pyplot()
    ts = np.asarray(ts)
    excess = floor is not None and np.isfinite(floor)
    shift = floor if excess else 0.0
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=110)
    for i, name in enumerate(gammas):
        color = f"C{i}"
        lw = 2.2 if name == "tuned" else 1.2
        ax1.plot(ts, np.asarray(gammas[name]), color=color, lw=lw, label=name)
        ax2.plot(ts, np.asarray(predicted[name]) - shift, color=color, lw=lw, label=name)
        if sgd is not None and name in sgd:
            ax2.plot(ts, np.asarray(sgd[name]) - shift, "o", color=color, ms=3)
    ax1.set_yscale("log")
    ax1.set_xlabel("t")
    ax1.set_ylabel("learning rate γ(t)")
    ax1.legend()
    ax1.grid(alpha=0.3)
    ax2.set_yscale("log")
    ax2.set_xlabel("t")
    ax2.set_ylabel("excess risk over the noise floor" if excess else "risk")
    ax2.set_title("lines: predicted (ODE), dots: SGD mean" if sgd else "predicted (ODE)")
    ax2.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return _figure_out(fig, True)


def scaling_figure(result, as_png: bool = True):
    r"""Left: the PLRF loss curves $P(f; d)$ against flops for every $d$ of a
    [`ComputeOptimal`][hsgd.scaling.ComputeOptimal] (colour: $\log d$) with the
    compute-optimal envelope $P^*(f)$. Right: $d^*(f)$ with the fitted and the paper's
    power laws."""
    plt = _pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=110)
    cmap = plt.get_cmap("viridis")
    logd = np.log(result.ds)
    span = max(float(logd[-1] - logd[0]), 1e-12)
    for d, row, ld in zip(result.ds, result.loss, logd):
        ax1.plot(result.flops, row, color=cmap((ld - logd[0]) / span), lw=0.8)
    ok = result.interior
    ax1.plot(result.flops[ok], result.loss_opt[ok], "k--", lw=2, label="compute-optimal P*")
    ax1.set(xscale="log", yscale="log", xlabel="flops f = d·B·k", ylabel="loss P",
            title=f"PLRF α = {result.alpha:g}, β = {result.beta:g}, batch {result.batch:g}")
    ax1.legend()
    ax2.plot(result.flops[ok], result.d_opt[ok], "o", label="d*(f) from the ODE")
    m = result.fit_mask
    if m.sum() >= 2 and np.isfinite(result.d_exponent):
        f = result.flops[m]
        ref = result.d_opt[m][-1] * (f / f[-1]) ** result.d_exponent
        ax2.plot(f, ref, "-", label=f"fit: a = {result.d_exponent:.3f}")
        if result.paper is not None:
            ref = result.d_opt[m][-1] * (f / f[-1]) ** result.paper.d_exponent
            ax2.plot(f, ref, ":", label=f"phase {result.paper.phase}: a = "
                     f"{result.paper.d_exponent:.3f}")
    ax2.set(xscale="log", yscale="log", xlabel="flops f", ylabel="optimal d*")
    ax2.legend()
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    return _figure_out(fig, as_png)
