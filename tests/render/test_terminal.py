"""The terminal table: its columns come from the declared quantities; a narrow terminal drops
columns by priority, never the step's identity."""

from __future__ import annotations

import torch
from rich.console import Console

import depthscope as ds
from depthscope.render import render_report
from depthscope.render._terminal import SPARK, cell, report_table, sparkline, table_columns


def _report() -> ds.Report:
    torch.manual_seed(0)
    model = ds.create_model("resnet_mlp", depth=3, width=8)
    return ds.probe(model, model.example_input(1, torch.Generator().manual_seed(0)), lyapunov=2)


def _headers(table) -> list[str]:
    return [str(c.header) for c in table.columns]


def test_wide_terminal_shows_every_declared_column() -> None:
    rep = _report()
    assert _headers(report_table(rep)) == [c.header for _, c in table_columns()]
    assert _headers(report_table(rep))[:3] == ["k", "step", "shape"]
    assert _headers(report_table(rep, width=400)) == _headers(report_table(rep))


def test_narrow_terminal_drops_the_highest_priority_numbers_first() -> None:
    rep = _report()
    headers = [c.header for _, c in table_columns()]
    by_priority = {c.header: c.priority for _, c in table_columns()}
    previous = headers
    for width in (100, 80, 60, 40, 10):
        shown = _headers(report_table(rep, width=width))
        assert set(shown) <= set(previous)
        dropped = set(headers) - set(shown)
        if dropped:  # every dropped column has a priority at least that of every shown one, bar priority 0
            assert min(by_priority[h] for h in dropped) >= max((by_priority[h] for h in shown), default=0)
        assert {"k", "step", "shape"} <= set(shown)
        previous = shown
    assert _headers(report_table(rep, width=10)) == ["k", "step", "shape"]


def test_the_condition_number_is_shown_and_a_bound_is_marked() -> None:
    rep = _report()
    console = Console(width=200, record=True)
    render_report(rep, console)
    text = console.export_text()
    assert "κ" in text
    free = ds.probe(ds.create_model("resnet_mlp", depth=2, width=8), torch.randn(1, 8), method="matrix-free")
    console = Console(width=200, record=True)
    render_report(free, console)
    assert "≥" in console.export_text()


def test_sparkline_shows_every_value_of_a_short_chain() -> None:
    """Fewer values than characters: one character each, lowest to highest (a flat line hid them)."""
    line = sparkline([0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0])
    assert line == SPARK
    assert len(sparkline(list(map(float, range(200))), width=60)) == 60


def test_no_number_is_cut_at_80_or_120_columns() -> None:
    """Every cell that is shown is shown whole: rich cuts a cell with "…" when the table overflows."""
    torch.manual_seed(0)
    cnn = ds.create_model("resnet20", width=0.5).eval()
    reports = [_report(), ds.probe(cnn, cnn.example_input(1, torch.Generator().manual_seed(0)), lyapunov=2)]
    for rep in reports:
        for width in (80, 120):
            console = Console(width=width, record=True)
            render_report(rep, console)
            lines = console.export_text().splitlines()
            assert max(len(line) for line in lines) <= width
            rows = [line for line in lines if line.strip().startswith("│ │")]
            assert rows and not any("…" in line for line in rows), f"cut cell at {width} columns"


def test_log_gains_are_shown_with_fixed_decimals() -> None:
    rep = _report()
    quantity, column = next((q, c) for q, c in table_columns() if q.name == "cum_log_rms")
    block = rep.blocks[0]
    assert cell(block, quantity, column) == f"{block.cum_log_rms:.3f}"
