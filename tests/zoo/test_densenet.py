"""DenseNets: the chain state is the growing concatenation [x_0, out_1, ..., out_k] (claim J1)."""

from __future__ import annotations

import pytest
import torch
from torch.func import jacrev

import depthscope
from depthscope.zoo.densenet import DenseNet, densenet_cnn, densenet_mlp

SEED = 0
# Float64 closed forms on a tiny linear network: round-off only.
ORACLE_ATOL = 1e-10


def _states(model: DenseNet, x: torch.Tensor) -> list[torch.Tensor]:
    return depthscope.Chain.from_module(model, example=x).states(x)


@pytest.mark.parametrize(
    "build",
    [
        lambda: densenet_mlp(depth=4, width=5, growth=3),
        lambda: densenet_cnn(depth=3, init_channels=4, growth=2, input_size=5).eval(),
    ],
    ids=["mlp", "cnn"],
)
def test_state_grows_by_appending(build) -> None:
    torch.manual_seed(SEED)
    model = build()
    x = model.example_input(2, torch.Generator().manual_seed(SEED))
    with torch.no_grad():
        states = _states(model, x)  # [x, s_0, s_1, ..., s_L, logits]
    dense = states[1:-1]
    assert len(dense) == len(model.layers) + 1
    for k, s in enumerate(dense):
        assert s.shape[1] == model.init_features + k * model.growth
        if k > 0:
            assert torch.equal(s[:, : dense[k - 1].shape[1]], dense[k - 1])  # earlier state kept as is
            new = model.layers[k - 1].new_features(dense[k - 1])
            assert torch.equal(model.layer_output(s, k), new)
            assert torch.equal(model.layer_output(dense[-1], k), new)  # readable from any later state
    assert torch.equal(model.layer_output(dense[-1], 0), dense[0])
    with pytest.raises(ValueError):
        model.layer_output(dense[1], 2)


def test_layer_jacobians_closed_form() -> None:
    """Linear activation a: out_1 = a W_1 x_0 and out_2 = a W_2 [x_0; out_1], so
    d out_2 / d x_0 = a W_2[:, :d0] + a W_2[:, d0:] (a W_1): the oracle for the J1 probe."""
    torch.manual_seed(SEED)
    a, d0 = 1.5, 4
    model = densenet_mlp(depth=2, width=d0, growth=3, activation="linear", slope=a).double()
    x0 = torch.randn(d0, dtype=torch.float64)
    w1, w2 = model.layers[0].linear.weight, model.layers[1].linear.weight

    def out_k(k: int):
        def f(v: torch.Tensor) -> torch.Tensor:
            s = v.unsqueeze(0)
            for layer in model.layers[:k]:
                s = layer(s)
            return model.layer_output(s, k).squeeze(0)

        return f

    j1 = jacrev(out_k(1))(x0)
    j2 = jacrev(out_k(2))(x0)
    torch.testing.assert_close(j1, a * w1, rtol=0.0, atol=ORACLE_ATOL)
    torch.testing.assert_close(j2, a * w2[:, :d0] + a * w2[:, d0:] @ (a * w1), rtol=0.0, atol=ORACLE_ATOL)


def test_shapes_and_registry() -> None:
    assert depthscope.model_spec("densenet_mlp").family == "densenet"
    assert depthscope.model_spec("densenet_cnn").family == "densenet"
    mlp = densenet_mlp(depth=3, width=6, growth=2, in_dim=9, out_dim=4)
    assert mlp(mlp.example_input(5)).shape == (5, 4)
    assert mlp.head.in_features == 6 + 3 * 2
    cnn = densenet_cnn(depth=2, init_channels=4, growth=3, input_size=6, num_classes=7)
    x = cnn.example_input(2)
    assert x.shape == (2, 3, 6, 6)
    assert cnn(x).shape == (2, 7)
    assert depthscope.Chain.from_module(cnn, example=x).names == ["stem", "layers.0", "layers.1", "head"]
    with pytest.raises(ValueError):
        densenet_mlp(depth=0)
