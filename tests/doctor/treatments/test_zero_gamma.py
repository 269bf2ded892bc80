"""Zero-gamma: the last BatchNorm of each residual branch at scale 0 makes the block the identity."""

from __future__ import annotations

import torch
from tests.doctor.treatment_cases import case_for, zoo

from depthscope.doctor import get_treatment

ZERO_GAMMA = get_treatment("zero-gamma")


def test_zeroes_only_the_last_branch_norm_and_the_blocks_become_identities() -> None:
    model, x = zoo("resnet20", width=0.25, input_size=8)
    case = case_for(model, x, ("exploding",))
    treated = ZERO_GAMMA.apply(model, case)
    for block in treated.blocks:
        assert torch.count_nonzero(block.bn2.weight) == 0
        assert torch.count_nonzero(block.bn1.weight) == block.bn1.weight.numel()
    assert ZERO_GAMMA.constants(case) == {"gamma": 0.0, "branches": 9.0}
    # A shape-preserving block on a non-negative input (the stem ends in a ReLU) returns its input.
    with torch.no_grad():
        h = treated.stem(x)
        assert torch.equal(treated.blocks[0](h), h)
    assert not ZERO_GAMMA.preserves_function


def test_blocked_for_preactivation_and_plain_nets() -> None:
    preact = case_for(*zoo("preact_resnet20", width=0.25, input_size=8), ("exploding",))
    assert "BatchNorm" in ZERO_GAMMA.blocked(preact) and ZERO_GAMMA.applies(preact) is None
    plain = case_for(*zoo("plain_mlp", depth=3, width=8), ("exploding",))
    assert ZERO_GAMMA.blocked(plain) == "the model has no residual blocks"
