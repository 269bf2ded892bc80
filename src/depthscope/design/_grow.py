"""Growing a network: new blocks inserted after a block of its chain (Net2Net's DeeperNet, Chen et al. 2016).

Two kinds of insertion (``kind``):

- ``"residual"`` (the default). ``init="identity"``: where the block at ``after`` is itself
  residual and the doctor's block table knows its branch (`depthscope.doctor.layout_of`: the zoo's
  blocks, torchvision's and timm's ResNet blocks), each new block is a copy of it with the end of
  its branch zeroed (the last BatchNorm's scale and shift where the branch ends in one, zero-gamma
  as in Goyal et al. 2017; else the last layer's weight and bias, as in Fixup): x + F(x) with
  F = 0. The copy is kept only if it returns the states it will receive exactly (a block that
  adds a bias after its last layer, or relu(x + F) on negative states, is not the identity);
  otherwise, and for every other block, the copy is wrapped by the doctor's
  `depthscope.doctor.ScaledResidual`, x -> x + alpha B(x), with alpha = 0 (ReZero / SkipInit).
  Either way the new block is exactly the identity, its Jacobian exactly I, so the grown model
  computes the same function, for any block and any activation (claim J2).
  ``init="noise"`` wraps copies in the same way: it re-draws the copy's parameters and sets alpha = eps / ||J_B||_2, with
  ||J_B||_2 measured by the probe at the states the new block sees: the new block's branch
  Jacobian norm is eps (batch mean), a near-identity warm start that is not exactly the identity.
  Where the block at ``after`` is itself residual, B(x) = x + F(x) and the wrapper adds
  alpha (x + F(x)): its Jacobian is I + alpha (I + J_F), mostly a scaling of the state, with
  ||J - I||_2 = eps all the same.
- ``"plain"``: DeeperNet's identity layer without a skip: a copy of a plain block (no skip
  connection) with every Linear set to I, every convolution to the identity kernel (Dirac), every
  BatchNorm to the identity and every bias to 0, so the block computes its activations on its own
  input: phi(x). That is the identity exactly when phi is idempotent on the values it receives,
  phi(phi(v)) = phi(v): ReLU (relu(relu(v)) = relu(v), and the block before ends in the same
  ReLU), hard-tanh, the identity. It is NOT the identity for tanh (tanh(tanh(v)) < tanh(v) for
  v > 0), sigmoid, GELU, SiLU: then `grow` warns with the measured change of the output.

The original model is never modified; the new blocks live in a deep copy.
"""

from __future__ import annotations

import copy
import math
import warnings

import torch
from torch import nn

from depthscope._errors import InputError, check_count, check_seed
from depthscope.chain import Chain
from depthscope.design._sites import Layout, Site, edited_copy, layout, model_input
from depthscope.doctor import ScaledResidual, layout_of
from depthscope.probing import probe

INITS = ("identity", "noise")
KINDS = ("residual", "plain")
# A plain insertion is called exact when no output entry moves by more than this (float32 rounding
# of phi(phi(v)) against phi(v) is 0 for idempotent phi; anything above is a real change).
EXACT_ATOL = 1e-6
# Points where an activation is tested for idempotence: phi(phi(v)) = phi(v) on its image.
IDEMPOTENCE_GRID = torch.linspace(-6.0, 6.0, 241)
# Layers a plain insertion knows how to set to the identity; any other layer with parameters stops it.
IDENTITY_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.modules.batchnorm._BatchNorm)


class DesignWarning(UserWarning):
    """A design tool did what was asked, with a caveat the user must see (an inexact identity)."""


def residual_wrap(block: nn.Module, alpha: float) -> nn.Module:
    """x -> x + alpha * block(x) with a learnable alpha: the doctor's residual wrapper (one place)."""
    return ScaledResidual(block, alpha, learnable=True)


def _redrawn(block: nn.Module, seed: int) -> nn.Module:
    """A copy of ``block`` whose layers have re-drawn their parameters (their own ``reset_parameters``)."""
    new = copy.deepcopy(block)
    with torch.random.fork_rng(devices=[]):  # seeded without disturbing the caller's random stream
        torch.manual_seed(seed)
        for m in new.modules():
            reset = getattr(m, "reset_parameters", None)
            if callable(reset) and m is not new:
                reset()
    return new


