"""CIFAR ResNets (He et al. 2015/2016): parameter counts, shortcut shapes, chain layout."""

from __future__ import annotations

import math

import pytest
import torch

import depthscope
from depthscope.zoo.cifar_resnet import (
    BasicBlock,
    IdentityShortcut,
    PlainBlock,
    PreActBlock,
    ProjectionShortcut,
    cifar_resnet,
    stage_channels,
)

SEED = 0

# He et al. 2015, Table 6 (CIFAR-10, option A shortcuts): parameters in millions.
PAPER_PARAMS_M = {"resnet20": 0.27, "resnet56": 0.85, "resnet110": 1.7}
# Exact counts of this implementation (3x3 convs without bias, BN scale and shift, linear with
# bias); the widely used reference code (akamaster/pytorch_resnet_cifar10) reports the same.
EXACT_PARAMS = {"resnet20": 269_722, "resnet56": 853_018, "resnet110": 1_727_962}


def _n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _two_significant(x: float) -> float:
    return float(f"{x:.2g}")


@pytest.mark.parametrize("name", sorted(PAPER_PARAMS_M))
def test_parameter_counts_match_paper(name: str) -> None:
    n = _n_params(depthscope.create_model(name))
    assert _two_significant(n / 1e6) == PAPER_PARAMS_M[name]
    assert n == EXACT_PARAMS[name]


def test_projection_and_plain_parameter_counts() -> None:
    base = EXACT_PARAMS["resnet20"]
    # Option B adds a 1x1 conv + BN at the two transitions: 16*32 + 2*32 and 32*64 + 2*64.
    assert _n_params(depthscope.create_model("resnet20", shortcut="projection")) == base + 576 + 2176
    # Plain twins and pre-activation nets have the same weights (option A shortcuts are free;
    # pre-activation moves BNs, keeping their number: stem BN -> head BN).
    assert _n_params(depthscope.create_model("plain20")) == base
    assert _n_params(depthscope.create_model("preact_resnet20")) == base


@pytest.mark.parametrize("block", [BasicBlock, PreActBlock], ids=["postact", "preact"])
@pytest.mark.parametrize("shortcut", ["identity", "projection"])
def test_shortcut_shapes_at_every_transition(block, shortcut: str) -> None:
    torch.manual_seed(SEED)
    width, size = 0.5, 8
    model = cifar_resnet(2, block, width=width, shortcut=shortcut, input_size=size).eval()
    c1, c2, c3 = stage_channels(width)
    expected_out = [(c1, 8)] * 2 + [(c2, 4)] * 2 + [(c3, 2)] * 2
    h = model.stem(model.example_input(2, torch.Generator().manual_seed(SEED)))
    transitions = 0
    for k, (blk, (c, s)) in enumerate(zip(model.blocks, expected_out)):
        sc = blk.shortcut(h)
        assert blk.branch(h).shape == sc.shape == (2, c, s, s), f"block {k}"
        if h.shape[1] != c:
            transitions += 1
            kind = IdentityShortcut if shortcut == "identity" else ProjectionShortcut
            assert isinstance(blk.shortcut, kind)
        else:
            assert isinstance(blk.shortcut, torch.nn.Identity)
        h = blk(h)
        assert h.shape == (2, c, s, s)
    assert transitions == 2


def test_option_a_shortcut_values() -> None:
    """Option A: stride-2 subsample, then zero channels appended; no parameters."""
    shortcut = IdentityShortcut(3, 5, 2)
    x = torch.randn(2, 3, 5, 5)
    y = shortcut(x)
    assert y.shape == (2, 5, 3, 3)
    assert torch.equal(y[:, :3], x[:, :, ::2, ::2])
    assert torch.count_nonzero(y[:, 3:]) == 0
    assert not list(shortcut.parameters())
    with pytest.raises(ValueError):
        IdentityShortcut(5, 3, 1)


def test_preact_identity_blocks_are_x_plus_branch() -> None:
    """Claim R4's form: with identity shortcuts a pre-activation block is exactly x + F(x)."""
    torch.manual_seed(SEED)
    block = PreActBlock(4, 4, 1, "identity").eval()
    x = torch.randn(2, 4, 6, 6)
    assert torch.equal(block(x), x + block.branch(x))


def test_chain_layout_width_and_input_size() -> None:
    n = 3
    model = depthscope.create_model("resnet20", width=0.25, input_size=12)
    x = model.example_input(2)
    assert x.shape == (2, 3, 12, 12)
    chain = depthscope.Chain.from_module(model.eval(), example=x)
    assert len(chain) == 3 * n + 2
    assert chain.names[0] == "stem" and chain.names[-1] == "head"
    states = chain.states(x)
    assert states[1].shape == (2, 4, 12, 12)  # stem: 16 * 0.25 channels
    assert states[-2].shape == (2, 16, 3, 3)  # last block: 64 * 0.25 channels, 12 / 4 pixels
    assert states[-1].shape == (2, 10)


def test_plain_twin_has_no_shortcut() -> None:
    model = depthscope.create_model("plain20", width=0.25, input_size=8)
    assert all(isinstance(b, PlainBlock) for b in model.blocks)
    assert not any(hasattr(b, "shortcut") for b in model.blocks)
    assert len(model.blocks) == 9


def test_registered_names() -> None:
    names = depthscope.list_models()
    for depth in (20, 32, 44, 56, 110):
        assert f"resnet{depth}" in names and f"preact_resnet{depth}" in names
        assert len(depthscope.create_model(f"resnet{depth}", width=0.25, input_size=8).blocks) == (depth - 2) // 2
    assert {"plain20", "plain56"} <= set(names)


def test_he_initialisation() -> None:
    """Convs: N(0, 2 / (k^2 c_out)) (He et al. 2015, fan-out as in the reference code)."""
    torch.manual_seed(SEED)
    model = depthscope.create_model("resnet56")
    w = torch.cat([b.conv2.weight.flatten() for b in model.blocks[-9:]])  # 64 -> 64 channels, 3x3
    torch.testing.assert_close(w.std(), torch.tensor(math.sqrt(2.0 / (9 * 64))), rtol=0.02, atol=0.0)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        depthscope.create_model("resnet20", shortcut="option_c")
    with pytest.raises(ValueError):
        depthscope.create_model("resnet20", width=0.0)
