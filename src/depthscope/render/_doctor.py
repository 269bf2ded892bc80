"""The doctor in the terminal: findings, prescriptions, and the before/after table.

Reads `depthscope.doctor.Diagnosis` and `Verification`; computes nothing. Every table wraps its
text to the console's width (80 columns and up stay readable; narrower consoles fold words).
"""

from __future__ import annotations

import math

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from depthscope.doctor import Diagnosis, Verification, gradient_log_ratio, step_ranges
from depthscope.render._terminal import VERDICT_STYLE

# The per-step before/after table shows at most this many rows (the first and last halves).
MAX_STEP_ROWS = 24


def _num(v: object, digits: int = 3) -> str:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, int):
        return str(v)
    if not math.isfinite(v):
        return str(v)
    return f"{v:.{digits}g}"


def _verdict(v: str) -> Text:
    return Text(v, style=VERDICT_STYLE.get(v, ""))


def findings_table(dx: Diagnosis) -> Table:
    """One row per finding: kind, severity, where (step ranges), what was measured."""
    order = dx.report.column("name")
    table = Table(title="Findings", title_justify="left", expand=True, show_lines=True)
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("finding", no_wrap=True)
    table.add_column("sev.", justify="right", no_wrap=True)
    table.add_column("where and evidence", ratio=1, overflow="fold")
    for i, f in enumerate(dx.findings, 1):
        evidence = ", ".join(f"{k} {_num(v)}" for k, v in f.evidence.items())
        text = Text(step_ranges(f.steps, order), style="bold")
        text.append(f"\n{f.summary}\n")
        text.append(evidence, style="dim")
        table.add_row(str(i), f.kind, f"{f.severity:.1f}", text)
    return table


def prescriptions_table(dx: Diagnosis) -> Table:
    """One row per prescription, best first: name, what it does and why, its source, or why blocked."""
    table = Table(title="Prescriptions (best first)", title_justify="left", expand=True, show_lines=True)
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("treatment", no_wrap=True)
    table.add_column("what, why, source", ratio=1, overflow="fold")
    for i, p in enumerate(dx.prescriptions, 1):
        text = Text(p.title, style="bold")
        text.append(" (keeps the function)" if p.preserves_function else " (changes the function)")
        if p.blocked is not None:
            text.append(f"\nBLOCKED: {p.blocked}", style="bold red")
        text.append(f"\n{p.rationale}")
        if p.constants:
            text.append("\n" + ", ".join(f"{k} {_num(v, 4)}" for k, v in p.constants.items()), style="dim")
        text.append(f"\n{p.source}", style="italic")
        table.add_row(str(i), p.name, text)
    return table


def diagnosis_renderable(dx: Diagnosis) -> Group:
    """The whole diagnosis as one rich renderable."""
    r = dx.report
    head = Text("probe: ")
    head.append_text(_verdict(r.verdict))
    head.append(f", log gain {r.log_gain:+.2f} over {len(r)} steps, depth scale {_num(r.depth_scale)}")
    parts: list = [head]
    if dx.healthy:
        parts.append(Text("healthy: no finding, nothing to prescribe.", style="bold green"))
    else:
        parts.append(findings_table(dx))
        if dx.prescriptions:
            parts.append(prescriptions_table(dx))
        else:
            parts.append(Text("No registered treatment fits these findings."))
    parts += [Text(f"note: {n}", style="dim") for n in dx.notes]
    return Group(*parts)


def verification_table(v: Verification) -> Table:
    """Before and after: verdict, log gain, depth scale, gradient ratio, training losses."""
    table = Table(title="Before and after", title_justify="left")
    table.add_column("")
    table.add_column("before", justify="right")
    table.add_column("after", justify="right")
    for quantity, before, after in v.summary():
        if quantity == "verdict":
            table.add_row(quantity, _verdict(before), _verdict(after))
        else:
            table.add_row(quantity, before, after)
    return table


def steps_table(v: Verification) -> Table | None:
    """Per step (names present in both reports): log gain 0->k and gradient ratio, before and after."""
    rows = v.rows()
    if not rows:
        return None
    table = Table(title="Per step", title_justify="left")
    table.add_column("step", overflow="fold")
    for label in ("log gain before", "after", "grad ratio before", "after"):
        table.add_column(label, justify="right")
    shown = rows if len(rows) <= MAX_STEP_ROWS else [*rows[: MAX_STEP_ROWS // 2], None, *rows[-MAX_STEP_ROWS // 2 :]]
    for row in shown:
        if row is None:
            table.add_row("...", "", "", "", "")
            continue
        name, cb, ca, gb, ga = row
        table.add_row(name, f"{cb:+.3f}", f"{ca:+.3f}", f"{gb:.4g}", f"{ga:.4g}")
    return table


def render_diagnosis(dx: Diagnosis, console: Console | None = None, title: str = "depthscope doctor") -> None:
    """Print a `Diagnosis`: findings and ranked prescriptions, or that the model is healthy."""
    console = console or Console()
    console.print(Panel(diagnosis_renderable(dx), title=title, expand=True))


def render_verification(
    v: Verification, console: Console | None = None, title: str = "depthscope doctor: verification"
) -> None:
    """Print a `Verification`: the side-by-side summary and the per-step table."""
    console = console or Console()
    parts: list = [verification_table(v)]
    if v.task is not None:
        t = v.task
        parts.append(
            Text(
                f"trained {t.steps} steps on digits ({t.optimizer}, lr {t.lr:g}, batch {t.batch}, seed {t.seed}), "
                "both from the same batches",
                style="dim",
            )
        )
    table = steps_table(v)
    if table is not None:
        parts.append(table)
    spread = gradient_log_ratio(v.after)
    parts.append(Text(f"after: the input gradient is e^{spread:+.2f} times the top layer's", style="dim"))
    console.print(Panel(Group(*parts), title=title, expand=True))
