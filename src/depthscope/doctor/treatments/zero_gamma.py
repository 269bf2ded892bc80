"""Zero-gamma: the last BatchNorm of every residual branch starts with scale 0 (Goyal et al. 2017).

A residual block relu(x + BN(conv(...))) whose branch ends in a BatchNorm with gamma = 0 computes
relu(x + beta): with beta = 0 (BatchNorm's start) and a non-negative input (the previous block ends
in a ReLU) it is the identity, so at initialisation each such block passes the signal on unchanged
and the BatchNorm-scaled branches no longer add up to an explosion. Training moves gamma away from
0. This CHANGES the model's function (``preserves_function`` is False): every treated branch's
output is dropped at initialisation. Blocks whose branch does not end in a BatchNorm
(pre-activation blocks end in a convolution) are left alone.
"""

from __future__ import annotations

import torch
from torch import nn

from depthscope.doctor._finding import BATCHNORM_BRANCHES, EXPLODING
from depthscope.doctor._structure import BlockInfo, body_blocks, branch_norms, residual_blocks, treated_copy
from depthscope.doctor._treatment import Case
from depthscope.doctor.treatments._targeted import ResidualBranchTreatment

# Goyal et al. 2017, Sec. 5.1: "we initialize gamma = 0 for all BN layers that sit at the end of a
# residual block".
GAMMA = 0.0


def _targets(case: Case) -> list[BlockInfo]:
    """Residual blocks whose branch ends in an affine BatchNorm."""
    out = []
    for b in residual_blocks(body_blocks(case)):
        norms = branch_norms(b)
        if b.layout is not None and b.layout.ends_with_norm and norms:
            last = norms[-1]
            if isinstance(last, nn.modules.batchnorm._BatchNorm) and last.weight is not None:
                out.append(b)
    return out


class ZeroGamma(ResidualBranchTreatment):
    """Zero the scale of the last BatchNorm of each residual branch."""

    name = "zero-gamma"
    title = "Zero-gamma: the last BatchNorm of each residual branch starts at scale 0"
    source = (
        "Goyal, Dollar, Girshick, Noordhuis, Wesolowski, Kyrola, Tulloch, Jia & He 2017, Accurate, Large "
        "Minibatch SGD: Training ImageNet in 1 Hour"
    )
    treats = (BATCHNORM_BRANCHES, EXPLODING)
    preserves_function = False
    fits = "residual branches ending in a BatchNorm"
    no_target = (
        "no residual branch is known to end in a BatchNorm (known blocks: the zoo's, torchvision's and timm's ResNets)"
    )

    def targets(self, case: Case) -> list[BlockInfo]:
        return _targets(case)

    def remedy(self, case: Case, targets: list[BlockInfo]) -> str:
        return "their scale gamma = 0 makes each block the identity at initialisation"

    def treat(self, model: nn.Module, case: Case, targets: list[BlockInfo]) -> nn.Module:
        new, copies = treated_copy(model, targets)
        with torch.no_grad():
            for info, (_, block) in zip(targets, copies):
                branch_norms(info, block)[-1].weight.fill_(GAMMA)
        return new

    def constants(self, case: Case) -> dict[str, float]:
        return {"gamma": GAMMA, "branches": float(len(_targets(case)))}
