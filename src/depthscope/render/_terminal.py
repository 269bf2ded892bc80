"""The terminal report: a rich table per step, a log-scale bar of the gain across depth, the verdict."""

from __future__ import annotations

import math

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from depthscope.probe._report import Report

# Unicode eighth-blocks for the sparkline of cum_log_fro.
SPARK = "▁▂▃▄▅▆▇█"
# Tables longer than this show the first and last rows only (a 10,000-step chain stays readable).
MAX_ROWS = 40
VERDICT_STYLE = {"stable": "bold green", "vanishing": "bold blue", "exploding": "bold red"}


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
        ("k", "right"), ("step", "left"), ("shape", "left"), ("rms σ", "right"), ("σ_max", "right"),
        ("σ_min", "right"), ("‖J−I‖", "right"), ("log gain 0→k", "right"), ("grad ratio", "right"),
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
        shape = "×".join(map(str, b.in_shape)) if b.in_shape == b.out_shape else (
            f"{'×'.join(map(str, b.in_shape))}→{'×'.join(map(str, b.out_shape))}"
        )
        table.add_row(
            str(b.index), b.name, shape, _fmt(b.local_fro), _fmt(b.local_sigma_max), smin,
            _fmt(b.identity_gap), _fmt(b.cum_log_fro), _fmt(b.grad_ratio, 4),
        )
    return table


def summary(report: Report) -> Text:
    style = VERDICT_STYLE.get(report.verdict, "bold")
    t = Text()
    t.append("verdict: ")
    t.append(report.verdict, style=style)
    t.append(f"   end-to-end log gain {report.log_gain:+.3f} over {len(report)} steps")
    t.append(f"   depth scale {_fmt(report.depth_scale)} steps (gain changes by e)\n")
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
