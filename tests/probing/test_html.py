"""`Report.save_html`: one self-contained page (embedded figure, one table row per step, verdict,
drivers, settings, versions), escaped, written atomically; and it loads in headless Chromium
(skipped where Chromium is not installed, unless DEPTHSCOPE_REQUIRE_BROWSER=1; see tests/browser.py)."""

from __future__ import annotations

import base64
import dataclasses
import html
import re
from pathlib import Path

import pytest
import torch
from tests.browser import loaded_page

import depthscope as ds

HOSTILE = "<b>&evil</b>"


@pytest.fixture(scope="module")
def report() -> ds.Report:
    model = ds.create_model("resnet_mlp", depth=4, width=8)
    x = model.example_input(2, torch.Generator().manual_seed(0))
    rep = ds.probe(model, x, lyapunov=3, seed=0)
    blocks = list(rep.blocks)
    # a step name that is markup, and the values of a dead head: -inf log gain, nan gradient
    blocks[1] = dataclasses.replace(blocks[1], name=HOSTILE)
    blocks[-1] = dataclasses.replace(blocks[-1], local_rms=0.0, cum_log_rms=float("-inf"), grad_log_norm=float("nan"))
    return dataclasses.replace(rep, blocks=blocks, notes=[*rep.notes, "a note with <script>alert(1)</script>"])


@pytest.fixture(scope="module")
def page(report: ds.Report, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return report.save_html(tmp_path_factory.mktemp("html") / "report.html", title="probe <x>")


def test_page_is_self_contained(page: Path, report: ds.Report) -> None:
    text = page.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    assert not re.search(r"""(src|href)=["'](?!data:)""", text), "the page loads nothing from outside"
    png = re.search(r'src="data:image/png;base64,([^"]+)"', text)
    assert png and base64.b64decode(png.group(1))[:4] == b"\x89PNG"
    assert f"verdict: {report.verdict}" in text
    for key in report.settings:
        assert html.escape(str(key)) in text
    assert report.versions["torch"] in text


def test_every_step_name_escaped(page: Path, report: ds.Report) -> None:
    text = page.read_text(encoding="utf-8")
    for name in report.column("name"):
        assert f">{html.escape(name)}</td>" in text
    assert HOSTILE not in text and "<script>" not in text
    assert "probe &lt;x&gt;" in text
    assert text.count('<tr><td class="name">') >= len(report)
    assert ">-inf<" in text and ">nan<" in text


def test_written_atomically_over_an_old_page(tmp_path: Path, report: ds.Report) -> None:
    target = tmp_path / "r.html"
    target.write_text("old")
    assert report.save_html(target) == target
    assert target.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]  # no temporary file left


def test_page_loads_in_headless_chromium(page: Path, report: ds.Report) -> None:
    with loaded_page(page) as (tab, problems):
        width = tab.evaluate("document.getElementById('figure').naturalWidth")
        assert width > 0, "the figure did not decode"
        assert tab.locator("#steps tbody tr").count() == len(report)
        names = tab.locator("#steps tbody td.name").all_inner_texts()
        assert names == report.column("name")
        assert tab.evaluate("document.scripts.length") == 0
    assert problems == []
