"""grow: function-preserving insertion (claim J2), plain insertions honest about tanh, bad input."""

from __future__ import annotations

import pytest
import torch
from tests.design.design_models import snapshot, tiny, unchanged
from torch import nn

import depthscope as ds
from depthscope.design import DesignWarning, grow
from depthscope.doctor import ScaledResidual

# The promise: the grown model's output equals the original's to this.
PRESERVED = 1e-6

# (model, block to grow after, how its identity copy is made: "wrap" = the doctor's ScaledResidual
# at alpha = 0; otherwise the attribute path of the branch's last layer, zeroed in a copy)
CASES = [
    ("resnet_mlp", "blocks.1", "fc2"),
    ("plain_mlp", "blocks.2", "wrap"),
    ("resnet20", "blocks.1", "bn2"),
    ("transformer_preln", "blocks.0", "wrap"),
    ("transformer_postln", "blocks.1", "wrap"),
]


@pytest.mark.parametrize("name,after,how", CASES, ids=[c[0] for c in CASES])
def test_identity_growth_keeps_the_output_and_the_original(name, after, how):
    model = tiny(name)
    x = model.example_input(3, torch.Generator().manual_seed(1))
    snap = snapshot(model)
    grown = grow(model, 3, after, init="identity", x=x)
    assert unchanged(model, snap)
    assert len(grown.blocks) == len(model.blocks) + 3
    with torch.no_grad():
        assert float((grown(x) - model(x)).abs().max()) <= PRESERVED
    k = int(after.split(".")[1])
    for b in list(grown.blocks)[k + 1 : k + 4]:
        if how == "wrap":
            assert isinstance(b, ScaledResidual) and float(b.alpha.detach()) == 0.0
            assert isinstance(b.alpha, nn.Parameter)
        else:  # a copy of the residual block with the end of its branch zeroed, the rest kept
            template = model.blocks[k]
            assert type(b) is type(template)
            assert not b.get_submodule(how).weight.detach().any()
            assert torch.equal(next(b.parameters()), next(template.parameters()))


def test_identity_blocks_have_identity_jacobians():
    model = tiny("resnet_mlp")
    x = model.example_input(4)
    grown = grow(model, 2, "blocks.1", x=x)
    report = ds.probe(grown, x, lyapunov=0)
    gaps = {b.name: b.identity_gap for b in report.blocks}
    assert gaps["blocks.2"] == pytest.approx(0.0, abs=1e-7)
    assert gaps["blocks.3"] == pytest.approx(0.0, abs=1e-7)
    assert gaps["blocks.1"] > 0.1  # the old blocks are not the identity: the check can tell


def test_noise_blocks_have_branch_norm_eps():
    model = tiny("resnet_mlp")
    x = model.example_input(4)
    eps = 0.05
    grown = grow(model, 2, "blocks.0", init="noise", eps=eps, x=x)
    report = ds.probe(grown, x, lyapunov=0)
    for b in report.blocks[2:4]:
        assert b.identity_gap == pytest.approx(eps, rel=1e-3)
    with torch.no_grad():
        assert float((grown(x) - model(x)).abs().max()) > PRESERVED  # noise is not the identity


def test_plain_relu_insertion_is_exact():
    model = tiny("plain_mlp", activation="relu")
    x = model.example_input(4)
    grown = grow(model, 2, "blocks.1", kind="plain", x=x)  # no warning: pytest turns warnings into errors
    with torch.no_grad():
        assert float((grown(x) - model(x)).abs().max()) <= PRESERVED
    w = grown.blocks[2].linear.weight
    assert torch.equal(w, torch.eye(w.shape[0]))


def test_plain_tanh_insertion_is_not_the_identity_and_says_so():
    model = tiny("plain_mlp", activation="tanh")
    x = model.example_input(4)
    with pytest.warns(DesignWarning, match="Tanh is not idempotent"):
        grown = grow(model, 2, "blocks.1", kind="plain", x=x)
    with torch.no_grad():
        assert float((grown(x) - model(x)).abs().max()) > 1e-3
    # the residual insertion is exact for the same tanh net
    with torch.no_grad():
        assert float((grow(model, 2, "blocks.1", x=x)(x) - model(x)).abs().max()) <= PRESERVED


