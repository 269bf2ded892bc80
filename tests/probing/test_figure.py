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
from depthscope.estimators import SIGMA_MIN_EXACT, SIGMA_MIN_WEYL
from depthscope.probing._figure import (
    MAX_STEP_LABELS,
    PANEL_TITLES,
    SIGMA_MIN_BOUND_LABEL,
    SIGMA_MIN_LABEL,
    label_stride,
)


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


def _lines(ax) -> dict[str, object]:
    return {line.get_label(): line for line in ax.lines}


def _only(values: list, keep: list[bool]) -> list:
    return [v if k else None for v, k in zip(values, keep)]


def test_exact_sigma_min_is_labelled_sigma_min(report: ds.Report) -> None:
    assert set(report.column("sigma_min_kind")) == {SIGMA_MIN_EXACT, None}  # explicit steps, a non-square head
    lines = _lines(report.plot().axes[0])
    assert SIGMA_MIN_BOUND_LABEL not in lines
    assert lines[SIGMA_MIN_LABEL].get_linestyle() == "-"


def test_a_weyl_bound_is_drawn_dashed_as_a_bound() -> None:
    """Matrix-free steps report max(0, 1 - ||J - I||_2), a lower bound: it is not labelled sigma_min."""
    model = ds.create_model("resnet_mlp", depth=4, width=8)
    x = model.example_input(2, torch.Generator().manual_seed(0))
    report = ds.probe(model, x, lyapunov=0, seed=0, method="matrix-free")
    assert SIGMA_MIN_WEYL in report.column("sigma_min_kind")
    ax = report.plot().axes[0]
    lines = _lines(ax)
    assert SIGMA_MIN_LABEL not in lines  # no step has an exact or estimated sigma_min
    bound = lines[SIGMA_MIN_BOUND_LABEL]
    assert bound.get_linestyle() == "--"
    assert _same(_y(ax, ax.lines.index(bound)), report.column("local_sigma_min"))
    assert SIGMA_MIN_BOUND_LABEL in [t.get_text() for t in ax.get_legend().get_texts()]


def test_mixed_kinds_draw_each_step_once(report: ds.Report) -> None:
    weyl = [k % 2 == 1 for k in range(len(report))]
    blocks = [dataclasses.replace(b, sigma_min_kind=SIGMA_MIN_WEYL) if w else b for b, w in zip(report.blocks, weyl)]
    mixed = dataclasses.replace(report, blocks=blocks)
    ax = mixed.plot().axes[0]
    lines = _lines(ax)
    smin = mixed.column("local_sigma_min")
    assert _same(list(lines[SIGMA_MIN_LABEL].get_ydata()), _only(smin, [not w for w in weyl]))
    assert _same(list(lines[SIGMA_MIN_BOUND_LABEL].get_ydata()), _only(smin, weyl))
