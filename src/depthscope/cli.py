"""The ``depthscope`` command: argument parsing and printing only; every command is a library call."""

from __future__ import annotations

import argparse
import ast
import sys

import torch

# Exit statuses: argparse uses 2 for usage errors; we use 1 for a measurement that could not be made.
EXIT_FAILURE = 1
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for a command stopped by Ctrl-C
PROBE_BATCH = 8
# Largest seeds: the probe takes any torch generator seed (unsigned 64-bit); ledger experiments
# derive sub-seeds such as 1000 * seed + i, which 32-bit seeds keep far inside torch's 64 bits.
PROBE_SEED_MAX = 2**64 - 1
LEDGER_SEED_MAX = 2**32 - 1
DEFAULT_LEDGER_DIR = "depthscope-ledger"
# Ledger experiments run many small tensor operations; one thread avoids thread hand-off overhead
# and contention on a shared machine (`benchmarks/ledger_quick.py --threads N` compares).
LEDGER_THREADS = 1


def _bounds(low: int, high: int | None) -> str:
    return f"from {low} to {high}" if high is not None else f"at least {low}"


def _int_at_least(low: int, high: int | None = None):
    """An argparse ``type``: an integer in [low, high]; anything else is a usage error naming the option."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            if text.strip().lstrip("+-").isdigit():  # more digits than Python converts (4300)
                digits = len(text.strip())
                raise argparse.ArgumentTypeError(f"must be {_bounds(low, high)}, got a {digits}-digit number") from None
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be {_bounds(low, high)}, got {value}")
        return value

    parse.__name__ = "integer"  # argparse names the type in its messages
    return parse


_positive = _int_at_least(1)
_non_negative = _int_at_least(0)
_probe_seed = _int_at_least(0, PROBE_SEED_MAX)
_ledger_seed = _int_at_least(0, LEDGER_SEED_MAX)


def _key_value(text: str) -> tuple[str, object]:
    """A --set item: KEY=VALUE, the value read by `_value`."""
    key, sep, val = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), _value(val)


def _value(text: str):
    """A --set value: Python literal if it parses as one (3, 0.5, True, 'x'), else the string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):  # the parser gives up on deep nesting
        return text


def _model_kwargs(args: argparse.Namespace) -> dict:
    kw = {}
    for name in ("depth", "width"):
        if getattr(args, name) is not None:
            kw[name] = getattr(args, name)
    kw.update(args.set or [])
    return kw


