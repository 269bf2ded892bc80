"""A report as a matplotlib figure: four panels that only read the report's columns.

    local gain     local_rms per step, between sigma_min (where known) and sigma_max; a sigma_min
                   that is only the Weyl lower bound max(0, 1 - ||J - I||_2) (matrix-free steps)
                   is drawn dashed, labelled as a bound, apart from exact or estimated ones
    cumulative     cum_log_rms, with a band of +-2 standard errors where the error is known
    gradient       grad_log_norm, log ||dE/dx_k|| at each step's input
    Lyapunov       the report's Lyapunov spectrum, exponents per step, descending

The figure is a `matplotlib.figure.Figure` built without pyplot, so no global state is touched and
no display is needed (it renders with the Agg canvas). Non-finite values (a zero head's log gain of
-inf) are drawn as gaps: matplotlib skips them.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from depthscope.estimators import SIGMA_MIN_WEYL

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# Step labels on the x axes: at most this many, so that long chains (hundreds of steps) stay legible.
MAX_STEP_LABELS = 24
# Width of the cumulative-gain band in standard errors: about a 95% interval for a normal error.
SE_BAND = 2.0
# Figure size in inches: four panels in a 2x2 grid, wide enough for rotated step labels.
FIGURE_SIZE = (11.0, 7.5)
# Panel titles, in the order of `Figure.axes` (the tests read the panels by position).
PANEL_TITLES = (
    "local gain per step (RMS, sigma band)",
    "cumulative log gain",
    "gradient log-norm across depth",
    "Lyapunov spectrum",
)
# Legend labels of the two kinds of sigma_min on the local-gain panel (the tests find the lines by them).
SIGMA_MIN_LABEL = "sigma_min"
SIGMA_MIN_BOUND_LABEL = "sigma_min >= (Weyl lower bound)"


def _floats(values: list) -> list[float]:
    """Report values as floats for plotting; None (not measured) becomes nan, a gap."""
    return [math.nan if v is None else float(v) for v in values]


def label_stride(n_steps: int, max_labels: int = MAX_STEP_LABELS) -> int:
    """Label every n-th step so that at most ``max_labels`` labels appear (1 for short chains)."""
    return max(1, math.ceil(n_steps / max_labels))


def _label_steps(ax, names: list[str]) -> None:
    stride = label_stride(len(names))
    ticks = list(range(0, len(names), stride))
    ax.set_xticks(ticks)
    ax.set_xticklabels([names[i] for i in ticks], rotation=60, ha="right", fontsize=7)


def report_figure(report: Any) -> Figure:
    """The figure of ``report`` (a `Report`; this module sits below `_report`, which calls it):
    four axes, in the order of `PANEL_TITLES`, titled with the verdict.

    Panel data are the report's columns unchanged: axes[0]'s first line is ``local_rms``, axes[1]'s
    ``cum_log_rms``, axes[2]'s ``grad_log_norm``, axes[3]'s the ``lyapunov`` list (x: exponent index).
    """
    from matplotlib.figure import Figure  # here, not at the top: `import depthscope` need not load matplotlib
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=FIGURE_SIZE, layout="constrained")
    axes = fig.subplots(2, 2).ravel()
    names = [str(n) for n in report.column("name")]
    k = list(range(len(names)))

    ax = axes[0]
    ax.plot(k, _floats(report.column("local_rms")), marker="o", ms=3, label="RMS gain")
    smax = _floats(report.column("local_sigma_max"))
    smin = _floats(report.column("local_sigma_min"))
    known_min = [not math.isnan(v) for v in smin]
    ax.plot(k, smax, lw=0.8, color="C3", label="sigma_max")
    if any(known_min):
        # A Weyl bound is not sigma_min: only a floor under it, drawn apart so that it is not read as one.
        bound = [kind == SIGMA_MIN_WEYL for kind in report.column("sigma_min_kind")]
        for is_bound, label, style in ((False, SIGMA_MIN_LABEL, "-"), (True, SIGMA_MIN_BOUND_LABEL, "--")):
            ys = [v if b == is_bound else math.nan for v, b in zip(smin, bound)]
            if any(not math.isnan(v) for v in ys):  # markers: an isolated step has no segment to draw
                ax.plot(k, ys, lw=0.8, ls=style, marker=".", ms=3, color="C2", label=label)
        ax.fill_between(k, smin, smax, where=known_min, color="C0", alpha=0.15, lw=0)
    else:  # no lower edge known: shade between the RMS gain and the top singular value
        ax.fill_between(k, _floats(report.column("local_rms")), smax, color="C3", alpha=0.12, lw=0)
    ax.axhline(1.0, color="grey", lw=0.6, ls=":")
    ax.set_ylabel("singular value")
    ax.legend(fontsize=7)

    ax = axes[1]
    cum = _floats(report.column("cum_log_rms"))
    se = _floats(report.column("cum_log_rms_se"))
    ax.plot(k, cum, marker="o", ms=3, color="C1")
    has_se = [s > 0 and math.isfinite(s) and math.isfinite(c) for s, c in zip(se, cum)]
    if any(has_se):
        lo = [c - SE_BAND * s if ok else math.nan for c, s, ok in zip(cum, se, has_se)]
        hi = [c + SE_BAND * s if ok else math.nan for c, s, ok in zip(cum, se, has_se)]
        ax.fill_between(k, lo, hi, where=has_se, color="C1", alpha=0.2, lw=0, label=f"+-{SE_BAND:g} SE")
        ax.legend(fontsize=7)
    ax.axhline(0.0, color="grey", lw=0.6, ls=":")
    ax.set_ylabel("log RMS gain J(0 -> k+1)")

    ax = axes[2]
    ax.plot(k, _floats(report.column("grad_log_norm")), marker="o", ms=3, color="C4")
    ax.set_ylabel("log ||dE/dx_k||")

    for ax in axes[:3]:
        _label_steps(ax, names)

    ax = axes[3]
    lyap = _floats(list(report.lyapunov))
    if lyap:
        ax.plot(range(1, len(lyap) + 1), lyap, marker="o", ms=4, color="C5")
        ax.set_xlabel("exponent index")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    else:
        ax.text(0.5, 0.5, "not computed", ha="center", va="center", transform=ax.transAxes)
    ax.axhline(0.0, color="grey", lw=0.6, ls=":")
    ax.set_ylabel("exponent per step")

    for ax, title in zip(axes, PANEL_TITLES):
        ax.set_title(title, fontsize=9)
        ax.grid(True, lw=0.3, alpha=0.5)
    fig.suptitle(f"verdict: {report.verdict}  (log gain {report.log_gain:.3g}, {len(names)} steps)")
    return fig
