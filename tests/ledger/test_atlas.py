"""The atlas page: self-contained HTML, every claim present, and a real headless Chromium loads it
without console errors (the page test runs wherever Chromium is installed; CI installs it and sets
DEPTHSCOPE_REQUIRE_BROWSER=1 so that a missing browser fails instead of skipping)."""

import dataclasses
import re
from pathlib import Path

import pytest
from tests.browser import loaded_page

import depthscope.ledger as ledger


@pytest.fixture(scope="module")
def atlas(tmp_path_factory, tiny_results) -> Path:
    results = list(tiny_results.values())
    return ledger.write_atlas(results, tmp_path_factory.mktemp("atlas") / "atlas.html")


def test_atlas_is_self_contained(atlas):
    html = atlas.read_text()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html), "the atlas must not load anything from the network"
    for claim_id in ledger.list_experiments():
        assert f'<section id="{claim_id}"' in html
    assert html.count("data:image/png;base64,") == sum(
        ledger.get_experiment(i).plot is not None for i in ledger.list_experiments()
    )


def test_atlas_escapes_text(tmp_path, tiny_results):
    r = next(iter(tiny_results.values()))
    evil = dataclasses.replace(r, reason="<script>alert(1)</script>", figure_png=None)
    html = ledger.render_atlas([evil])
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_summary_counts_verdicts(tiny_results):
    results = list(tiny_results.values())
    html = ledger.render_atlas(results)
    for verdict in ledger.VERDICTS:
        n = sum(r.verdict == verdict for r in results)
        assert f"{verdict}</span> {n}" in html


def test_each_claim_shows_its_preset_and_when_it_ran(tiny_results):
    """Results merged from several runs differ in preset and time; the page says which is which."""
    a, b = list(tiny_results.values())[:2]
    a = dataclasses.replace(a, preset="full", finished_at="2026-01-02T03:04:05+00:00")
    html = ledger.render_atlas([a, b])
    assert "preset full, tiny" in html
    assert "<td>full</td><td class='num'>2026-01-02T03:04:05+00:00</td>" in html
    assert f"<td>tiny</td><td class='num'>{b.finished_at}</td>" in html and b.finished_at
    assert "ran 2026-01-02T03:04:05+00:00" in html


def test_results_json_alone_rebuilds_the_atlas(tmp_path, tiny_results):
    """Figures travel in results.json, so the page made from the file equals the page made from the run."""
    results = list(tiny_results.values())
    back = ledger.load_results(ledger.save_results(results, tmp_path / "results.json"))
    assert back == results
    assert ledger.render_atlas(back) == ledger.render_atlas(results)


def test_atlas_loads_in_headless_chromium(atlas, tmp_path):
    with loaded_page(atlas) as (page, problems):
        sections = page.locator("section.claim")
        assert sections.count() == len(ledger.list_experiments())
        ids = [sections.nth(i).get_attribute("id") for i in range(sections.count())]
        assert ids == ledger.list_experiments()
        broken = page.evaluate("Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).length")
        assert broken == 0, f"{broken} figures did not decode"
        shot = tmp_path / "atlas.png"
        page.screenshot(path=str(shot), full_page=False)
        assert shot.read_bytes()[:4] == b"\x89PNG"
    assert problems == []