def branch_norm(block: nn.Module, h: torch.Tensor, seed: int = 0) -> float:
    """||J_B||_2 of ``block`` at the states h (B, *S), by the probe (batch mean of the per-example norm)."""
    report = probe(Chain([("branch", block)]), h, lyapunov=0, sigma_min=False, seed=seed)
    return float(report.blocks[0].local_sigma_max)


@torch.no_grad()
def _identity_layers(block: nn.Module) -> nn.Module:
    """A copy of a plain block with every weight layer and BatchNorm set to the identity map.

    Raises:
        InputError: a layer that cannot be the identity (a non-square Linear, a strided or
            channel-changing convolution, a LayerNorm or any other layer with parameters).
    """
    new = copy.deepcopy(block)
    for name, m in new.named_modules():
        if isinstance(m, nn.Linear):
            if m.in_features != m.out_features:
                raise InputError(f"plain insertion: {name} maps {m.in_features} -> {m.out_features} features")
            m.weight.copy_(torch.eye(m.in_features))
        elif isinstance(m, nn.Conv1d | nn.Conv2d | nn.Conv3d):
            if m.in_channels != m.out_channels or m.groups != 1 or any(s != 1 for s in m.stride):
                raise InputError(f"plain insertion: convolution {name} is not shape-preserving")
            nn.init.dirac_(m.weight)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            # eval-mode BatchNorm computes (x - mean) / sqrt(var + eps) * w + b: identity at var = 1 - eps.
            m.running_mean.zero_()
            m.running_var.fill_(1.0 - m.eps)
            if m.affine:
                m.weight.fill_(1.0)
        elif any(True for _ in m.parameters(recurse=False)):
            raise InputError(
                f"plain insertion: {name or 'the block'} ({type(m).__name__}) cannot be set to the identity"
            )
        if isinstance(m, IDENTITY_LAYERS) and getattr(m, "bias", None) is not None:
            m.bias.zero_()
    return new


@torch.no_grad()
def non_idempotent(block: nn.Module) -> list[str]:
    """Names of the activations of ``block`` (parameter-free leaf modules other than weight layers) for
    which phi(phi(v)) != phi(v) somewhere on ``IDEMPOTENCE_GRID``: the ones that make a plain identity
    insertion inexact."""
    out = []
    for m in block.modules():
        if next(m.children(), None) is not None or isinstance(m, IDENTITY_LAYERS) or type(m) is nn.Identity:
            continue
        if any(True for _ in m.parameters()):
            continue
        try:
            once = m(IDEMPOTENCE_GRID.clone())
            twice = m(once.clone())
        except (RuntimeError, TypeError, ValueError):
            continue
        if not torch.equal(once, twice) and type(m).__name__ not in out:
            out.append(type(m).__name__)
    return out


@torch.no_grad()
def _zeroed_branch(site: Site, h: torch.Tensor) -> nn.Module | None:
    """A copy of a residual block with the end of its branch zeroed, if the doctor's table knows its
    branch and the copy returns the states h (B, *S) exactly; else None."""
    layout = layout_of(site.module)
    if not site.residual or layout is None or not (layout.branch or layout.ends_with_norm):
        return None
    new = copy.deepcopy(site.module).eval()
    last = new.get_submodule(layout.norms[-1] if layout.ends_with_norm else layout.branch[-1])
    for name in ("weight", "bias"):
        param = getattr(last, name, None)
        if isinstance(param, torch.Tensor):
            param.zero_()
    return new if torch.equal(new(h), h) else None


def new_blocks(
    site: Site, h: torch.Tensor, n: int, init: str, eps: float | None, kind: str, seed: int
) -> list[nn.Module]:
    """``n`` new blocks to follow ``site``, whose output states are h (B, *S); see the module docstring.
    Noise blocks are scaled one after the other, each at the states the blocks before it produce."""
    if kind == "plain":
        if site.skip:
            raise InputError(
                f"plain insertion copies a block without a skip connection; {site.name!r} has one (use kind='residual')"
            )
        if init != "identity":
            raise InputError("plain insertion takes init='identity' (DeeperNet); init='noise' is for residual blocks")
        template = _identity_layers(site.module)
        return [copy.deepcopy(template) for _ in range(n)]
    if init == "identity":
        template = _zeroed_branch(site, h)
        if template is None:
            template = residual_wrap(site.module, 0.0)
        return [copy.deepcopy(template) for _ in range(n)]
    blocks = []
    for i in range(n):
        branch = _redrawn(site.module, seed + i)
        norm = branch_norm(branch, h, seed)
        if not (norm > 0 and math.isfinite(norm)):
            raise InputError(
                f"the re-drawn copy of {site.name!r} has branch Jacobian norm {norm}; cannot scale it to eps"
            )
        blocks.append(residual_wrap(branch, eps / norm))
        with torch.no_grad():  # the next block is scaled at the states it will see
            h = blocks[-1].eval()(h)
    return blocks


