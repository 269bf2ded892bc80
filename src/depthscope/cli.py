"""The ``depthscope`` command: argument parsing and printing only; every command is a library call."""

from __future__ import annotations

import argparse
import ast
import os
import sys
from pathlib import Path

import torch

# Exit statuses: argparse uses 2 for usage errors; we use 1 for a measurement that could not be made.
EXIT_FAILURE = 1
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for a command stopped by Ctrl-C
PROBE_BATCH = 8
# Batch of models from outside the zoo: real networks at 224 px cost far more per example.
SOURCE_BATCH = 1
# --plot formats (matplotlib writes each by name) and the raster resolution of PNG.
PLOT_FORMATS = (".png", ".svg", ".pdf")
PLOT_DPI = 120
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


def _build_source(args: argparse.Namespace):
    """The model and input that ``depthscope probe`` was asked for: a `depthscope.sources.Built`.

    The sources' own errors (unknown names, bad shapes, missing libraries) are usage errors."""
    import depthscope as ds
    from depthscope import sources

    kw = dict(args.set or [])
    batch = args.batch if args.batch is not None else SOURCE_BATCH
    if args.hf:
        return sources.from_hf(args.hf, batch=batch, seq=args.seq, seed=args.seed, **kw)
    if args.torchvision:
        return sources.from_torchvision(args.torchvision, args.input, batch=batch, seed=args.seed, **kw)
    if args.timm:
        return sources.from_timm(args.timm, args.input, batch=batch, seed=args.seed, **kw)
    if ":" in args.model:
        if os.getcwd() not in sys.path:  # like `python -m`: the user's own package in the current folder
            sys.path.insert(0, os.getcwd())
        return sources.from_factory(args.model, args.input, input_file=args.input_file, seed=args.seed, **kw)
    kw = _model_kwargs(args)
    torch.manual_seed(args.seed)
    try:
        model = ds.create_model(args.model, **kw)
    except ds.DepthscopeError:
        raise
    except (TypeError, ValueError) as err:  # the model's own argument checks, or none: say which call failed
        settings = ", ".join(f"{k}={v!r}" for k, v in kw.items())
        raise ds.DepthscopeError(f"cannot build {args.model}({settings}): {err}") from err
    model.eval()
    gen = torch.Generator().manual_seed(args.seed)
    batch = args.batch if args.batch is not None else PROBE_BATCH
    return sources.Built(model, model.example_input(batch, gen), args.model)


