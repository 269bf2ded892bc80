"""prune: lesion-ranked removal (Veit et al. 2016, claim J6) on digits, and its bad input."""

from __future__ import annotations

import pytest
import torch
from tests.design.design_models import snapshot, tiny, unchanged

import depthscope as ds
from depthscope.design import prune
from depthscope.ledger import digits, train_classifier

DEPTH, WIDTH = 8, 32
STEPS = 150  # Adam steps: both nets reach > 0.8 test accuracy on digits (chance 0.1)
LR = 2e-3


@pytest.fixture(scope="module")
def trained():
    """A residual and a plain MLP of the same depth and width, trained alike on digits."""
    data = digits()
    nets = {}
    for name in ("resnet_mlp", "plain_mlp"):
        torch.manual_seed(0)
        net = ds.create_model(name, depth=DEPTH, width=WIDTH, in_dim=64)
        run = train_classifier(net, data, steps=STEPS, lr=LR, optimizer="adam", seed=0)
        assert run.test_accuracy > 0.8, (name, run.test_accuracy)
        nets[name] = net.eval()
    return data, nets


def test_removing_residual_blocks_costs_less_than_removing_plain_layers(trained):
    data, nets = trained
    val = (data.x_test, data.y_test)
    x = data.x_test[:32]
    snap = snapshot(nets["resnet_mlp"])
    res, res_info = prune(nets["resnet_mlp"], x, val, keep=0.75)
    assert unchanged(nets["resnet_mlp"], snap)
    plain, plain_info = prune(nets["plain_mlp"], x, val, keep=0.75, blocks=[f"blocks.{i}" for i in range(DEPTH)])
    assert len(res_info.removed) == len(plain_info.removed) == DEPTH // 4
    assert len(res.blocks) == len(plain.blocks) == DEPTH - DEPTH // 4
    res_cost = res_info.accuracy_before - res_info.accuracy_after
    plain_cost = plain_info.accuracy_before - plain_info.accuracy_after
    assert res_cost < plain_cost, (res_cost, plain_cost)
    # the ranking is by the measured lesion effect, least important first, and the removed are its head
    effects = [r.effect for r in res_info.ranking]
    assert effects == sorted(effects)
    assert res_info.removed == [r.name for r in res_info.ranking[: DEPTH // 4]]
    # fewer branches: fewer paths, and the gradient's path length measured before and after
    assert res_info.paths_after.n_paths == 2 ** (DEPTH - DEPTH // 4)
    assert res_info.effective_depth_after < res_info.effective_depth_before
    assert plain_info.effective_depth_before is None  # a plain net has no residual paths


def test_without_labels_the_output_change_ranks_the_blocks():
    model = tiny("resnet_mlp", depth=6)
    x = model.example_input(8)
    pruned, info = prune(model, x, keep=0.5)
    assert info.metric == "output change" and info.accuracy_before is None
    assert len(info.removed) == 3 and len(pruned.blocks) == 3
    with torch.no_grad():
        change = float((pruned(x) - model(x)).norm() / model(x).norm())
    assert info.output_change == pytest.approx(change, rel=1e-5)
    # removing only the least important block changes the output by its own measured lesion effect
    _, one = prune(model, x, keep=5 / 6)
    assert one.output_change == pytest.approx(info.ranking[0].effect, rel=1e-5)


def test_keep_one_removes_nothing():
    model = tiny("resnet_mlp")
    x = model.example_input(4)
    pruned, info = prune(model, x, keep=1.0)
    assert info.removed == [] and info.output_change == 0.0
    assert len(pruned.blocks) == len(model.blocks)


@pytest.mark.parametrize("keep", [0.0, -0.5, 1.5, float("nan")])
def test_keep_outside_the_unit_interval(keep):
    with pytest.raises(ds.InputError, match=r"keep must lie in \(0, 1\]"):
        prune(tiny("resnet_mlp"), keep=keep)


def test_a_model_without_residual_blocks_gets_a_clear_message():
    with pytest.raises(ds.NoBlocksError, match="no residual .* block among blocks.0 \\(skip=False\\)"):
        prune(tiny("plain_mlp"))


def test_named_blocks_must_exist_and_keep_their_shape():
    model = tiny("resnet20")
    with pytest.raises(ds.InputError, match="no block named"):
        prune(model, blocks=["layer9"])
    lay = ds.design.layout(model, model.example_input(2))
    changing = next(s.name for s in lay.sites if not s.shape_preserving)
    with pytest.raises(ds.InputError, match="change the shape"):
        prune(model, blocks=[changing])