def grow(
    model: nn.Module,
    n: int,
    after: str | None = None,
    *,
    init: str = "identity",
    eps: float | None = None,
    kind: str = "residual",
    x: torch.Tensor | None = None,
    seed: int = 0,
) -> nn.Module:
    """A copy of ``model`` with ``n`` new blocks inserted right after the block ``after``.

    Args:
        model: any module whose blocks the chain discovery finds, held in an ``nn.Sequential`` or
            ``nn.ModuleList``.
        n: number of new blocks (>= 1).
        after: a block's step name or module path (``"blocks.11"``); None: the last block.
        init: ``"identity"`` (exactly function-preserving for residual insertions) or ``"noise"``
            (branch Jacobian norm ``eps``; residual insertions only).
        eps: the new blocks' ||J_F||_2 for ``init="noise"`` (> 0).
        kind: ``"residual"`` or ``"plain"`` (see the module docstring).
        x: input batch (B, *S_0) to find the blocks at; None for zoo models (their own example input).
        seed: seeds re-drawn parameters and the probe.

    Returns:
        the grown model (a new module; the original is untouched), in the mode of the original.

    Raises:
        InputError: ``after`` names no block (the message lists them), the block changes the shape
            of its input (a new copy could not follow it), bad ``n``, ``init``, ``kind`` or ``eps``.
        ChainError: the block's container cannot be rebuilt.

    Warns:
        DesignWarning: a plain insertion that is not the identity (its activation is not idempotent),
            with the measured output change at ``x``.
    """
    n = check_count("n", n, 1)
    seed = check_seed(seed)
    if init not in INITS:
        raise InputError(f"init must be one of {INITS}, got {init!r}")
    if kind not in KINDS:
        raise InputError(f"kind must be one of {KINDS}, got {kind!r}")
    if init == "noise" and (eps is None or not (eps > 0 and math.isfinite(eps))):
        raise InputError(f"init='noise' needs eps > 0 (the new branches' Jacobian norm), got {eps!r}")
    x = model_input(model, x, seed)
    lay, site = insertion_layout(model, x, after)
    h = lay.states[site.index + 1]
    new = new_blocks(site, h, n, init, eps, kind, seed)
    grown = edited_copy(model, after={site.path: new})
    grown.train(model.training)
    if kind == "plain":
        _warn_if_inexact(model, grown, x, site)
    return grown


def _warn_if_inexact(model: nn.Module, grown: nn.Module, x: torch.Tensor, site: Site) -> None:
    with torch.no_grad():  # eval-mode copies: a train-mode BatchNorm would update the original's statistics
        change = float((copy.deepcopy(grown).eval()(x) - copy.deepcopy(model).eval()(x)).abs().max())
    if change > EXACT_ATOL:
        acts = non_idempotent(site.module)
        why = (
            f"{', '.join(acts)} is not idempotent (phi(phi(v)) != phi(v))"
            if acts
            else "the block is not idempotent on its inputs"
        )
        warnings.warn(
            f"plain identity insertion after {site.name!r} is not function-preserving: {why}; the output moved by up "
            f"to {change:.3g} at the input given. Use kind='residual' for an exact identity.",
            DesignWarning,
            stacklevel=3,
        )


def insertion_layout(model: nn.Module, x: torch.Tensor, after: str | None) -> tuple[Layout, Site]:
    """The layout of ``model`` at ``x`` and the block ``after`` (the last when None), which new blocks
    can follow.

    Raises:
        InputError: no blocks, no block ``after``, or one that changes the shape of its input.
    """
    lay = layout(model, x)
    if not lay.sites:
        raise InputError(f"no blocks found in the {type(model).__name__} between its stem and head")
    site = lay.sites[-1] if after is None else lay.find(after)
    if not site.shape_preserving:
        raise InputError(
            f"cannot grow after {site.name!r}: it maps {site.in_shape} -> {site.out_shape}, and a new copy of it "
            "would receive a state of another shape; grow after a block that keeps its shape"
        )
    return lay, site
