"""The terminal report: a rich table per step, a log-scale bar of the gain across depth, the verdict."""

from __future__ import annotations

import math

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from depthscope.probing import DOMINANT_SHARE, QUANTITIES, BlockStats, Column, Quantity, Report

# Unicode eighth-blocks for the sparkline of cum_log_rms.
SPARK = "▁▂▃▄▅▆▇█"
# Tables longer than this show the first and last rows only (a 10,000-step chain stays readable).
MAX_ROWS = 40
VERDICT_STYLE = {"stable": "bold green", "vanishing": "bold blue", "exploding": "bold red"}
# The line saying what drives the verdict fits a standard terminal.
LINE_WIDTH = 80
# Characters a table column takes beyond its text: a space of padding either side and a border;
# the table's own left edge takes one more.
COLUMN_CHROME = 3
TABLE_EDGE = 1
# The table's first columns, in this order; the others follow in the order they are declared.
LEADING_COLUMNS = ("index", "name", "in_shape")
# Characters the panel around the table takes: a border and a space of padding either side.
PANEL_CHROME = 4


def _fmt(v: float | None, digits: int = 3, decimals: int | None = None) -> str:
    if v is None:
        return "-"
    if not math.isfinite(v):
        return str(v)
    if abs(v) >= 1e4:
        return f"{v:.2e}"
    return f"{v:.{decimals}f}" if decimals is not None else f"{v:.{digits}g}"


def sparkline(values: list[float], width: int = 60) -> str:
    """A one-line plot of ``values`` (resampled to ``width`` characters)."""
    vals = [v for v in values if math.isfinite(v)]
    if not vals:
        return ""
    n = len(values)
    m = min(width, n)  # one character per value up to ``width``, resampled beyond
    pick = [values[min(n - 1, int(i * n / m))] for i in range(m)]
    lo, hi = min(vals), max(vals)
    span = hi - lo or 1.0
    out = []
    for v in pick:
        if not math.isfinite(v):
            out.append(" ")
        else:
            out.append(SPARK[min(len(SPARK) - 1, int((v - lo) / span * (len(SPARK) - 1) + 0.5))])
    return "".join(out)


def table_columns() -> list[tuple[Quantity, Column]]:
    """``(quantity, column)`` of every quantity the table shows, in the table's order."""
    shown = [(q, q.column) for q in QUANTITIES if q.column is not None]
    lead = {name: i for i, name in enumerate(LEADING_COLUMNS)}
    return sorted(shown, key=lambda qc: lead.get(qc[0].name, len(lead)))


def _shape(shape: tuple[int, ...]) -> str:
    return "×".join(map(str, shape))


def cell(block: BlockStats, quantity: Quantity, column: Column) -> str:
    """The text of one table cell, as ``column`` says to show ``quantity`` of ``block``."""
    value = getattr(block, quantity.name)
    if isinstance(value, tuple):
        text = _shape(value)
        other = getattr(block, column.then) if column.then else value
        return text if other == value else f"{text}→{_shape(other)}"
    if isinstance(value, float) or value is None:
        text = _fmt(value, column.digits, column.decimals)
    else:
        text = str(value)
    if column.bound_mark is not None and value is not None:
        field, when, mark = column.bound_mark
        if getattr(block, field) == when:
            text = mark + text
    return text


def _fitting(cols: list[tuple[Quantity, Column]], cells: list[list[str]], width: int | None) -> list[int]:
    """Positions of the columns to show: all when they fit in ``width`` characters, else the
    columns of the highest priority number dropped, a level at a time, until they fit (priority 0
    is always shown)."""
    keep = list(range(len(cols)))
    if width is None:
        return keep
    # A header may wrap at its spaces ("log gain 0→k" over two lines); a cell does not.
    need = [max([len(w) for w in cols[i][1].header.split()] + [len(row[i]) for row in cells]) for i in keep]
    need = [n + COLUMN_CHROME for n in need]
    while sum(need[i] for i in keep) + TABLE_EDGE > width:
        worst = max(cols[i][1].priority for i in keep)
        if worst == 0:
            break
        keep = [i for i in keep if cols[i][1].priority < worst]
    return keep


