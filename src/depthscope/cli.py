"""The ``depthscope`` command: argument parsing and printing only; every command is a library call."""

from __future__ import annotations

import argparse
import ast
import sys

import torch

# Exit statuses: argparse uses 2 for usage errors; we use 1 for a measurement that could not be made.
EXIT_FAILURE = 1
PROBE_BATCH = 8
DEFAULT_LEDGER_DIR = "depthscope-ledger"
# Ledger experiments run many small tensor operations; one thread avoids thread hand-off overhead
# and contention on a shared machine (`benchmarks/ledger_quick.py --threads N` compares).
LEDGER_THREADS = 1


def _value(text: str):
    """A --set value: Python literal if it parses as one (3, 0.5, True, 'x'), else the string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _model_kwargs(args: argparse.Namespace) -> dict:
    kw = {}
    for name in ("depth", "width"):
        if getattr(args, name) is not None:
            kw[name] = getattr(args, name)
    for item in args.set or []:
        if "=" not in item:
            raise SystemExit(f"depthscope: --set takes KEY=VALUE, got {item!r}")
        key, val = item.split("=", 1)
        kw[key.strip()] = _value(val)
    return kw


def cmd_models(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    import depthscope as ds

    table = Table(title="registered models", header_style="bold")
    for col in ("name", "family", "description"):
        table.add_column(col)
    for name in ds.list_models(args.pattern):
        spec = ds.model_spec(name)
        table.add_row(name, spec.family, spec.description)
    Console().print(table)
    return 0


def cmd_probe(args: argparse.Namespace) -> int:
    import depthscope as ds
    from depthscope.render import render_report

    torch.manual_seed(args.seed)
    model = ds.create_model(args.model, **_model_kwargs(args))
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
    if args.threads < 1:
        raise ValueError(f"--threads must be at least 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    with ledger_progress(len(ids), quiet=args.quiet) as progress:
        results = ledger.run_many(ids, args.preset, seed=args.seed, out=args.out,
                                  on_start=progress.start, on_done=progress.done)
    if not args.quiet:
        render_ledger_summary(results, out=Path(args.out))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="depthscope", description="Jacobians of deep compositional systems.")
    parser.add_argument("--version", action="version", version=f"depthscope {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("probe", help="probe a registered model and print the report")
    p.add_argument("model", help="registered model name (see `depthscope models`)")
    p.add_argument("--depth", type=int, help="number of blocks")
    p.add_argument("--width", type=int, help="width of the blocks")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="any other model argument, repeatable")
    p.add_argument("--batch", type=int, default=PROBE_BATCH, help=f"examples averaged over (default {PROBE_BATCH})")
    p.add_argument("--probes", type=int, default=16, help="Hutchinson probes (default 16)")
    p.add_argument("--lyapunov", type=int, default=8, help="Lyapunov exponents, 0 skips (default 8)")
    p.add_argument("--seed", type=int, default=0)
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
    ll.add_argument("--results", default=f"{DEFAULT_LEDGER_DIR}/results.json", metavar="PATH",
                    help=f"results of the last run (default {DEFAULT_LEDGER_DIR}/results.json)")
    ll.set_defaults(func=cmd_ledger_list)
    lr = led_sub.add_parser("run", help="run claims, write results.json and atlas.html")
    lr.add_argument("ids", nargs="*", metavar="ID", help="claim ids (e.g. R7 J3) or families (R); all by default")
    lr.add_argument("--preset", choices=("tiny", "quick", "full"), default="quick")
    lr.add_argument("--out", default=DEFAULT_LEDGER_DIR, metavar="DIR", help=f"output folder (default {DEFAULT_LEDGER_DIR})")
    lr.add_argument("--seed", type=int, default=0)
    lr.add_argument("--threads", type=int, default=LEDGER_THREADS,
                    help=f"torch threads (default {LEDGER_THREADS}: the experiments are many small tensors)")
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


if __name__ == "__main__":
    sys.exit(main())
