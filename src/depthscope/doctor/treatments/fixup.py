"""Fixup: residual branches without normalisation, the last layer zero and the others shrunk.

Zhang, Dauphin & Ma 2019 (Sec. 3, rules 1-2): for a network of L residual branches of m weight
layers each, initialise the last layer of every branch to 0 and scale the other layers of the
branch (from their standard init) by L^(-1/(2m-2)). Each block is then the identity at
initialisation (x + 0, or relu(x + 0) on a non-negative input), whatever the depth, and the
branches' first updates are of size O(1/L) together. Here:

- every residual block with a known branch layout (`depthscope.doctor._structure.LAYOUTS`) is
  treated; L counts them and m is each branch's number of weight layers;
- the branch's normalisation layers are replaced by the identity (Fixup trains without them); the
  norms of the stem and of projection shortcuts are kept;
- Fixup's scalar biases (start 0) and multiplier (start 1) are not added: they do not change the
  network at initialisation, which is what the doctor measures; nor is the classifier zeroed
  (it would make the end-to-end Jacobian trivially zero).

The function changes (``preserves_function`` is False).
"""

from __future__ import annotations

import torch
from torch import nn

from depthscope._errors import InputError
from depthscope.doctor._finding import BATCHNORM_BRANCHES, EXPLODING, VANISHING
from depthscope.doctor._structure import BlockInfo, body_blocks, branch_layers, residual_blocks, treated_copy
from depthscope.doctor._treatment import Case
from depthscope.doctor.treatments._targeted import ResidualBranchTreatment

# Fixup needs a branch of at least two layers: one zeroed, at least one rescaled (for m = 1 the
# exponent -1/(2m-2) is undefined).
MIN_BRANCH_LAYERS = 2


def fixup_scale(n_branches: int, m: int) -> float:
    """L^(-1/(2m-2)): Fixup's factor on the non-final layers of a branch of m layers among L."""
    if m < MIN_BRANCH_LAYERS or n_branches < 1:
        raise InputError(f"Fixup needs L >= 1 branches of m >= {MIN_BRANCH_LAYERS} layers, got L={n_branches}, m={m}")
    return float(n_branches) ** (-1.0 / (2 * m - 2))


def _targets(case: Case) -> list[BlockInfo]:
    """Residual blocks whose branch layout lists at least two weight layers."""
    return [
        b
        for b in residual_blocks(body_blocks(case))
        if b.layout is not None and len(b.layout.branch) >= MIN_BRANCH_LAYERS
    ]


class Fixup(ResidualBranchTreatment):
    """Zero each branch's last layer, shrink its other layers by L^(-1/(2m-2)), drop its norms."""

    name = "fixup"
    title = "Fixup: zero last branch layer, L^(-1/(2m-2)) on the others, no normalisation"
    source = "Zhang, Dauphin & Ma 2019, Fixup Initialization: Residual Learning Without Normalization (ICLR)"
    treats = (BATCHNORM_BRANCHES, EXPLODING, VANISHING)
    preserves_function = False
    fits = "residual branches of known layout"
    no_target = "no residual branch of at least two weight layers has a known layout"

    def targets(self, case: Case) -> list[BlockInfo]:
        return _targets(case)

    def remedy(self, case: Case, targets: list[BlockInfo]) -> str:
        return "Fixup makes each the identity at initialisation without normalisation"

    def treat(self, model: nn.Module, case: Case, targets: list[BlockInfo]) -> nn.Module:
        new, copies = treated_copy(model, targets)
        with torch.no_grad():
            for info, (_, block) in zip(targets, copies):
                layers = branch_layers(info, block)
                scale = fixup_scale(len(targets), len(layers))
                for layer in layers[:-1]:
                    layer.weight.mul_(scale)
                layers[-1].weight.zero_()
                if layers[-1].bias is not None:
                    layers[-1].bias.zero_()
                for path in info.layout.norms:
                    block.set_submodule(path, nn.Identity())
        return new

    def constants(self, case: Case) -> dict[str, float]:
        targets = _targets(case)
        out: dict[str, float] = {"L": float(len(targets))}
        for m in sorted({len(b.layout.branch) for b in targets}):
            out[f"scale_m{m}"] = fixup_scale(len(targets), m)
        return out