def report_table(report: Report, width: int | None = None) -> Table:
    """The per-step table; on a terminal ``width`` characters wide, the columns that fit (by priority)."""
    cols = table_columns()
    rows = report.blocks
    idx = list(range(len(rows)))
    if len(rows) > MAX_ROWS:
        idx = idx[: MAX_ROWS // 2] + [-1] + idx[-MAX_ROWS // 2 :]
    cells = [[cell(rows[i], q, c) for q, c in cols] if i != -1 else None for i in idx]
    keep = _fitting(cols, [row for row in cells if row is not None], width)
    table = Table(title="per-step Jacobians", show_lines=False, header_style="bold")
    for i in keep:
        _, c = cols[i]
        table.add_column(c.header, justify=c.justify, no_wrap=c.justify == "left")
    for row in cells:
        if row is None:
            gap = [""] * len(keep)
            gap[:2] = ["…", f"({len(rows) - MAX_ROWS} steps)"]
            table.add_row(*gap)
        else:
            table.add_row(*(row[i] for i in keep))
    return table


def _shorten(name: str, width: int) -> str:
    """``name`` cut in the middle to at most ``width`` characters (block paths keep both ends)."""
    if len(name) <= width:
        return name
    keep = max(1, width - 1)
    return name[: keep - keep // 2] + "…" + name[len(name) - keep // 2 :]


def drivers_line(report: Report, width: int = LINE_WIDTH) -> str | None:
    """One line of at most ``width`` characters: the body's verdict and the step that drives the chain's.

    None when it would only repeat the chain's verdict (the body is the whole chain and no step
    carries more than `DOMINANT_SHARE` of the log change). Old reports without these fields give None.
    """
    driver = report.dominant_step if (report.dominant_share or 0.0) > DOMINANT_SHARE and len(report) > 1 else None
    whole = report.body_span is not None and report.body_span == [report.blocks[0].index, report.blocks[-1].index]
    if driver is None and (whole or report.body_span is None):
        return None
    if report.body_span is None:
        bodies = ["no body between stem and head"]
    else:
        span = f"body k={report.body_span[0]}–{report.body_span[1]}"
        if report.body_verdict is None:
            bodies = [f"{span}: gain not measured"]
        else:
            gain = f"{span} {report.body_verdict}: log gain {report.body_log_gain:+.3g}"
            bodies = [f"{gain}, depth scale {_fmt(report.body_depth_scale)}", gain]
    if driver is None:
        return next((b for b in bodies if len(b) <= width), bodies[-1][:width])

    def says(name: str, of: str) -> str:
        if driver in report.zero_steps:
            return f"{name!r} is zero (J = 0)"
        return f"{report.dominant_share:.0%} {of}in {name!r}"

    # Longest first: the depth scale is worth more than the words around the share.
    for body, of in [(b, of) for b in bodies for of in ("of the log gain ", "of log gain ")] + [(bodies[-1], "")]:
        line = f"{body}; {says(driver, of)}"
        if len(line) <= width:
            return line
    room = width - len(f"{bodies[-1]}; {says('', '')}")
    return f"{bodies[-1]}; {says(_shorten(driver, max(1, room)), '')}"[:width]


def summary(report: Report) -> Text:
    style = VERDICT_STYLE.get(report.verdict, "bold")
    t = Text()
    t.append("verdict: ")
    t.append(report.verdict, style=style)
    t.append(f", end-to-end log gain {report.log_gain:+.3f} over {len(report)} steps")
    t.append(f", depth scale {_fmt(report.depth_scale)}\n")
    line = drivers_line(report)
    if line is not None:
        t.append(line + "\n")
    for note in report.notes:
        t.append(f"note: {note}\n", style="yellow")
    t.append("log gain 0→k  ")
    t.append(sparkline(report.column("cum_log_rms")), style="cyan")
    t.append(f"  [{_fmt(min(report.column('cum_log_rms')))} … {_fmt(max(report.column('cum_log_rms')))}]\n")
    t.append("log ‖∂E/∂x_k‖ ")
    t.append(sparkline(report.column("grad_log_norm")), style="magenta")
    t.append(f"  input {report.input_grad_log_norm:+.3f}\n")
    if report.lyapunov:
        t.append("Lyapunov exponents per step: " + ", ".join(_fmt(v, 3) for v in report.lyapunov) + "\n")
    s = report.settings
    routes = ", ".join(f"{n} by {r}" for r, n in s.get("jacobian_routes", {}).items())
    t.append(
        f"batch {s.get('batch')}, {s.get('dtype')}, cumulative {s.get('cumulative')}, end-to-end "
        f"{s.get('end_to_end')}, seed {s.get('seed')}; steps {routes}; σ_min marked ≥ is a Weyl lower bound",
        style="dim",
    )
    return t


def render_report(report: Report, console: Console | None = None, title: str = "depthscope probe") -> None:
    """Print ``report`` to the terminal."""
    console = console or Console()
    table = report_table(report, width=console.width - PANEL_CHROME)
    console.print(Panel(Group(table, summary(report)), title=title, expand=False))
