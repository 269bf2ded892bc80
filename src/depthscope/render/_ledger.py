"""Terminal display of the claim ledger: the claim list, a progress bar and the run summary."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from depthscope.ledger import SOURCES

VERDICT_STYLE = {"confirmed": "green", "qualified": "yellow", "refuted": "red"}
REASON_WIDTH = 90  # characters of the reason shown in tables


def _verdict(v: str | None) -> str:
    if v is None:
        return "[dim]not run[/dim]"
    return f"[{VERDICT_STYLE.get(v, 'white')}]{v}[/]"


def _short(text: str) -> str:
    """``text`` cut to the table width, with rich markup escaped ("[x_0, ...]" is text, not a style)."""
    return escape(text if len(text) <= REASON_WIDTH else text[: REASON_WIDTH - 1] + "…")


def render_ledger_list(experiments, last: Mapping[str, object], source: str, console: Console | None = None) -> None:
    """The registered claims with their source and the verdict of the last run (if any)."""
    console = console or Console()
    table = Table(title="claim ledger", header_style="bold")
    for col in ("id", "source", "claim", "last verdict"):
        table.add_column(col)
    for e in experiments:
        r = last.get(e.id)
        last_verdict = _verdict(getattr(r, "verdict", None))
        if r is not None:  # results merged from several runs may differ in preset
            last_verdict += f" [dim]({escape(str(r.preset))})[/dim]"
        table.add_row(e.id, f"{e.source} {SOURCES[e.source]}", _short(e.statement), last_verdict)
    console.print(table)
    if not last:
        console.print(f"[dim]no results at {escape(source)}; run `depthscope ledger run`[/dim]")


class _Progress:
    """Callbacks for `run_many`; the bar appears at the first claim started, so that an error found
    before any experiment runs (an unwritable folder) prints alone."""

    def __init__(self, total: int, quiet: bool):
        self._total, self._quiet = total, quiet
        self._p: Progress | None = None
        self._task = None

    def start(self, claim_id: str) -> None:
        if self._quiet:
            return
        if self._p is None:
            columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
            self._p = Progress(*columns, transient=True)
            self._p.start()
            self._task = self._p.add_task("ledger", total=self._total)
        self._p.update(self._task, description=f"running {claim_id}")

    def done(self, result) -> None:
        if self._p is not None:
            self._p.console.print(f"{result.id:>4} {_verdict(result.verdict)} [dim]({result.runtime_s:.1f} s)[/dim]")
            self._p.advance(self._task)

    def close(self) -> None:
        if self._p is not None:
            self._p.stop()


@contextmanager
def ledger_progress(total: int, quiet: bool = False) -> Iterator[_Progress]:
    """A progress bar with ``start(id)`` and ``done(result)`` callbacks for `run_many`."""
    progress = _Progress(total, quiet)
    try:
        yield progress
    finally:
        progress.close()


def render_ledger_summary(
    results, out: Path | None = None, console: Console | None = None, in_file: int | None = None
) -> None:
    """Verdict table and counts after a run; ``in_file``: claims in the results file it was merged into."""
    console = console or Console()
    table = Table(title="claim ledger: verdicts", header_style="bold")
    for col in ("id", "verdict", "why", "s"):
        table.add_column(col)
    for r in results:
        table.add_row(r.id, _verdict(r.verdict), _short(r.reason), f"{r.runtime_s:.1f}")
    console.print(table)
    counts = Counter(r.verdict for r in results)
    total = sum(r.runtime_s for r in results)
    line = ", ".join(f"{counts.get(v, 0)} {v}" for v in VERDICT_STYLE)
    console.print(f"{len(results)} claims: {line}; {total:.1f} s of experiments")
    if out is not None:
        console.print(f"results: {escape(str(out / 'results.json'))}  atlas: {escape(str(out / 'atlas.html'))}")
        if in_file is not None and in_file > len(results):
            console.print(f"the results file holds {in_file} claims: {in_file - len(results)} kept from earlier runs")
