"""Claim V1: autograd against x prod sigma'(z_k) and the zoo's closed form, with and without skip paths."""

from __future__ import annotations

import pytest
import torch
from tests.ledger.claims.helpers import run_tiny

from depthscope.ledger.claims import _vanishing_common as common
from depthscope.ledger.claims import v01_scalar_tower as v01
from depthscope.zoo.toys import activation_derivative, scalar_tower_grad_w1


def test_v1_formula_equals_zoo_closed_form_and_autograd():
    x = torch.tensor([[0.7]], dtype=torch.float64)
    tower = common._build("scalar_tower", 0, depth=6, weights=[1.3] + [1.0] * 5, activation="sigmoid")
    chain = v01._tower_chain(tower, skip=False)
    z = v01._tower_preactivations(tower, chain, x).detach()
    assert torch.allclose(z, tower.preactivations(x).detach(), rtol=0, atol=1e-15)
    formula = 0.7 * float(activation_derivative("sigmoid", z).prod())
    (auto,) = torch.autograd.grad(chain(x).sum(), tower.layers[0].w)
    assert formula == pytest.approx(float(scalar_tower_grad_w1(tower, x)), rel=1e-14)
    assert formula == pytest.approx(float(auto), rel=1e-14)


def test_v1_skip_tower_follows_its_own_product_not_the_claim():
    x = torch.tensor([[0.4]], dtype=torch.float64)
    tower = common._build("scalar_tower", 0, depth=5, weights=[0.9] + [1.0] * 4, activation="tanh")
    chain = v01._tower_chain(tower, skip=True)
    z = v01._tower_preactivations(tower, chain, x).detach()
    (auto,) = torch.autograd.grad(chain(x).sum(), tower.layers[0].w)
    d = activation_derivative("tanh", z)
    residual = 0.4 * float((1 + d).prod())  # d/dz (z + tanh z) = 1 + tanh'(z) per layer
    assert float(auto) == pytest.approx(residual, rel=1e-13)
    assert common._relative_gap(float(auto), 0.4 * float(d.prod())) > 0.5


def test_v1_tiny_errors_are_at_rounding_level():
    m = run_tiny("V1").measured
    assert m["max_rel_err"] < 1e-13
    relu_zero = [a for a, act in zip(m["autograd"], m["activation"]) if act == "relu" and a == 0]
    assert relu_zero, "some ReLU tower should have a dead first unit (x w_1 < 0) at this seed"
