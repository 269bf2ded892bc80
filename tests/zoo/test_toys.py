"""Toy models: the scalar tower's closed-form gradient (V1) and the deep linear network (V4, V8)."""

from __future__ import annotations

import pytest
import torch
from torch.func import jacrev

import depthscope
from depthscope.zoo import toys

# float64 closed form vs autograd: the same product in another order, well inside 1e-10.
CLOSED_FORM_TOL = 1e-10


@pytest.mark.parametrize("name", ["scalar_tower", "deep_linear"])
def test_registered_chain_is_stem_layers_head(name):
    spec = depthscope.model_spec(name)
    assert spec.family == "toys"
    torch.manual_seed(0)
    model = spec.factory(**spec.tiny)
    x = model.example_input(3, torch.Generator().manual_seed(1))
    chain = depthscope.Chain.from_module(model)
    depth = spec.tiny["depth"]
    assert chain.names == ["stem", *[f"layers.{i}" for i in range(depth)], "head"]
    torch.testing.assert_close(chain(x), model(x), rtol=0, atol=0)


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu", "linear"])
@pytest.mark.parametrize("depth", [1, 3, 10])
def test_scalar_tower_gradient_equals_closed_form(activation, depth):
    gen = torch.Generator().manual_seed(depth)
    weights = (0.5 + torch.rand(depth, generator=gen, dtype=torch.float64)).tolist()
    model = toys.scalar_tower(depth=depth, weights=weights, activation=activation, slope=1.5).double()
    x = torch.tensor([[0.7], [-1.3], [2.1]], dtype=torch.float64)
    for i in range(x.shape[0]):
        model.zero_grad()
        model(x[i : i + 1]).sum().backward()
        closed = toys.scalar_tower_grad_w1(model, x[i : i + 1])
        assert closed.shape == (1, 1)
        assert model.layers[0].w.grad.item() == pytest.approx(closed.item(), abs=CLOSED_FORM_TOL, rel=CLOSED_FORM_TOL)


def test_scalar_tower_with_unit_upper_weights_is_claim_v1():
    # V1: d f_L / d w_1 = x prod_k sigma'(z_k) for sigma(sigma(... w x)).
    model = toys.scalar_tower(depth=6, weights=[0.9] + [1.0] * 5, activation="sigmoid").double()
    x = torch.tensor([[1.2]], dtype=torch.float64)
    z = model.preactivations(x)
    s = torch.sigmoid(z)
    v1 = x * (s * (1 - s)).prod()
    torch.testing.assert_close(toys.scalar_tower_grad_w1(model, x), v1, rtol=0, atol=CLOSED_FORM_TOL)


def test_sigmoid_tower_gradient_is_at_most_a_quarter_per_layer():
    # V2: sigma' <= 1/4, so with unit weights |df/dw_1| <= |x| 0.25^L.
    depth = 20
    model = toys.scalar_tower(depth=depth).double()
    x = torch.linspace(-3, 3, 13, dtype=torch.float64).unsqueeze(1)
    grad = toys.scalar_tower_grad_w1(model, x)
    assert (grad.abs() <= x.abs() * 0.25**depth).all()


def test_scalar_tower_rejects_mismatched_weights():
    with pytest.raises(ValueError, match="entries"):
        toys.scalar_tower(depth=3, weights=[1.0, 2.0])
    with pytest.raises(ValueError, match="unknown activation"):
        toys.activation_derivative("gelu", torch.zeros(1))


@pytest.mark.parametrize("init", ["gaussian", "orthogonal"])
def test_deep_linear_jacobian_is_the_product(init):
    torch.manual_seed(2)
    model = toys.deep_linear(depth=5, width=4, init=init, scale=1.2).double()
    x = torch.randn(1, 4, dtype=torch.float64)
    jac = jacrev(model)(x).reshape(4, 4)
    product = model.layers[4].weight @ model.layers[3].weight @ model.layers[2].weight
    product = product @ model.layers[1].weight @ model.layers[0].weight
    torch.testing.assert_close(jac, product.detach(), rtol=0, atol=CLOSED_FORM_TOL)
    torch.testing.assert_close(toys.end_to_end_matrix(model), product.detach(), rtol=0, atol=CLOSED_FORM_TOL)


def test_orthogonal_deep_linear_is_an_isometry():
    # V8: orthogonal layers with a derivative-1 activation (none) keep every singular value at 1.
    torch.manual_seed(3)
    model = toys.deep_linear(depth=30, width=8, init="orthogonal").double()
    svals = torch.linalg.svdvals(toys.end_to_end_matrix(model))
    # init_linear draws Q in float32, so each factor is orthogonal to ~1e-7; 30 of them stay < 1e-5.
    torch.testing.assert_close(svals, torch.ones(8, dtype=torch.float64), rtol=0, atol=1e-5)


def test_deep_linear_weight_gradient_is_the_product_of_the_others():
    # V4: dLoss/dW_k = (W_L..W_{k+1})^T g (W_{k-1}..W_1 x)^T.
    torch.manual_seed(4)
    model = toys.deep_linear(depth=4, width=5).double()
    x = torch.randn(3, 5, dtype=torch.float64)
    target = torch.randn(3, 5, dtype=torch.float64)
    out = model(x)
    loss = 0.5 * (out - target).square().sum()
    loss.backward()
    grad_out = (out - target).detach()
    for k, layer in enumerate(model.layers):
        closed = toys.deep_linear_weight_grad(model, x, grad_out, k)
        torch.testing.assert_close(layer.weight.grad, closed, rtol=0, atol=CLOSED_FORM_TOL)
