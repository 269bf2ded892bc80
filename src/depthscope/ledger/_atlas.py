"""The atlas: one self-contained HTML page of ledger results (figures embedded, no network)."""

from __future__ import annotations

import base64
import html
import math
import re
from collections import Counter
from pathlib import Path
from typing import Any

from depthscope._io import atomic_write_text
from depthscope._version import runtime_versions
from depthscope.ledger._experiment import SOURCES, VERDICTS
from depthscope.ledger._result import ClaimResult

LIST_PREVIEW = 8  # list entries shown before eliding
FLOAT_DIGITS = 4  # significant digits of measured floats
# The page names the results file it shows by digest, so a split pair can be detected.
RESULTS_DIGEST_META = "depthscope-results-sha256"

_CSS = """
body{font:15px/1.45 system-ui,sans-serif;margin:0 auto;max-width:1100px;padding:1.5em;color:#1d232a}
h1{margin-bottom:.2em} h2{margin-top:2.2em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;margin:.6em 0} td,th{border:1px solid #ddd;padding:.25em .55em;vertical-align:top;text-align:left}
th{background:#f4f6f8} .num{font-family:ui-monospace,monospace;font-size:13px}
.v{font-weight:600;padding:.1em .5em;border-radius:.6em;white-space:nowrap}
.confirmed{background:#d7f5dd;color:#0b5d1e} .qualified{background:#fff1c7;color:#7a5300} .refuted{background:#fbd9d9;color:#8a1111}
.meta{color:#555;font-size:13px} img{max-width:100%;border:1px solid #eee}
dl{display:grid;grid-template-columns:9em 1fr;gap:.2em .8em} dt{font-weight:600;color:#444}
"""


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return f"{value:.{FLOAT_DIGITS}g}" if math.isfinite(value) else str(value)
    if isinstance(value, list):
        shown = ", ".join(_fmt(v) for v in value[:LIST_PREVIEW])
        more = f", … ({len(value)} in all)" if len(value) > LIST_PREVIEW else ""
        return f"[{shown}{more}]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_fmt(v)}" for k, v in value.items()) + "}"
    return str(value)


def _kv_table(d: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td class='num'>{html.escape(_fmt(v))}</td></tr>" for k, v in d.items()
    )
    return f"<table>{rows}</table>"


def _badge(verdict: str) -> str:
    return f"<span class='v {html.escape(verdict)}'>{html.escape(verdict)}</span>"


def _section(r: ClaimResult) -> str:
    esc = html.escape
    figure = ""
    if r.figure_png:
        data = base64.b64encode(r.figure_png).decode("ascii")
        figure = f"<img alt='figure for {esc(r.id)}' src='data:image/png;base64,{data}'>"
    refs = "".join(f"<li>{esc(x)}</li>" for x in r.references)
    refs = f"<dt>compared with</dt><dd><ul>{refs}</ul></dd>" if refs else ""
    return f"""
<section id="{esc(r.id)}" class="claim" data-verdict="{esc(r.verdict)}">
<h2>{esc(r.id)} {_badge(r.verdict)}</h2>
<p><b>Claim</b> ({esc(SOURCES.get(r.source, r.source))}): {esc(r.statement)}</p>
<dl>
<dt>expected</dt><dd>{esc(r.expected)}</dd>
<dt>refuted if</dt><dd>{esc(r.refuted_if)}</dd>
<dt>verdict</dt><dd>{_badge(r.verdict)} {esc(r.reason)}</dd>
{refs}
</dl>
{figure}
<h3>measured</h3>{_kv_table(r.measured)}
<h3>setting</h3>{_kv_table(r.setting)}
<p class="meta">preset {esc(r.preset)} · seed {r.seed} · {r.runtime_s:.2f} s{_ran(r)}</p>
</section>"""


def _ran(r: ClaimResult) -> str:
    return f" · ran {html.escape(r.finished_at)}" if r.finished_at else ""


def render_atlas(
    results: list[ClaimResult], title: str = "depthscope claim ledger", *, results_sha256: str | None = None
) -> str:
    """The atlas page as an HTML string.

    ``results_sha256``: digest of the results file the page is written beside (recorded in a meta tag).
    """
    esc = html.escape
    counts = Counter(r.verdict for r in results)
    summary = " · ".join(f"{_badge(v)} {counts.get(v, 0)}" for v in VERDICTS)
    total = sum(r.runtime_s for r in results)
    rows = "".join(
        f"<tr><td><a href='#{esc(r.id)}'>{esc(r.id)}</a></td><td>{esc(r.statement)}</td>"
        f"<td>{_badge(r.verdict)}</td><td>{esc(r.reason)}</td><td>{esc(r.preset)}</td>"
        f"<td class='num'>{esc(r.finished_at)}</td><td class='num'>{r.runtime_s:.1f}</td></tr>"
        for r in results
    )
    v = runtime_versions()
    meta = " · ".join(f"{esc(k)} {esc(val)}" for k, val in v.items())
    presets = ", ".join(sorted({r.preset for r in results})) or "none"
    digest_meta = f'<meta name="{RESULTS_DIGEST_META}" content="{esc(results_sha256)}">\n' if results_sha256 else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
{digest_meta}<title>{esc(title)}</title><style>{_CSS}</style></head>
<body>
<h1>{esc(title)}</h1>
<p class="meta">{len(results)} claims · preset {esc(presets)} · {total:.1f} s of experiments · {meta}</p>
<p id="summary">{summary}</p>
<table id="verdicts"><tr><th>id</th><th>claim</th><th>verdict</th><th>why</th><th>preset</th><th>ran (UTC)</th><th>s</th></tr>
{rows}</table>
{"".join(_section(r) for r in results)}
</body></html>
"""


def atlas_results_sha256(page: str) -> str | None:
    """The results digest recorded in an atlas page by `render_atlas`, or None."""
    found = re.search(rf'<meta name="{RESULTS_DIGEST_META}" content="([0-9a-f]+)">', page)
    return found.group(1) if found else None


def write_atlas(results: list[ClaimResult], path: str | Path) -> Path:
    """Write the atlas page atomically and return its path (alone; `write_ledger` writes it with results.json)."""
    target = Path(path)
    atomic_write_text(target, render_atlas(results))
    return target
