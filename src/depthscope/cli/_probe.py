"""``depthscope probe`` and ``depthscope models``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from depthscope.cli._common import (
    EXIT_FAILURE,
    OTHER_SOURCES,
    PROBE_BATCH,
    SOURCE_BATCH,
    _add_seed_option,
    _build_source,
    _check_report_path,
    _check_source_args,
    _key_value,
    _non_negative,
    _positive,
)

# --plot formats (matplotlib writes each by name) and the raster resolution of PNG.
PLOT_FORMATS = (".png", ".svg", ".pdf")
PLOT_DPI = 120


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


def _check_probe_args(args: argparse.Namespace) -> None:
    """Usage errors of ``depthscope probe`` that argparse cannot see (`_check_source_args`, and --plot's format)."""
    _check_source_args(args, OTHER_SOURCES)
    if args.plot and Path(args.plot).suffix.lower() not in PLOT_FORMATS:
        args.parser.error(f"--plot {args.plot}: the file name must end in {', '.join(PLOT_FORMATS)}")


def cmd_probe(args: argparse.Namespace) -> int:
    import depthscope as ds
    from depthscope.render import render_report

    _check_probe_args(args)
    for path in (args.json, args.html, args.plot):
        if path:
            _check_report_path(path)  # before the probe, which may take minutes
    built = _build_source(args)
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


def add_probe_parsers(sub) -> None:
    """`depthscope probe` and `depthscope models`."""
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
    _add_seed_option(p)
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
