"""A report as one self-contained HTML page: verdict and drivers, figure, per-step table, settings.

The figure is embedded as a base64 PNG and the style sheet inline, so the page opens anywhere
with no other file and no network. Every text taken from the report is HTML-escaped (step names
are user-chosen module paths). Display only: the page reads the report and computes nothing new.
"""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path
from typing import Any

from depthscope._io import atomic_write_text
from depthscope.probing._figure import report_figure
from depthscope.probing._quantities import QUANTITIES

# Resolution of the embedded figure: sharp on a laptop screen, about 150 KB of PNG.
FIGURE_DPI = 110
# Significant digits of the table's numbers: the estimates' standard errors are rarely below 0.1 %.
DIGITS = 4

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1150px; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.1em; margin-top: 1.6em; }
.verdict { font-size: 1.2em; font-weight: bold; }
table { border-collapse: collapse; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: right; }
th { background: #f3f3f3; } td.name { text-align: left; font-family: monospace; }
img { max-width: 100%; }
"""


def _cell(value: Any) -> str:
    """A table cell's text: numbers to `DIGITS` significant digits, inf and nan spelled out."""
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return html.escape(str(value))
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return html.escape(f"{value:.{DIGITS}g}")


def figure_png(report: Any) -> bytes:
    """The report's figure (`report_figure`) as PNG bytes, rendered by the Agg canvas."""
    buf = io.BytesIO()
    report_figure(report).savefig(buf, format="png", dpi=FIGURE_DPI)
    return buf.getvalue()


def _table(report: Any) -> str:
    names = [q.name for q in QUANTITIES]
    head = "".join(f"<th>{html.escape(n)}</th>" for n in names)
    rows = []
    for block in report.blocks:
        cells = []
        for n in names:
            css = ' class="name"' if n == "name" else ""
            cells.append(f"<td{css}>{_cell(getattr(block, n))}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return f'<table id="steps"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _mapping(d: dict) -> str:
    rows = "".join(f'<tr><td class="name">{html.escape(str(k))}</td><td>{_cell(v)}</td></tr>' for k, v in d.items())
    return f"<table>{rows}</table>"


def report_html(report: Any, title: str = "depthscope report") -> str:
    """The page of ``report`` (a `Report`) as a string; `save_report_html` writes it."""
    png = base64.b64encode(figure_png(report)).decode("ascii")
    summary = {
        "log gain": report.log_gain,
        "depth scale": report.depth_scale,
        "input gradient log-norm": report.input_grad_log_norm,
        "body span": report.body_span,
        "body log gain": report.body_log_gain,
        "body verdict": report.body_verdict,
        "dominant step": report.dominant_step,
        "dominant share": report.dominant_share,
        "zero steps": ", ".join(report.zero_steps) or None,
        "Lyapunov exponents": ", ".join(_cell(v) for v in report.lyapunov) or None,
    }
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in report.notes) or "<li>none</li>"
    return f"""<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>{html.escape(title)}</title><style>{_STYLE}</style></head>
<body>
<h1>{html.escape(title)}</h1>
<p class="verdict">verdict: {html.escape(str(report.verdict))}</p>
<h2>What drives it</h2>
<ul id="notes">{notes}</ul>
{_mapping(summary)}
<h2>Figure</h2>
<img id="figure" alt="per-step gains, cumulative gain, gradient norms and Lyapunov spectrum" src="data:image/png;base64,{png}">
<h2>Per-step statistics ({len(report.blocks)} steps)</h2>
{_table(report)}
<h2>Settings</h2>
{_mapping(report.settings)}
<h2>Versions</h2>
{_mapping(report.versions)}
</body>
</html>
"""


def save_report_html(report: Any, path: str | Path, title: str = "depthscope report") -> Path:
    """Write `report_html` to ``path`` atomically (a temporary file renamed over the target)."""
    target = Path(path)
    atomic_write_text(target, report_html(report, title))
    return target
