"""Pruning by lesion: remove the residual blocks whose removal costs least, measured (Veit et al. 2016).

Veit et al.'s lesion study: deleting one block of a trained residual network barely changes its
accuracy, because x + F(x) without F is still x and the other blocks still see a state they know;
deleting a layer of a plain network breaks it (claim J6). `prune` turns that into a tool:

1. lesion each candidate block alone (a copy of the model without it) and measure the effect:
   with labels, the validation accuracy lost (ties broken by the cross-entropy gained); without
   labels, the relative change of the output at ``x``, ||f'(x) - f(x)|| / ||f(x)||;
2. rank the blocks by that effect, least important first;
3. remove the least important ones, all at once, down to ``keep`` of the candidates (a one-shot
   ranking: the effects of single deletions are not re-measured after each removal);
4. measure the pruned model, and the effective depth (`depthscope.design.paths`) before and after.

Candidates are the residual blocks by default (a shape-preserving block with a skip connection,
told apart by the doctor's block table or measured); ``blocks=`` names any shape-preserving blocks
instead (plain layers too: removing one lets its input through unchanged), which is how a plain
net's layers are compared with a residual net's blocks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from depthscope._errors import InputError, NoBlocksError, check_seed
from depthscope.design._paths import PathProfile, profile
from depthscope.design._sites import Layout, Site, edited_copy, layout, model_input

# Examples of x whose gradient paths are split for the effective depth (the decomposition costs
# one vector-Jacobian product per block and path length; a few dozen examples give its mean).
PATH_EXAMPLES = 64


@dataclass(frozen=True)
class Lesion:
    """One block deleted alone: ``effect`` is the accuracy lost (labels) or the relative output change."""

    name: str
    effect: float
    accuracy: float | None
    loss: float | None


@dataclass(frozen=True)
class PruneInfo:
    """What `prune` measured and did.

    Attributes:
        metric: "accuracy" (labels given) or "output change".
        ranking: every candidate's `Lesion`, least important first.
        removed, kept: block names.
        accuracy_before, accuracy_after: validation accuracy (None without labels).
        output_change: ||f_pruned(x) - f(x)|| / ||f(x)|| at the evaluation input.
        effective_depth_before, effective_depth_after: gradient-weighted mean path length over the
            residual blocks (`PathProfile.effective_depth`), None where the model has no residual block.
        paths_before, paths_after: the full `PathProfile`s (None likewise).
    """

    metric: str
    ranking: list[Lesion]
    removed: list[str]
    kept: list[str]
    accuracy_before: float | None
    accuracy_after: float | None
    output_change: float
    effective_depth_before: float | None
    effective_depth_after: float | None
    paths_before: PathProfile | None
    paths_after: PathProfile | None


@torch.no_grad()
def _scores(
    model: nn.Module, X: torch.Tensor, y: torch.Tensor | None
) -> tuple[torch.Tensor, float | None, float | None]:
    """(outputs, accuracy, mean cross-entropy) of an eval-mode model on X."""
    out = model.eval()(X)
    if y is None:
        return out, None, None
    acc = float((out.argmax(1) == y).float().mean())
    return out, acc, float(nn.functional.cross_entropy(out, y))


def _relative_change(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm()) if b.norm() > 0 else float((a - b).norm())


def _candidates(lay: Layout, blocks: Sequence[str] | None) -> list[Site]:
    if blocks is None:
        found = [s for s in lay.sites if s.residual]
        if not found:
            listed = ", ".join(f"{s.name} (skip={s.skip})" for s in lay.sites) or "none"
            raise NoBlocksError(
                f"nothing to prune: no residual (skip-connected, shape-preserving) block among {listed}. Removing a "
                "layer of a plain network breaks it; name blocks explicitly with blocks=[...] to lesion them anyway"
            )
        return found
    sites = [lay.find(b) for b in blocks]
    changing = [s.name for s in sites if not s.shape_preserving]
    if changing:
        raise InputError(f"cannot remove blocks that change the shape of their input: {', '.join(changing)}")
    return sites


def _paths_or_none(lay: Layout, x: torch.Tensor, y: torch.Tensor | None, seed: int) -> PathProfile | None:
    if not any(s.residual for s in lay.sites):
        return None
    return profile(lay, x, y, seed)


def prune(
    model: nn.Module,
    x: torch.Tensor | None = None,
    data: tuple[torch.Tensor, torch.Tensor] | None = None,
    keep: float = 0.75,
    *,
    blocks: Sequence[str] | None = None,
    seed: int = 0,
) -> tuple[nn.Module, PruneInfo]:
    """Remove the least important blocks of ``model`` down to ``keep`` of them, by measured lesion.

    Args:
        model: any module the chain discovery accepts, blocks in an ``nn.Sequential`` or
            ``nn.ModuleList`` (others become ``nn.Identity``); measured in eval mode.
        x: input batch (B, *S_0) to find the blocks at, and to evaluate on without ``data``; None
            for zoo models.
        data: ``(X_val, y_val)``, validation inputs and integer labels: the effect of a lesion is
            the accuracy lost. None: the relative output change at ``x``.
        keep: the fraction of the candidate blocks kept, in (0, 1]; ceil(keep * n) are kept.
        blocks: the candidate blocks by name; None: every residual block.
        seed: seeds the random projection of the path profile when there are no labels.

    Returns:
        (the pruned model, a `PruneInfo`). The original model is untouched.

    Raises:
        NoBlocksError: no residual block and no ``blocks`` given.
        InputError: ``keep`` outside (0, 1], unknown block names, blocks that change shape.
    """
    seed = check_seed(seed)
    if not (isinstance(keep, int | float) and 0 < keep <= 1):
        raise InputError(f"keep must lie in (0, 1], got {keep!r}")
    x = model_input(model, x, seed)
    X, y = data if data is not None else (x, None)
    if y is not None and (y.ndim != 1 or y.shape[0] != X.shape[0]):
        raise InputError(f"data must be (X_val, y_val) with labels of shape ({X.shape[0]},), got {tuple(y.shape)}")
    lay = layout(model, x)
    cands = _candidates(lay, blocks)
    base_out, base_acc, base_loss = _scores(edited_copy(model), X, y)
    lesions = []
    for site in cands:
        out, acc, loss = _scores(edited_copy(model, remove=[site.path]), X, y)
        if y is None:
            lesions.append(Lesion(site.name, _relative_change(out, base_out), None, None))
        else:
            lesions.append(Lesion(site.name, base_acc - acc, acc, loss))
    # least important first: smallest accuracy loss, then smallest loss (or output change)
    ranking = sorted(lesions, key=lambda r: (r.effect, r.loss if r.loss is not None else 0.0))
    n_keep = math.ceil(keep * len(cands) - 1e-9)
    removed = [r.name for r in ranking[: len(cands) - n_keep]]
    paths_of = {s.name: s.path for s in cands}
    pruned = edited_copy(model, remove=[paths_of[n] for n in removed])
    pruned.train(model.training)
    out, acc, _ = _scores(edited_copy(pruned), X, y)
    xp = X[:PATH_EXAMPLES] if data is not None else x
    yp = y[:PATH_EXAMPLES] if y is not None else None
    lay_before = lay if xp is x else layout(model, xp)  # without data the blocks were found at xp already
    before, after = _paths_or_none(lay_before, xp, yp, seed), _paths_or_none(layout(pruned, xp), xp, yp, seed)
    info = PruneInfo(
        metric="accuracy" if y is not None else "output change",
        ranking=ranking,
        removed=removed,
        kept=[s.name for s in cands if s.name not in removed],
        accuracy_before=base_acc,
        accuracy_after=acc,
        output_change=_relative_change(out, base_out),
        effective_depth_before=before.effective_depth if before else None,
        effective_depth_after=after.effective_depth if after else None,
        paths_before=before,
        paths_after=after,
    )
    return pruned, info
