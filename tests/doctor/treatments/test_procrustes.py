"""Procrustes transitions: shape-changing weights become scaled isometries; only transitions are touched."""

from __future__ import annotations

import math

import torch
from tests.doctor.treatment_cases import case_for, zoo
from torch import nn

from depthscope.doctor import get_treatment
from depthscope.doctor.treatments.procrustes import procrustes_linear_, projectable
from depthscope.zoo import conv_operator_singular_values

PROCRUSTES = get_treatment("procrustes")


def test_linear_projection_has_equal_singular_values_sqrt_out_over_in() -> None:
    torch.manual_seed(0)
    layer = procrustes_linear_(nn.Linear(6, 9))
    sv = torch.linalg.svdvals(layer.weight.detach().double())
    torch.testing.assert_close(sv, torch.full((6,), math.sqrt(9 / 6), dtype=torch.float64), rtol=1e-6, atol=0)


def test_projectable_layers_change_width_or_subsample() -> None:
    assert projectable(nn.Linear(4, 8)) and not projectable(nn.Linear(4, 4))
    assert projectable(nn.Conv2d(4, 4, 3, stride=2)) and not projectable(nn.Conv2d(4, 4, 3))
    assert not projectable(nn.Conv2d(4, 8, 3, groups=4))


def test_only_the_transitions_of_a_procresnet_are_projected() -> None:
    model, x = zoo("procresnet", n=1, width=0.25, input_size=8, procrustes=False)
    case = case_for(model, x, ("ill-conditioned",), ("blocks.1",))
    treated = PROCRUSTES.apply(model, case)
    for old, new in zip(model.blocks, treated.blocks):
        if hasattr(old, "conv") and old.conv.in_channels != old.conv.out_channels:  # a Transition
            w = new.conv.weight.detach().double()
            sv = conv_operator_singular_values(w, 1)
            target = math.sqrt(w.shape[0] / w.shape[1])
            torch.testing.assert_close(sv, torch.full_like(sv, target), rtol=1e-5, atol=0)
        else:
            assert all(torch.equal(a, b) for a, b in zip(old.state_dict().values(), new.state_dict().values()))
    assert PROCRUSTES.constants(case) == {"transitions": 2.0, "layers": 2.0}


def test_applies_only_to_findings_at_transitions() -> None:
    model, x = zoo("procresnet", n=1, width=0.25, input_size=8, procrustes=False)
    assert PROCRUSTES.applies(case_for(model, x, ("ill-conditioned",), ("blocks.0",))) is None  # an identity block
    assert "blocks.3" in PROCRUSTES.applies(case_for(model, x, ("bottleneck",), ("blocks.3",)))
    assert "no shape-changing block" in PROCRUSTES.blocked(case_for(*zoo("plain_mlp", depth=3, width=8)))
