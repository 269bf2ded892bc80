"""Terminal display of the design tools' results: growth, the growth bound, pruning, paths, rankings.

Each function reads a result (a `depthscope.probing.Report`, a `depthscope.design.GrowthPlan`,
`PruneInfo`, `PathProfile`, `Ranking`) and prints tables; nothing here measures.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from depthscope.design import GrowthPlan, PathProfile, PruneInfo, Ranking
from depthscope.probing import Report
from depthscope.render._terminal import _shape

# Path lengths shown one per row up to this many; longer profiles are cut to the rows that carry
# gradient (share above ``SHARE_SHOWN``) so a 100-block net stays readable.
MAX_PATH_ROWS = 24
SHARE_SHOWN = 1e-3


def _f(v: float | None, digits: int = 4) -> str:
    if v is None:
        return "-"
    if not math.isfinite(v):
        return str(v)
    return f"{v:.{digits}g}"


def render_growth(
    before: Report, after: Report, new_steps: Sequence[str], change: float, console: Console | None = None
) -> None:
    """The grown model's steps (new ones marked), the end-to-end log gain before and after, and the
    largest change of any output entry."""
    console = console or Console()
    table = Table(title="grown model: steps", header_style="bold")
    for col in ("step", "", "shape", "||J - I||₂", "local rms", "log gain 0→k"):
        table.add_column(col, justify="left" if col in ("step", "") else "right")
    new = set(new_steps)
    for b in after.blocks:
        table.add_row(
            escape(b.name),
            "[green]new[/]" if b.name in new else "",
            _shape(b.in_shape),
            _f(b.identity_gap, 3),
            _f(b.local_rms, 3),
            f"{b.cum_log_rms:+.3f}",
        )
    console.print(table)
    console.print(f"log gain {before.log_gain:+.4f} → {after.log_gain:+.4f}  ({before.verdict} → {after.verdict})")
    console.print(f"{len(new)} new blocks; largest output change {change:.3g}")


def render_plan(plan: GrowthPlan, console: Console | None = None) -> None:
    """The growth bound and the measured gain of 1, 2, ... inserted blocks of each family."""
    console = console or Console()
    table = Table(title=f"growth after {escape(plan.after)}: gain within 1 ± {plan.tol:g}", header_style="bold")
    table.add_column("m", justify="right")
    table.add_column("(1+ε)^m", justify="right")
    for c in plan.curves:
        table.add_column(f"gain, {c.kind}", justify="right")
    rows = max(len(c.gain) for c in plan.curves)
    for m in range(1, rows + 1):
        marks = []
        for c in plan.curves:
            g = c.gain[m - 1] if m <= len(c.gain) else None
            inside = g is not None and 1 - plan.tol <= g <= 1 + plan.tol
            marks.append(_f(g, 5) if inside or g is None else f"[red]{_f(g, 5)} out[/]")
        label = f"{m}" + (" ← bound" if m == plan.bound else "")
        table.add_row(label, _f((1 + plan.eps) ** m, 5), *marks)
    console.print(table)
    measured = ", ".join(f"{c.kind} {c.bound}" for c in plan.curves)
    if plan.model_norms:
        norms = sorted(plan.model_norms.values())
        console.print(
            f"the model's own {len(norms)} residual blocks: ||J - I||₂ from {norms[0]:.3g} to {norms[-1]:.3g} "
            f"(median {norms[len(norms) // 2]:.3g})"
        )
    console.print(
        f"ε = {plan.eps:g}: at most {plan.bound} blocks (floor(log(1+tol)/log(1+ε))); from the measured block "
        f"norms: {measured}"
    )


def render_prune(info: PruneInfo, console: Console | None = None) -> None:
    """The lesion ranking (removed blocks marked) and before/after numbers."""
    console = console or Console()
    table = Table(title=f"lesion ranking ({info.metric}), least important first", header_style="bold")
    effect = "accuracy lost" if info.metric == "accuracy" else "output change"
    for col in ("block", effect, ""):
        table.add_column(col, justify="right" if col == effect else "left")
    removed = set(info.removed)
    for r in info.ranking:
        table.add_row(escape(r.name), f"{r.effect:+.4f}", "[red]removed[/]" if r.name in removed else "kept")
    console.print(table)
    if info.accuracy_before is not None:
        console.print(f"accuracy {info.accuracy_before:.4f} → {info.accuracy_after:.4f}")
    console.print(f"output change {info.output_change:.3g}; removed {len(info.removed)} of {len(info.ranking)} blocks")
    console.print(
        f"effective depth (gradient-weighted path length) {_f(info.effective_depth_before, 3)} → "
        f"{_f(info.effective_depth_after, 3)}"
    )


def render_paths(profile: PathProfile, console: Console | None = None) -> None:
    """Share of paths and share of gradient by path length."""
    console = console or Console()
    table = Table(title=f"paths through {len(profile.blocks)} residual blocks ({profile.n_paths} paths)")
    for col in ("length k", "share of paths", "share of gradient"):
        table.add_column(col, justify="right")
    ks = list(range(len(profile.count_share)))
    if len(ks) > MAX_PATH_ROWS:
        ks = [k for k in ks if profile.gradient_share[k] > SHARE_SHOWN][:MAX_PATH_ROWS]
    for k in ks:
        table.add_row(str(k), f"{profile.count_share[k]:.4f}", f"{profile.gradient_share[k]:.4f}")
    console.print(table)
    lo, hi = profile.effective_range
    console.print(
        f"effective depth {profile.effective_depth:.3f}; paths {lo}-{hi} blocks long carry most of the gradient "
        f"(decomposition error {profile.decomposition_error:.1e}, loss: {profile.loss})"
    )


def render_ranking(ranking: Ranking, console: Console | None = None) -> None:
    """Candidates best first, with the score's parts and NASWOT beside."""
    console = console or Console()
    table = Table(title="candidates by trainability (probe score), best first", header_style="bold")
    for col in ("#", "candidate", "score", "gain", "depth", "spread", "log gain", "NASWOT"):
        table.add_column(col, justify="left" if col == "candidate" else "right", overflow="fold")
    for i, c in enumerate(ranking.candidates, 1):
        table.add_row(
            str(i),
            escape(c.name) + (" [dim](J5)[/]" if c.gain_source != "measured" else ""),
            f"{c.score:+.3f}",
            f"{c.parts['gain']:+.3f}",
            f"{c.parts['depth']:+.3f}",
            f"{c.parts['spread']:+.3f}",
            f"{c.log_gain:+.3f}",
            _f(c.naswot, 5) if c.naswot is not None else "[dim]n/a[/]",
        )
    console.print(table)
    missing = [c for c in ranking.candidates if c.naswot is None and c.naswot_reason]
    for c in missing:
        console.print(f"[dim]{escape(c.name)}: {escape(c.naswot_reason)}[/]")
