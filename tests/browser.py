"""A page in headless Chromium for the tests of depthscope's HTML pages (not a test module).

Chromium comes from the system (Debian's package); where it or playwright is missing the page test
is skipped, unless DEPTHSCOPE_REQUIRE_BROWSER=1 (as .ci/run sets), where it fails instead.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
REQUIRE_BROWSER = os.environ.get("DEPTHSCOPE_REQUIRE_BROWSER") == "1"


def _sync_playwright():
    if CHROMIUM is None:
        if REQUIRE_BROWSER:
            pytest.fail("DEPTHSCOPE_REQUIRE_BROWSER=1 but no chromium on PATH")
        pytest.skip("chromium is not installed (CI installs it)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if REQUIRE_BROWSER:
            pytest.fail("DEPTHSCOPE_REQUIRE_BROWSER=1 but playwright is not installed")
        pytest.skip("playwright is not installed (pip install depthscope[test])")
    return sync_playwright


@contextmanager
def loaded_page(path: Path) -> Iterator[tuple[object, list[str]]]:
    """``(tab, problems)``: the file loaded in a headless tab, and every console error or warning,
    page error and failed request seen while the block runs (assert it empty after the block)."""
    problems: list[str] = []
    with _sync_playwright()() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            tab = browser.new_page()
            tab.on(
                "console",
                lambda m: problems.append(f"console {m.type}: {m.text}") if m.type in ("error", "warning") else None,
            )
            tab.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            tab.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
            tab.goto(Path(path).as_uri(), wait_until="load")
            yield tab, problems
        finally:
            browser.close()