def cmd_models(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    import depthscope as ds

    names = ds.list_models(args.pattern)
    if not names:
        print(f"depthscope: no registered model matches {args.pattern!r}", file=sys.stderr)
        return EXIT_FAILURE
    table = Table(title="registered models", header_style="bold")
    for col in ("name", "family", "description"):
        table.add_column(col)
    for name in names:
        spec = ds.model_spec(name)
        table.add_row(name, escape(spec.family), escape(spec.description))
    Console().print(table)
    return 0


def cmd_probe(args: argparse.Namespace) -> int:
    import depthscope as ds
    from depthscope.render import render_report

    if args.json:
        _check_report_path(args.json)  # before the probe, which may take minutes
    torch.manual_seed(args.seed)
    kw = _model_kwargs(args)
    try:
        model = ds.create_model(args.model, **kw)
    except ds.DepthscopeError:
        raise
    except (TypeError, ValueError) as err:  # the model's own argument checks, or none: say which call failed
        settings = ", ".join(f"{k}={v!r}" for k, v in kw.items())
        raise ds.DepthscopeError(f"cannot build {args.model}({settings}): {err}") from err
    model.eval()
    if args.float64:
        model = model.double()
    gen = torch.Generator().manual_seed(args.seed)
    x = model.example_input(args.batch, gen)
    if args.float64 and x.is_floating_point():
        x = x.double()
    report = ds.probe(model, x, probes=args.probes, lyapunov=args.lyapunov, seed=args.seed, exact=args.exact)
    if args.json:
        report.save(args.json)
    if not args.quiet:
        render_report(report, title=f"depthscope probe {args.model}")
        if args.json:
            print(f"report written to {args.json}")
    return 0


def _check_report_path(path: str) -> None:
    """Fail now, not after probing, if a report cannot be written at ``path``."""
    from pathlib import Path

    from depthscope._errors import DepthscopeError
    from depthscope._io import check_writable_dir

    target = Path(path)
    if target.is_dir():
        raise DepthscopeError(f"cannot write {target}: it is a directory")
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise DepthscopeError(f"cannot write {target}: directory {parent} does not exist")
    check_writable_dir(parent)


def cmd_ledger_list(args: argparse.Namespace) -> int:
    from pathlib import Path

    import depthscope.ledger as ledger
    from depthscope.render import render_ledger_list

    last = {}
    results = Path(args.results)
    if results.exists():
        last = {r.id: r for r in ledger.load_results(results)}
    render_ledger_list([ledger.get_experiment(i) for i in ledger.list_experiments()], last, source=str(results))
    return 0


def cmd_ledger_run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import depthscope.ledger as ledger
    from depthscope.render import ledger_progress, render_ledger_summary

    ids = ledger.resolve_ids(args.ids)  # unknown ids fail before anything runs
    torch.set_num_threads(args.threads)
    with ledger_progress(len(ids), quiet=args.quiet) as progress:
        results = ledger.run_many(
            ids, args.preset, seed=args.seed, out=args.out, on_start=progress.start, on_done=progress.done
        )
    if not args.quiet:
        in_file = len(ledger.load_results(Path(args.out) / ledger.RESULTS_FILE))
        render_ledger_summary(results, out=Path(args.out), in_file=in_file)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="depthscope", description="Jacobians of deep compositional systems.")
    parser.add_argument("--version", action="version", version=f"depthscope {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("probe", help="probe a registered model and print the report")
    p.add_argument("model", help="registered model name (see `depthscope models`)")
    p.add_argument("--depth", type=_positive, help="number of blocks")
    p.add_argument("--width", type=_positive, help="width of the blocks")
    p.add_argument(
        "--set", action="append", type=_key_value, metavar="KEY=VALUE", help="any other model argument, repeatable"
    )
    p.add_argument(
        "--batch", type=_positive, default=PROBE_BATCH, help=f"examples averaged over (default {PROBE_BATCH})"
    )
    p.add_argument("--probes", type=_positive, default=16, help="Hutchinson probes (default 16)")
    p.add_argument(
        "--lyapunov",
        type=_non_negative,
        default=None,
        help="Lyapunov exponents, 0 skips (default 8, fewer on a narrower chain)",
    )
    p.add_argument("--seed", type=_probe_seed, default=0, help="0 to 2**64 - 1 (default 0)")
    p.add_argument("--exact", action="store_true", help="exact Jacobians and SVDs (slow; the oracle)")
    p.add_argument("--float64", action="store_true", help="probe in double precision")
    p.add_argument("--json", metavar="PATH", help="also write the report as JSON")
    p.add_argument("--quiet", action="store_true", help="print nothing (with --json)")
    p.set_defaults(func=cmd_probe)

    m = sub.add_parser("models", help="list the registered models")
    m.add_argument("pattern", nargs="?", default="*", help="glob pattern, e.g. 'resnet*'")
    m.set_defaults(func=cmd_models)

    led = sub.add_parser("ledger", help="the claim ledger: every claim of the theory as an experiment")
    led_sub = led.add_subparsers(dest="ledger_command", required=True)
    ll = led_sub.add_parser("list", help="the claims, their sources and the verdicts of the last run")
    ll.add_argument(
        "--results",
        default=f"{DEFAULT_LEDGER_DIR}/results.json",
        metavar="PATH",
        help=f"results of the last run (default {DEFAULT_LEDGER_DIR}/results.json)",
    )
    ll.set_defaults(func=cmd_ledger_list)
    lr = led_sub.add_parser("run", help="run claims, update results.json and atlas.html")
    lr.add_argument("ids", nargs="*", metavar="ID", help="claim ids (e.g. R7 J3) or families (R); all by default")
    lr.add_argument("--preset", choices=("tiny", "quick", "full"), default="quick")
    lr.add_argument(
        "--out",
        default=DEFAULT_LEDGER_DIR,
        metavar="DIR",
        help=f"output folder; other claims' results from earlier runs there are kept (default {DEFAULT_LEDGER_DIR})",
    )
    lr.add_argument("--seed", type=_ledger_seed, default=0, help=f"0 to {LEDGER_SEED_MAX} (default 0)")
    lr.add_argument(
        "--threads",
        type=_positive,
        default=LEDGER_THREADS,
        help=f"torch threads (default {LEDGER_THREADS}: the experiments are many small tensors)",
    )
    lr.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    lr.set_defaults(func=cmd_ledger_run)
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


if __name__ == "__main__":
    sys.exit(main())
