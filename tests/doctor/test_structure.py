"""What the treatments read of a model's structure: blocks, skips, layouts, activations, paths."""

from __future__ import annotations

import pytest
import torch
from tests.doctor.treatment_cases import case_for, state, tiny_bert, unchanged, zoo
from torch import nn

from depthscope import InputError
from depthscope.doctor import ScaledResidual
from depthscope.doctor._structure import (
    POST_LN,
    PRE_LN,
    activation_name,
    activation_of,
    body_blocks,
    branch_layers,
    branch_norms,
    layout_of,
    measured_skip,
    module_path,
    plain_blocks,
    replace_module,
    residual_blocks,
    treated_copy,
    weight_layers,
)


class _OwnResidual(nn.Module):
    """A user's residual block of a class the doctor has never seen: x + W2 tanh(W1 x)."""

    def __init__(self, width: int):
        super().__init__()
        self.inner = nn.Sequential(nn.Linear(width, width), nn.Tanh(), nn.Linear(width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.inner(x)


def test_plain_mlp_blocks_are_plain_and_shape_preserving() -> None:
    case = case_for(*zoo("plain_mlp", depth=4, width=8, activation="tanh"))
    blocks = body_blocks(case)
    assert [b.name for b in blocks] == [f"blocks.{i}" for i in range(4)]
    assert all(b.skip is False and b.shape_preserving for b in blocks)
    assert plain_blocks(blocks) == blocks and residual_blocks(blocks) == []
    assert activation_name(activation_of(blocks)) == "tanh"
    assert [type(m) for m in weight_layers(blocks[0].module)] == [nn.Linear]


def test_resnet_blocks_have_skips_transitions_and_a_last_batchnorm() -> None:
    case = case_for(*zoo("resnet20", width=0.25, input_size=8))
    blocks = body_blocks(case)
    assert len(blocks) == 9 and all(b.skip for b in blocks)
    assert [b.name for b in blocks if not b.shape_preserving] == ["blocks.3", "blocks.6"]
    b = blocks[0]
    assert b.layout.ends_with_norm
    assert branch_layers(b) == [b.module.conv1, b.module.conv2]
    assert branch_norms(b)[-1] is b.module.bn2


def test_preact_branch_does_not_end_in_a_norm() -> None:
    blocks = body_blocks(case_for(*zoo("preact_resnet20", width=0.25, input_size=8)))
    assert all(b.skip and not b.layout.ends_with_norm for b in blocks)


def test_layernorm_placement_of_zoo_and_hugging_face_blocks() -> None:
    post = body_blocks(
        case_for(*zoo("transformer_postln", depth=2, d_model=16, n_heads=2, d_ff=32, seq_len=8, vocab=11))
    )
    pre = body_blocks(case_for(*zoo("transformer_preln", depth=2, d_model=16, n_heads=2, d_ff=32, seq_len=8, vocab=11)))
    bert = body_blocks(case_for(*tiny_bert(2)))
    assert {b.placement for b in post} == {POST_LN}
    assert {b.placement for b in pre} == {PRE_LN}
    assert [b.placement for b in bert] == [POST_LN, POST_LN] and all(b.skip for b in bert)


def test_torchvision_blocks_are_known_without_importing_the_library_here() -> None:
    from torchvision.models.resnet import BasicBlock, Bottleneck

    assert layout_of(BasicBlock(4, 4)).branch == ("conv1", "conv2")
    assert layout_of(Bottleneck(16, 4)).norms == ("bn1", "bn2", "bn3")


def test_skip_is_measured_for_unknown_classes() -> None:
    torch.manual_seed(0)
    assert measured_skip(_OwnResidual(6), (6,)) is True
    assert measured_skip(nn.Sequential(nn.Linear(6, 6), nn.Tanh()), (6,)) is False
    assert measured_skip(ScaledResidual(nn.Linear(6, 6), 0.5, learnable=False), (6,)) is True
    assert measured_skip(nn.Linear(6, 3), (6,)) is False  # changes the shape
    assert measured_skip(nn.Linear(6, 6), (5,)) is None  # cannot run at that shape

    model = nn.Sequential(nn.Linear(6, 8), *[_OwnResidual(8) for _ in range(3)], nn.Linear(8, 2))
    blocks = body_blocks(case_for(model, torch.randn(2, 6)))
    assert [b.skip for b in blocks] == [True, True, True] and all(b.layout is None for b in blocks)


def test_activation_is_none_when_mixed_or_absent() -> None:
    mixed = nn.Sequential(
        nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4)
    )
    assert activation_of(body_blocks(case_for(mixed, torch.randn(2, 4)))) is None
    linear = nn.Sequential(*[nn.Linear(4, 4) for _ in range(4)])
    assert activation_of(body_blocks(case_for(linear, torch.randn(2, 4)))) is None
    slope = body_blocks(case_for(*zoo("plain_mlp", depth=3, width=4, activation="linear", slope=1.5)))
    assert activation_name(activation_of(slope)) == "linear (slope 1.5)"


def test_paths_copies_and_replacement_leave_the_original_alone() -> None:
    model, x = zoo("plain_mlp", depth=3, width=4)
    blocks = body_blocks(case_for(model, x))
    assert module_path(model, blocks[1].module) == "blocks.1"
    saved = state(model)
    new, copies = treated_copy(model, blocks)
    assert [p for p, _ in copies] == ["blocks.0", "blocks.1", "blocks.2"]
    assert all(m is not b.module for (_, m), b in zip(copies, blocks))
    replace_module(new, "blocks.1", nn.Identity())
    assert isinstance(new.blocks[1], nn.Identity) and not isinstance(model.blocks[1], nn.Identity)
    assert unchanged(model, saved)
    with pytest.raises(InputError, match="not a submodule"):
        module_path(model, nn.Linear(2, 2))
    with pytest.raises(InputError, match="whole"):
        replace_module(new, "", nn.Identity())


def test_a_block_without_weight_layers_is_not_called_residual():
    from torch import nn

    from depthscope.doctor import measured_skip

    assert measured_skip(nn.ReLU(), (8,)) is False  # it returns its non-negative probe input unchanged
