"""Fixup: L^(-1/(2m-2)) on the non-final branch layers, the last one zero, no branch norms."""

from __future__ import annotations

import math

import pytest
import torch
from tests.doctor.treatment_cases import case_for, zoo
from torch import nn

from depthscope.doctor import get_treatment
from depthscope.doctor.treatments.fixup import fixup_scale

FIXUP = get_treatment("fixup")


def test_fixup_scale_is_l_to_the_minus_one_over_2m_minus_2() -> None:
    assert math.isclose(fixup_scale(16, 2), 16**-0.5)  # two layers per branch: L^(-1/2)
    assert math.isclose(fixup_scale(16, 3), 16**-0.25)  # bottlenecks: L^(-1/4)
    assert math.isclose(fixup_scale(27, 2), 1 / math.sqrt(27))
    with pytest.raises(ValueError, match="m >= 2"):
        fixup_scale(16, 1)


def test_conv_branches_are_scaled_zeroed_and_lose_their_norms() -> None:
    model, x = zoo("resnet20", width=0.25, input_size=8)
    case = case_for(model, x, ("exploding",))
    treated = FIXUP.apply(model, case)
    scale = 9**-0.5
    for old, new in zip(model.blocks, treated.blocks):
        torch.testing.assert_close(new.conv1.weight, old.conv1.weight * scale, rtol=0, atol=0)
        assert torch.count_nonzero(new.conv2.weight) == 0
        assert isinstance(new.bn1, nn.Identity) and isinstance(new.bn2, nn.Identity)
    assert FIXUP.constants(case) == {"L": 9.0, "scale_m2": pytest.approx(scale)}


def test_mlp_branches_are_treated_and_plain_nets_blocked() -> None:
    model, x = zoo("resnet_mlp", depth=4, width=8)
    treated = FIXUP.apply(model, case_for(model, x, ("vanishing",)))
    assert all(torch.count_nonzero(b.fc2.weight) == 0 for b in treated.blocks)
    assert (
        FIXUP.blocked(case_for(*zoo("plain_mlp", depth=3, width=8), ("vanishing",)))
        == "the model has no residual blocks"
    )
