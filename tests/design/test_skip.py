"""skip_density (claim J5): (sigma^2 + s)^L against Monte Carlo over drawn `RandomSkipNet`s."""

from __future__ import annotations

import math

import pytest
import torch

import depthscope as ds
from depthscope.design import RandomSkipNet, balanced_skip_density, skip_density

# |Monte Carlo mean - formula| allowed, in standard errors of the mean (4: a 1-in-15,000 false alarm).
Z_MAX = 4.0
NETS = 1500  # networks drawn per point: enough for a ~5% standard error at L = 4


def _sq_gain(net: RandomSkipNet) -> float:
    """||g_0||^2 for g_L = e_1, going down through the drawn layers (float64)."""
    g = torch.zeros(net.width, dtype=torch.float64)
    g[0] = 1.0
    for layer in reversed(net.blocks):
        g = layer.weight.detach().double().T @ g + float(layer.skip) * g
    return float(g.pow(2).sum())


@pytest.mark.parametrize("s", [0.0, 0.5, 1.0])
def test_formula_matches_monte_carlo(s):
    depth, width, sigma2 = 4, 6, 0.5
    samples = torch.tensor([_sq_gain(RandomSkipNet(depth, width, s, sigma2, seed=i)) for i in range(NETS)])
    mean, se = float(samples.mean()), float(samples.std()) / math.sqrt(NETS)
    assert abs(mean - skip_density(s, depth, sigma2)) <= Z_MAX * se, (mean, se)


def test_closed_form_values():
    assert skip_density(0.5, 3, 0.5) == pytest.approx(1.0)
    assert skip_density(0.0, 2, 0.5) == pytest.approx(0.25)
    assert skip_density(1.0, 2, 1.0) == pytest.approx(4.0)
    assert balanced_skip_density(0.3) == pytest.approx(0.7)
    assert balanced_skip_density(2.0) is None
    for depth in (1, 8, 64):
        assert skip_density(balanced_skip_density(0.3), depth, 0.3) == pytest.approx(1.0)


def test_the_net_draws_its_skips_with_probability_s():
    nets = [RandomSkipNet(50, 2, 0.3, seed=i) for i in range(20)]
    share = sum(float(b.skip) for n in nets for b in n.blocks) / (50 * 20)
    assert share == pytest.approx(0.3, abs=0.05)
    assert RandomSkipNet(4, 3, 0.5).expected_sq_gain() == pytest.approx(skip_density(0.5, 4, 0.5))


@pytest.mark.parametrize("kw", [{"s": -0.1}, {"s": 1.1}, {"sigma2": -1.0}, {"depth": 0}])
def test_bad_arguments(kw):
    args = {"s": 0.5, "depth": 4, "sigma2": 0.5, **kw}
    with pytest.raises(ds.InputError):
        skip_density(**args)
