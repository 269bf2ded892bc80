"""The ``depthscope`` command: argument parsing and printing only; every command is a library call.

One module per command group: `_probe` (probe, models), `_doctor`, `_design` (grow, prune, rank),
`_ledger`; `_common` holds what they share and `_main` the parser that joins them.
"""

from depthscope.cli._main import build_parser, main

__all__ = ["build_parser", "main"]
