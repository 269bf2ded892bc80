"""The terminal report: a rich table per step, a log-scale bar of the gain across depth, the verdict."""

from __future__ import annotations

import math

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from depthscope.probing._report import Report
from depthscope.probing._verdict import DOMINANT_SHARE

# Unicode eighth-blocks for the sparkline of cum_log_fro.
SPARK = "▁▂▃▄▅▆▇█"
# Tables longer than this show the first and last rows only (a 10,000-step chain stays readable).
MAX_ROWS = 40
VERDICT_STYLE = {"stable": "bold green", "vanishing": "bold blue", "exploding": "bold red"}
# The line saying what drives the verdict fits a standard terminal.
LINE_WIDTH = 80


def _fmt(v: float | None, digits: int = 3) -> str:
    if v is None:
        return "-"
    if not math.isfinite(v):
        return str(v)
    return f"{v:.{digits}g}" if abs(v) < 1e4 else f"{v:.2e}"


def sparkline(values: list[float], width: int = 60) -> str:
    """A one-line plot of ``values`` (resampled to ``width`` characters)."""
    vals = [v for v in values if math.isfinite(v)]
    if not vals:
        return ""
    n = len(values)
    pick = [values[min(n - 1, int(i * n / width))] for i in range(min(width, n))]
    lo, hi = min(vals), max(vals)
    span = hi - lo or 1.0
    out = []
    for v in pick:
        if not math.isfinite(v):
            out.append(" ")
        else:
            out.append(SPARK[min(len(SPARK) - 1, int((v - lo) / span * (len(SPARK) - 1) + 0.5))])
    return "".join(out)


def report_table(report: Report) -> Table:
    table = Table(title="per-step Jacobians", show_lines=False, header_style="bold")
    for col, just in [
        ("k", "right"),
        ("step", "left"),
        ("shape", "left"),
        ("rms σ", "right"),
        ("σ_max", "right"),
        ("σ_min", "right"),
        ("‖J−I‖", "right"),
        ("log gain 0→k", "right"),
        ("grad ratio", "right"),
    ]:
        table.add_column(col, justify=just, no_wrap=col in ("step", "shape"))
    rows = report.blocks
    idx = list(range(len(rows)))
    if len(rows) > MAX_ROWS:
        idx = idx[: MAX_ROWS // 2] + [-1] + idx[-MAX_ROWS // 2 :]
    for i in idx:
        if i == -1:
            table.add_row("…", f"({len(rows) - MAX_ROWS} steps)", "", "", "", "", "", "", "")
            continue
        b = rows[i]
        smin = _fmt(b.local_sigma_min)
        if b.sigma_min_kind == "weyl-lower-bound":
            smin = "≥" + smin
        shape = (
            "×".join(map(str, b.in_shape))
            if b.in_shape == b.out_shape
            else (f"{'×'.join(map(str, b.in_shape))}→{'×'.join(map(str, b.out_shape))}")
        )
        table.add_row(
            str(b.index),
            b.name,
            shape,
            _fmt(b.local_fro),
            _fmt(b.local_sigma_max),
            smin,
            _fmt(b.identity_gap),
            _fmt(b.cum_log_fro),
            _fmt(b.grad_ratio, 4),
        )
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
    t.append(sparkline(report.column("cum_log_fro")), style="cyan")
    t.append(f"  [{_fmt(min(report.column('cum_log_fro')))} … {_fmt(max(report.column('cum_log_fro')))}]\n")
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
    console.print(Panel(Group(report_table(report), summary(report)), title=title, expand=False))