def _check_probe_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Usage errors of ``depthscope probe`` that argparse cannot see: exactly one source, and
    options only where that source takes them."""
    chosen = [f"--{n}" for n in ("hf", "torchvision", "timm") if getattr(args, n)]
    if args.model:
        chosen.append(args.model)
    if len(chosen) != 1:
        which = ", ".join(chosen) if chosen else "none"
        parser.error(f"give one model: a registered name, module:callable, --hf, --torchvision or --timm (got {which})")
    zoo = bool(args.model) and ":" not in args.model
    factory = bool(args.model) and ":" in args.model
    if not zoo and (args.depth is not None or args.width is not None):
        parser.error("--depth and --width apply to registered models; use --set for the others")
    if args.input is not None and (zoo or args.hf):
        parser.error("--input applies to module:callable, --torchvision and --timm")
    if args.input_file is not None and not factory:
        parser.error("--input-file applies to module:callable")
    if args.seq is not None and not args.hf:
        parser.error("--seq applies to --hf")
    if args.plot and Path(args.plot).suffix.lower() not in PLOT_FORMATS:
        parser.error(f"--plot {args.plot}: the file name must end in {', '.join(PLOT_FORMATS)}")


def cmd_probe(args: argparse.Namespace) -> int:
    import depthscope as ds
    from depthscope import sources
    from depthscope.render import render_report

    parser = args.parser
    _check_probe_args(parser, args)
    if args.seq is None:
        args.seq = sources.DEFAULT_SEQ
    for path in (args.json, args.html, args.plot):
        if path:
            _check_report_path(path)  # before the probe, which may take minutes
    try:
        built = _build_source(args)
    except (sources.MissingLibraryError, ds.UnknownModelError, ds.InputError) as err:
        if args.model and ":" not in args.model and isinstance(err, ds.UnknownModelError):
            raise  # a misspelt registered name keeps its exit status 1 and suggestions
        parser.error(str(err))
    model, x = built.model, built.input
    if args.float64:
        model = model.double()
        if x.is_floating_point():
            x = x.double()
    blocks = [b.strip() for b in args.blocks.split(",") if b.strip()] if args.blocks else None
    report = ds.probe(
        model, x, probes=args.probes, lyapunov=args.lyapunov, seed=args.seed, exact=args.exact, blocks=blocks
    )
    title = f"depthscope probe {built.label}"
    if args.json:
        report.save(args.json)
    if args.html:
        report.save_html(args.html, title=title)
    if args.plot:
        _save_plot(report, Path(args.plot))
    if not args.quiet:
        render_report(report, title=title)
        for what, path in (("report", args.json), ("page", args.html), ("figure", args.plot)):
            if path:
                print(f"{what} written to {path}")
    return 0


def _save_plot(report, target: Path) -> None:
    """The report's figure in the format its file name ends with, written atomically."""
    import io

    from depthscope._io import atomic_write_bytes

    buf = io.BytesIO()
    report.plot().savefig(buf, format=target.suffix.lower().lstrip("."), dpi=PLOT_DPI)
    atomic_write_bytes(target, buf.getvalue())


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

    p = sub.add_parser(
        "probe",
        help="probe a model and print the report",
        description="Probe a registered model, your own factory (module:callable), or a Hugging Face, "
        "torchvision or timm model built with random weights. Nothing is downloaded: pretrained weights "
        "are not offered (load them yourself and call depthscope.probe from Python).",
    )
    p.add_argument(
        "model",
        nargs="?",
        help="registered model name (see `depthscope models`), or module:callable returning an nn.Module",
    )
    src = p.add_argument_group("other sources (random weights, nothing downloaded)")
    src.add_argument(
        "--hf", metavar="FAMILY", help="tiny Hugging Face model: bert, gpt2, llama, mistral, qwen2, t5, vit"
    )
    src.add_argument("--torchvision", metavar="NAME", help="torchvision.models.get_model(NAME, weights=None)")
    src.add_argument("--timm", metavar="NAME", help="timm.create_model(NAME, pretrained=False)")
    src.add_argument("--input", metavar="SHAPE", help="input shape, batch first, e.g. 1,3,224,224 (random normal)")
    src.add_argument("--input-file", metavar="PATH", help="input tensor saved with torch.save (module:callable)")
    src.add_argument("--seq", type=_positive, help="token ids per example for --hf (default 32)")
    p.add_argument("--blocks", metavar="PATTERN", help="comma-separated globs of the blocks, e.g. 'layer*.*'")
    p.add_argument("--depth", type=_positive, help="number of blocks")
    p.add_argument("--width", type=_positive, help="width of the blocks")
    p.add_argument(
        "--set",
        action="append",
        type=_key_value,
        metavar="KEY=VALUE",
        help="any other model argument (a factory's keyword, a Hugging Face config field), repeatable",
    )
    p.add_argument(
        "--batch",
        type=_positive,
        help=f"examples averaged over (default {PROBE_BATCH} for registered models, {SOURCE_BATCH} for the others)",
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
    p.add_argument("--html", metavar="PATH", help="also write a self-contained HTML page (figure, table, verdict)")
    p.add_argument("--plot", metavar="PATH", help="also save the figure: .png, .svg or .pdf")
    p.add_argument("--quiet", action="store_true", help="print nothing (with --json, --html or --plot)")
    p.set_defaults(func=cmd_probe, parser=p)

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
