"""``depthscope grow``, ``prune`` and ``rank``: the design tools."""

from __future__ import annotations

import argparse

import torch

from depthscope.cli._common import PROBE_BATCH, _build_source, _int_at_least, _key_value, _positive, _probe_seed

# depthscope grow: the branch norm of noise blocks when --eps is not given.
GROW_EPS = 0.01
# depthscope prune --train-steps: the Adam step the ledger trains its digits MLPs with.
PRUNE_LR = 2e-3
# depthscope rank: NASWOT compares the examples of one batch; Mellor et al. 2021 used 128.
RANK_BATCH = 32


def _design_source(args: argparse.Namespace):
    """The model and input of ``depthscope grow`` and ``prune`` (a registered name or module:callable)."""
    import depthscope as ds
    from depthscope import sources

    try:
        return _build_source(args)
    except (sources.MissingLibraryError, ds.UnknownModelError, ds.InputError) as err:
        if ":" not in args.model and isinstance(err, ds.UnknownModelError):
            raise
        args.parser.error(str(err))


def cmd_grow(args: argparse.Namespace) -> int:
    import depthscope as ds
    from depthscope.render import render_growth, render_plan

    built = _design_source(args)
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

    built = _design_source(args)
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

    models = {}
    for label, name, kw in args.candidates:
        torch.manual_seed(args.seed)
        try:
            models[label] = ds.create_model(name, **{**dict(args.set or []), **kw}).eval()
        except ds.DepthscopeError:
            raise
        except (TypeError, ValueError) as err:
            raise ds.DepthscopeError(f"cannot build candidate {label}: {err}") from err
    first = next(iter(models.values()))
    x = first.example_input(args.batch, torch.Generator().manual_seed(args.seed))
    render_ranking(ds.rank(models, x, seed=args.seed))
    return 0


def _add_design_parsers(sub) -> None:
    """The design tools' subcommands: grow, prune, rank."""
    common = dict(hf=None, torchvision=None, timm=None, input_file=None, seq=None, blocks=None)
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
    g.set_defaults(func=cmd_grow, parser=g, **common)

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
        help="first train N steps on digits and rank by test accuracy (the model must take 64 features)",
    )
    r.set_defaults(func=cmd_prune, parser=r, **common)
    for p in (g, r):
        p.add_argument("--depth", type=_positive, help="number of blocks")
        p.add_argument("--width", type=_positive, help="width of the blocks")
        p.add_argument("--set", action="append", type=_key_value, metavar="KEY=VALUE", help="model argument")
        p.add_argument("--batch", type=_positive, help=f"examples (default {PROBE_BATCH})")
        p.add_argument("--input", metavar="SHAPE", help="input shape for module:callable, batch first")
        p.add_argument("--seed", type=_probe_seed, default=0, help="0 to 2**64 - 1 (default 0)")

    k = sub.add_parser(
        "rank",
        help="rank untrained registered models by trainability (probe score, NASWOT beside)",
        description="Score untrained candidates by a probe-based trainability score, best first. A candidate is "
        "NAME or NAME,KEY=VALUE,... (e.g. plain_mlp,depth=16); all must take the same input.",
    )
    k.add_argument("candidates", nargs="+", type=_candidate, metavar="NAME", help="registered model names")
    k.add_argument("--set", action="append", type=_key_value, metavar="KEY=VALUE", help="argument for every candidate")
    k.add_argument("--batch", type=_int_at_least(2), default=RANK_BATCH, help=f"examples (default {RANK_BATCH})")
    k.add_argument("--seed", type=_probe_seed, default=0, help="0 to 2**64 - 1 (default 0)")
    k.set_defaults(func=cmd_rank, parser=k)
