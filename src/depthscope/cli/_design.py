"""``depthscope grow``, ``prune`` and ``rank``: the design tools."""

from __future__ import annotations

import argparse

import torch

from depthscope.cli._common import (
    _add_model_options,
    _add_seed_option,
    _build_source,
    _check_source_args,
    _create_model,
    _fit_digits,
    _int_at_least,
    _key_value,
    _positive,
)

# depthscope grow: the branch norm of noise blocks when --eps is not given.
GROW_EPS = 0.01
# depthscope prune --train-steps: the Adam step the ledger trains its digits MLPs with.
PRUNE_LR = 2e-3
# depthscope rank: NASWOT compares the examples of one batch; Mellor et al. 2021 used 128.
RANK_BATCH = 32


def cmd_grow(args: argparse.Namespace) -> int:
    import depthscope as ds
    from depthscope.render import render_growth, render_plan

    _check_source_args(args)
    built = _build_source(args)
    model, x = built.model, built.input
    grown = ds.grow(model, args.blocks, args.after, init=args.init, eps=args.eps, kind=args.kind, x=x, seed=args.seed)
    sites = ds.design.layout(model, x)
    site = sites.find(args.after) if args.after else sites.sites[-1]
    new = [s.name for s in ds.design.layout(grown, x).chain.steps[site.index + 1 : site.index + 1 + args.blocks]]
    with torch.no_grad():
        change = float((grown(x) - model(x)).abs().max())
    before = ds.probe(model, x, lyapunov=0, seed=args.seed)
    after = ds.probe(grown, x, lyapunov=0, seed=args.seed)
    render_growth(before, after, new, change)
    if args.tol is not None:
        render_plan(ds.growth_bound(model, x, tol=args.tol, eps=args.eps or GROW_EPS, after=site.name, seed=args.seed))
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    import depthscope as ds
    from depthscope.render import render_prune

    _check_source_args(args)
    if args.train_steps:
        _fit_digits(args)
    built = _build_source(args)
    model, x = built.model, built.input
    data = None
    if args.train_steps:
        digits = ds.ledger.digits()
        ds.ledger.train_classifier(model, digits, steps=args.train_steps, lr=PRUNE_LR, optimizer="adam", seed=args.seed)
        model.eval()
        x, data = digits.x_test[: x.shape[0]], (digits.x_test, digits.y_test)
    _, info = ds.prune(model, x, data, keep=args.keep, seed=args.seed)
    render_prune(info)
    return 0


def _candidate(text: str) -> tuple[str, str, dict]:
    """A ``depthscope rank`` candidate: NAME or NAME,KEY=VALUE,... (label, registered name, settings)."""
    name, *items = text.split(",")
    return text, name.strip(), dict(_key_value(i) for i in items)


def cmd_rank(args: argparse.Namespace) -> int:
    import depthscope as ds
    from depthscope.render import render_ranking

    models = {
        label: _create_model(name, {**dict(args.set or []), **kw}, args.seed, label=f"candidate {label}")
        for label, name, kw in args.candidates
    }
    first = next(iter(models.values()))
    x = first.example_input(args.batch, torch.Generator().manual_seed(args.seed))
    render_ranking(ds.rank(models, x, seed=args.seed))
    return 0


def _add_design_parsers(sub) -> None:
    """The design tools' subcommands: grow, prune, rank."""
    g = sub.add_parser(
        "grow",
        help="insert identity-initialised (or eps-noise) blocks into a model; show that the output is kept",
        description="Insert N new blocks after a block of a registered model (or module:callable), probe "
        "before and after, and print the largest change of the output.",
    )
    g.add_argument("model", help="registered model name, or module:callable")
    g.add_argument("--blocks", type=_positive, required=True, metavar="N", help="number of new blocks")
    g.add_argument("--after", metavar="STEP", help="the block the new ones follow (default: the last block)")
    g.add_argument("--init", choices=("identity", "noise"), default="identity", help="default identity")
    g.add_argument("--eps", type=float, help=f"branch Jacobian norm of noise blocks (default {GROW_EPS})")
    g.add_argument("--kind", choices=("residual", "plain"), default="residual", help="default residual")
    g.add_argument("--tol", type=float, help="also print the growth bound for gain within 1 +- TOL")
    g.set_defaults(func=cmd_grow, parser=g)

    r = sub.add_parser(
        "prune",
        help="remove the residual blocks whose deletion costs least (lesion-ranked)",
        description="Lesion every residual block of a model, rank them by the measured effect (output change, "
        "or digits accuracy with --train-steps) and remove the least important down to --keep.",
    )
    r.add_argument("model", help="registered model name, or module:callable")
    r.add_argument("--keep", type=float, default=0.75, help="fraction of the residual blocks kept, in (0, 1]")
    r.add_argument(
        "--train-steps",
        type=_positive,
        metavar="N",
        help="first train N steps on digits and rank by test accuracy (a registered model taking in_dim and "
        "out_dim is built for them; others must map 64 features to 10 logits)",
    )
    r.set_defaults(func=cmd_prune, parser=r)
    for p in (g, r):
        _add_model_options(p)

    k = sub.add_parser(
        "rank",
        help="rank untrained registered models by trainability (probe score, NASWOT beside)",
        description="Score untrained candidates by a probe-based trainability score, best first. A candidate is "
        "NAME or NAME,KEY=VALUE,... (e.g. plain_mlp,depth=16); all must take the same input.",
    )
    k.add_argument("candidates", nargs="+", type=_candidate, metavar="NAME", help="registered model names")
    k.add_argument("--set", action="append", type=_key_value, metavar="KEY=VALUE", help="argument for every candidate")
    k.add_argument("--batch", type=_int_at_least(2), default=RANK_BATCH, help=f"examples (default {RANK_BATCH})")
    _add_seed_option(k)
    k.set_defaults(func=cmd_rank, parser=k)
