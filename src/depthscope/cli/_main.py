"""The ``depthscope`` command's parser and entry point."""

from __future__ import annotations

import argparse
import sys

from depthscope.cli._common import EXIT_FAILURE, EXIT_INTERRUPTED
from depthscope.cli._design import _add_design_parsers
from depthscope.cli._doctor import add_doctor_parser
from depthscope.cli._ledger import add_ledger_parsers
from depthscope.cli._probe import add_probe_parsers


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="depthscope", description="Jacobians of deep compositional systems.")
    parser.add_argument("--version", action="version", version=f"depthscope {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    add_probe_parsers(sub)
    add_doctor_parser(sub)
    add_ledger_parsers(sub)
    _add_design_parsers(sub)
    return parser


def _version() -> str:
    from depthscope._version import __version__

    return __version__


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from depthscope._errors import DepthscopeError

    try:
        return args.func(args)
    except (DepthscopeError, ValueError, TypeError) as err:
        print(f"depthscope: error: {err}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:  # files written are whole: every write is atomic
        print("depthscope: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
