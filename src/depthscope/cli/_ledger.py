"""``depthscope ledger list`` and ``depthscope ledger run``."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from depthscope.cli._common import _int_at_least, _positive

# The ledger's seeds: experiments derive sub-seeds such as 1000 * seed + i, which 32-bit seeds keep
# far inside torch's 64 bits.
LEDGER_SEED_MAX = 2**32 - 1
DEFAULT_LEDGER_DIR = "depthscope-ledger"
# Ledger experiments run many small tensor operations; one thread avoids thread hand-off overhead
# and contention on a shared machine (`benchmarks/ledger_quick.py --threads N` compares).
LEDGER_THREADS = 1

_ledger_seed = _int_at_least(0, LEDGER_SEED_MAX)


def cmd_ledger_list(args: argparse.Namespace) -> int:

    import depthscope.ledger as ledger
    from depthscope.render import render_ledger_list

    last = {}
    results = Path(args.results)
    if results.exists():
        last = {r.id: r for r in ledger.load_results(results)}
    render_ledger_list([ledger.get_experiment(i) for i in ledger.list_experiments()], last, source=str(results))
    return 0


def cmd_ledger_run(args: argparse.Namespace) -> int:

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


def add_ledger_parsers(sub) -> None:
    """`depthscope ledger list` and `depthscope ledger run`."""
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
