"""Plain-text pieces the doctor's results print with: step ranges, numbers, wrapped paragraphs."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence

# Plain-text output fits a terminal of this many columns.
WIDTH = 80
# A run of consecutive steps at least this long prints as "first..last".
RUN_MIN = 3


def step_ranges(steps: Sequence[str], order: Sequence[str]) -> str:
    """``steps`` as compact text: runs of consecutive steps of ``order`` (the chain's step names)
    as "blocks.3..blocks.49", the rest listed ("stem, blocks.3..blocks.49, head"); names not in
    ``order`` are listed as they are."""
    if not steps:
        return "the whole model"
    position = {name: i for i, name in enumerate(order)}
    runs: list[list[str]] = []
    last = None
    for name in steps:
        here = position.get(name)
        if runs and here is not None and last is not None and here == last + 1:
            runs[-1].append(name)
        else:
            runs.append([name])
        last = here
    parts = []
    for run in runs:
        if len(run) >= RUN_MIN:
            parts.append(f"{run[0]}..{run[-1]}")
        else:
            parts.extend(run)
    return ", ".join(parts)


def number(value: object, digits: int = 3) -> str:
    """A number as short text (``digits`` significant digits; inf and nan spelt out)."""
    if not isinstance(value, float):  # ints, bools and anything else as they are
        return str(value)
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.{digits}g}"


def paragraph(text: str, indent: str, width: int = WIDTH) -> list[str]:
    """``text`` wrapped to ``width`` columns, every line indented by ``indent``."""
    return textwrap.wrap(text, width=width, initial_indent=indent, subsequent_indent=indent) or [indent.rstrip()]
