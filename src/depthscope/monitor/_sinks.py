"""Where the monitor's records go besides its history: TensorBoard scalars and a console line.

These only read records; nothing here computes a quantity. Tags in TensorBoard:

    depthscope/loss, depthscope/end_to_end                      one per step
    depthscope/<quantity>/<block>                               one per step and block, for each
                                                                quantity of `BLOCK_QUANTITIES`
    depthscope/probe/log_gain, .../depth_scale, .../lyapunov_max  one per scheduled probe
    depthscope/alerts                                           text, one per alert
"""

from __future__ import annotations

import math
import os
import shutil
import sys
import time
from pathlib import Path

from depthscope._errors import DepthscopeError
from depthscope._io import check_writable_dir
from depthscope.monitor._records import BLOCK_QUANTITIES, Alert, ProbeRecord, StepRecord

TAG_ROOT = "depthscope"
# The console line is printed at most this often (seconds), so that a fast loop is not slowed by
# printing and a log file does not fill with one line per step.
CONSOLE_INTERVAL_S = 5.0


class TensorBoardSink:
    """Scalars under ``depthscope/...`` through ``torch.utils.tensorboard.SummaryWriter``.

    Raises:
        DepthscopeError: ``log_dir`` cannot be created or written, or tensorboard is missing.
    """

    def __init__(self, log_dir: str | os.PathLike, blocks: tuple[str, ...]):
        check_writable_dir(Path(log_dir))
        try:
            # tensorboard is an optional extra (depthscope[monitor]); importing it costs ~1 s.
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as err:
            raise DepthscopeError(
                "log_dir needs tensorboard (pip install 'depthscope[monitor]' or pip install tensorboard)"
            ) from err
        self.writer = SummaryWriter(log_dir=str(log_dir))
        self.blocks = blocks

    def record(self, r: StepRecord) -> None:
        add = self.writer.add_scalar
        if math.isfinite(r.loss):
            add(f"{TAG_ROOT}/loss", r.loss, r.step)
        add(f"{TAG_ROOT}/end_to_end", r.end_to_end, r.step)
        for q in BLOCK_QUANTITIES:
            if q == "update_ratio":
                continue  # known one step later: `update`
            for name, value in zip(self.blocks, getattr(r, q)):
                if not math.isnan(value):
                    add(f"{TAG_ROOT}/{q}/{name}", value, r.step)

    def update(self, step: int, ratios: tuple[float, ...]) -> None:
        for name, value in zip(self.blocks, ratios):
            if not math.isnan(value):
                self.writer.add_scalar(f"{TAG_ROOT}/update_ratio/{name}", value, step)

    def probe(self, p: ProbeRecord) -> None:
        self.writer.add_scalar(f"{TAG_ROOT}/probe/log_gain", p.log_gain, p.step)
        if math.isfinite(p.depth_scale):
            self.writer.add_scalar(f"{TAG_ROOT}/probe/depth_scale", p.depth_scale, p.step)
        if p.lyapunov:
            self.writer.add_scalar(f"{TAG_ROOT}/probe/lyapunov_max", p.lyapunov[0], p.step)

    def alert(self, a: Alert) -> None:
        self.writer.add_text(f"{TAG_ROOT}/alerts", a.message, a.step)

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class Console:
    """Alerts printed as they come, and a one-line summary at most every `CONSOLE_INTERVAL_S`.

    Uses rich when it is installed (styled, to stderr), plain ``print`` otherwise.
    """

    def __init__(self, blocks: tuple[str, ...]):
        self.blocks = blocks
        self._last = -math.inf
        try:
            from rich.console import Console as RichConsole  # optional: plain print without it
        except ImportError:
            self._rich = None
        else:
            self._rich = RichConsole(stderr=True)

    def _print(self, text: str, style: str | None = None) -> None:
        if self._rich is not None:
            self._rich.print(text, style=style, markup=False, highlight=False)
        else:
            print(text, file=sys.stderr)

    def record(self, r: StepRecord) -> None:
        now = time.monotonic()
        if now - self._last < CONSOLE_INTERVAL_S:
            return
        self._last = now
        width = self._rich.width if self._rich is not None else shutil.get_terminal_size().columns
        self._print(summary_line(r, self.blocks, width))

    def alert(self, a: Alert) -> None:
        self._print(f"depthscope alert: {a.message}", style="bold red" if a.kind == "nonfinite" else "yellow")


def summary_line(r: StepRecord, blocks: tuple[str, ...], width: int | None = None) -> str:
    """``depthscope step 120  loss 0.412  grad |blocks.0| 3.1e-04 |blocks.29| 2.2e-02  end-to-end
    0.014  weakest blocks.0``, fitted to ``width`` columns (None: whole): the weakest block, then
    the loss are left out first, then the labels shortened; what still does not fit is cut with an
    ellipsis."""
    head = f"depthscope step {r.step}"
    loss = f"  loss {r.loss:.4g}" if math.isfinite(r.loss) else ""
    grads = f"  grad |{blocks[0]}| {r.grad_norm[0]:.2e} |{blocks[-1]}| {r.grad_norm[-1]:.2e}"
    e2e = f"  end-to-end {r.end_to_end:.3g}"
    weakest = ""
    if any(not math.isnan(v) for v in r.grad_norm):
        k = min(range(len(r.grad_norm)), key=lambda i: math.inf if math.isnan(r.grad_norm[i]) else r.grad_norm[i])
        weakest = f"  weakest {blocks[k]}"
    compact = (
        f"depthscope {r.step}  |{blocks[0]}| {r.grad_norm[0]:.1e} |{blocks[-1]}| {r.grad_norm[-1]:.1e}"
        f"  e2e {r.end_to_end:.2g}"
    )
    for line in (head + loss + grads + e2e + weakest, head + loss + grads + e2e, head + grads + e2e, compact):
        if width is None or len(line) <= width:
            return line
    return line[: max(1, width - 1)] + "…"