def test_unknown_block_lists_the_names():
    model = tiny("resnet_mlp")
    with pytest.raises(ds.InputError, match=r"no block named 'blocks\.9'.*blocks\.0, blocks\.1"):
        grow(model, 1, "blocks.9")


def test_growing_where_the_shape_changes_is_refused():
    model = tiny("resnet20")
    lay = ds.design.layout(model, model.example_input(2))
    changing = next(s for s in lay.sites if not s.shape_preserving)
    with pytest.raises(ds.InputError, match="keeps its shape"):
        grow(model, 1, changing.name)


@pytest.mark.parametrize(
    "kw,match",
    [
        ({"n": 0}, "n must be >= 1"),
        ({"init": "zeros"}, "init must be one of"),
        ({"kind": "dense"}, "kind must be one of"),
        ({"init": "noise"}, "needs eps > 0"),
        ({"init": "noise", "eps": -1.0}, "needs eps > 0"),
    ],
)
def test_bad_arguments(kw, match):
    model = tiny("resnet_mlp")
    args = {"n": 1, **kw}
    with pytest.raises(ds.InputError, match=match):
        grow(model, args.pop("n"), "blocks.0", **args)


def test_plain_insertion_of_a_residual_block_is_refused():
    with pytest.raises(ds.InputError, match="has one"):
        grow(tiny("resnet_mlp"), 1, "blocks.0", kind="plain")


def test_a_model_that_cannot_make_its_input_needs_x():
    net = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4))
    with pytest.raises(ds.InputError, match="input batch x is needed"):
        grow(net, 1)


class _Attributes(ds.ChainModule):
    """Blocks held in plain attributes, not in a container depthscope can rebuild."""

    def __init__(self):
        super().__init__()
        self.a = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
        self.b = nn.Sequential(nn.Linear(4, 4), nn.ReLU())

    def chain_steps(self, x):
        return [("a", self.a), ("b", self.b)]

    def example_input(self, batch=1, generator=None):
        return torch.randn(batch, 4, generator=generator)


def test_a_block_outside_a_container_cannot_get_a_neighbour():
    with pytest.raises(ds.ChainError, match="not by an nn.Sequential or nn.ModuleList"):
        grow(_Attributes(), 1, "a")


def test_a_sequential_model_is_rebuilt_at_its_root():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 4))
    x = torch.randn(3, 4)
    grown = grow(net, 2, "0", x=x)
    assert isinstance(grown, nn.Sequential) and len(grown) == 5
    assert isinstance(grown[1], ScaledResidual) and isinstance(grown[3], nn.Tanh)
    with torch.no_grad():
        assert torch.equal(grown(x), net(x))


def test_a_residual_block_that_zeroing_does_not_silence_is_wrapped_instead():
    """Fixup adds a bias after its last layer: with it trained away from 0, zeroing the last layer
    leaves x + bias, so grow wraps the copy at alpha = 0 and the output is still unchanged."""
    model = tiny("fixup_mlp")
    with torch.no_grad():
        model.blocks[1].bias2b.fill_(0.3)
    x = model.example_input(3)
    grown = grow(model, 1, "blocks.1", x=x)
    assert isinstance(grown.blocks[2], ScaledResidual)
    with torch.no_grad():
        assert float((grown(x) - model(x)).abs().max()) <= PRESERVED


def test_a_train_mode_model_keeps_its_batchnorm_statistics_and_its_mode():
    model = tiny("resnet20").train()
    snap = snapshot(model)  # BatchNorm running statistics included
    grown = grow(model, 1, "blocks.0", init="noise", eps=0.1)
    assert unchanged(model, snap) and model.training and grown.training
