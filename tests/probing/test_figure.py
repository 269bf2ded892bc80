"""`Report.plot`: four panels whose data are the report's columns unchanged; long chains get a
label every n-th step; non-finite values (a zero head's -inf) are gaps, not errors."""

from __future__ import annotations

import dataclasses
import io
import math

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

import depthscope as ds
from depthscope.probing._figure import MAX_STEP_LABELS, PANEL_TITLES, label_stride


@pytest.fixture(scope="module")
def report() -> ds.Report:
    model = ds.create_model("resnet_mlp", depth=4, width=8)
    x = model.example_input(2, torch.Generator().manual_seed(0))
    return ds.probe(model, x, lyapunov=3, seed=0)


def with_non_finite(report: ds.Report) -> ds.Report:
    """The report with a dead last step: zero gain, -inf cumulative gain, nan gradient, no sigma_min."""
    blocks = list(report.blocks)
    blocks[-1] = dataclasses.replace(
        blocks[-1], local_rms=0.0, cum_log_rms=-math.inf, grad_log_norm=math.nan, local_sigma_min=None
    )
    blocks[0] = dataclasses.replace(blocks[0], local_sigma_max=math.inf)
    return dataclasses.replace(report, blocks=blocks, log_gain=-math.inf, lyapunov=[0.1, -math.inf])


def _y(ax, line: int = 0) -> list[float]:
    return list(np.asarray(ax.lines[line].get_ydata(), dtype=float))


def _same(a: list[float], b: list) -> bool:
    want = [math.nan if v is None else float(v) for v in b]
    return np.array_equal(np.asarray(a), np.asarray(want), equal_nan=True)


def test_four_panels_hold_the_report_columns(report: ds.Report) -> None:
    fig = report.plot()
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 4
    assert [ax.get_title() for ax in fig.axes] == list(PANEL_TITLES)
    local, cum, grad, lyap = fig.axes
    assert _same(_y(local, 0), report.column("local_rms"))
    assert _same(_y(local, 1), report.column("local_sigma_max"))
    assert _same(_y(local, 2), report.column("local_sigma_min"))
    assert _same(_y(cum), report.column("cum_log_rms"))
    assert _same(_y(grad), report.column("grad_log_norm"))
    assert _same(_y(lyap), report.lyapunov)
    assert report.verdict in fig._suptitle.get_text()
    assert [t.get_text() for t in local.get_xticklabels()] == report.column("name")


def test_figure_renders_to_png_without_pyplot(report: ds.Report) -> None:
    buf = io.BytesIO()
    report.plot().savefig(buf, format="png")
    assert buf.getvalue()[:4] == b"\x89PNG"


def test_non_finite_values_draw(report: ds.Report) -> None:
    odd = with_non_finite(report)
    fig = odd.plot()
    assert _same(_y(fig.axes[1]), odd.column("cum_log_rms"))
    buf = io.BytesIO()
    fig.savefig(buf, format="svg")
    assert b"<svg" in buf.getvalue()


def test_long_chains_label_every_nth_step(report: ds.Report) -> None:
    assert label_stride(10) == 1 and label_stride(MAX_STEP_LABELS) == 1
    assert label_stride(300) == math.ceil(300 / MAX_STEP_LABELS)
    blocks = [dataclasses.replace(report.blocks[1], name=f"layer.{i}", index=i) for i in range(300)]
    fig = dataclasses.replace(report, blocks=blocks).plot()
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert 1 < len(labels) <= MAX_STEP_LABELS
    assert labels[0] == "layer.0" and labels[1] == f"layer.{label_stride(300)}"


def test_no_lyapunov_spectrum(report: ds.Report) -> None:
    fig = dataclasses.replace(report, lyapunov=[]).plot()
    assert "not computed" in [t.get_text() for t in fig.axes[3].texts]
