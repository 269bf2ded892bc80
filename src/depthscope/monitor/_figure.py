"""A monitor history as a matplotlib figure; it only reads the history.

    left    heat map, block x step, of log10 ||dL/dx_k|| (the gradient at each block's output)
    right   the end-to-end gradient gain ||dL/dx_0|| / ||dL/dx_{K-1}|| over the steps (log axis),
            with the stable band of the alerts shaded

Built without pyplot (no global state, no display; the Agg canvas renders it), like the probe's
figure. Non-finite values are gaps.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from depthscope.monitor._alerts import GAIN_BAND
from depthscope.monitor._records import History

if TYPE_CHECKING:
    from matplotlib.figure import Figure

FIGURE_SIZE = (12.0, 4.5)
# Block labels on the heat map's y axis: at most this many, so that deep models stay legible.
MAX_BLOCK_LABELS = 20
PANEL_TITLES = ("log10 gradient norm at block outputs", "end-to-end gradient gain")


def plot_history(history: History) -> Figure:
    """The two panels of the module docstring; ``Figure.axes[0]`` is the heat map (its colour bar
    comes last), ``Figure.axes[1]`` the gain."""
    from matplotlib.figure import Figure  # optional dependency, needed only to draw

    fig = Figure(figsize=FIGURE_SIZE, layout="constrained")
    heat_ax, gain_ax = fig.subplots(1, 2, width_ratios=(3, 2))
    steps = history.steps
    grad = history.array("grad_norm")
    with np.errstate(divide="ignore", invalid="ignore"):
        logg = np.log10(grad)
    logg = np.where(np.isfinite(logg), logg, np.nan)
    k = len(history.blocks)
    if steps.size:
        x0, x1 = float(steps[0]), float(steps[-1]) + 1.0
        image = heat_ax.imshow(
            logg.T, aspect="auto", origin="lower", interpolation="nearest", extent=(x0, x1, -0.5, k - 0.5)
        )
        fig.colorbar(image, ax=heat_ax, label="log10 ||dL/dx_k||")
    ticks = np.unique(np.linspace(0, k - 1, min(k, MAX_BLOCK_LABELS)).round().astype(int))
    heat_ax.set_yticks(ticks, [history.blocks[i] for i in ticks], fontsize=7)
    heat_ax.set_xlabel("training step")
    heat_ax.set_title(PANEL_TITLES[0])

    gain = history.array("end_to_end")
    gain = np.where(np.isfinite(gain) & (gain > 0), gain, np.nan)
    gain_ax.plot(steps, gain, color="C0", lw=1.2)
    gain_ax.axhspan(*GAIN_BAND, color="C2", alpha=0.12, label="stable band")
    gain_ax.set_yscale("log")
    gain_ax.set_xlabel("training step")
    gain_ax.set_ylabel(f"||dL/dx at {history.blocks[0]}|| / ||dL/dx at {history.blocks[-1]}||")
    gain_ax.set_title(PANEL_TITLES[1])
    gain_ax.legend(loc="best", fontsize=8)
    return fig
