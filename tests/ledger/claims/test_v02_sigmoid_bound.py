"""Claim V2: the sup of sigma' and where it is attained, and the tower factor as a product of derivatives."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tests.ledger.claims.helpers import tiny_setting

from depthscope.ledger.claims import _vanishing_common as common
from depthscope.ledger.claims import v02_sigmoid_bound as v02
from depthscope.zoo.toys import activation_derivative


def test_v2_sup_is_attained_only_at_zero_and_towers_respect_the_bound():
    m = v02._measure_v2(tiny_setting("V2"), seed=0)
    assert m["sigmoid"]["sup_derivative"] == pytest.approx(0.25, abs=1e-15)
    assert m["tanh"]["sup_derivative"] == pytest.approx(1.0, abs=1e-15)
    for act in ("sigmoid", "tanh"):
        assert max(abs(z) for z in m[act]["attained_at"]) < 1e-12
        assert max(m[act]["log10_factors"]) <= m[act]["log10_bound"] + 1e-12
    # a depth-20 sigmoid tower with upper weights 1 keeps z_k in (0, 1] after layer 1, where
    # sigma' >= sigma'(1) = 0.197: the bound is loose by less than (0.25 / 0.197)^19 ~ 10^2 there
    assert m["sigmoid"]["log10_factor_median"] > m["sigmoid"]["log10_bound"] - 3


def test_v2_tower_factor_is_the_product_of_derivatives():
    tower = common._build("scalar_tower", 0, depth=7, weights=[-0.8] + [1.0] * 6, activation="sigmoid")
    x = torch.tensor([[1.1]], dtype=torch.float64)
    closed = float(activation_derivative("sigmoid", tower.preactivations(x).detach()).prod())
    assert v02._tower_factor("sigmoid", 1.0, 7, 1.1, -0.8) == pytest.approx(closed, rel=1e-13)


def test_v2_scaled_sigmoid_has_derivative_one_at_zero():
    z, d = v02._activation_derivative_on_grid("sigmoid", 4.0, 1.0, 201)
    assert d.max() == pytest.approx(1.0, abs=1e-15)
    assert abs(z[np.argmax(d)]) < 1e-12
