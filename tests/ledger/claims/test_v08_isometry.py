"""Claim V8: the normalised variances of the squared singular values, isometry, and the mismatch list."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tests.ledger.claims.helpers import run_tiny

from depthscope.ledger.claims import v08_isometry as v08


@pytest.mark.parametrize(
    "name, expected", [("linear-gaussian", 1.0), ("relu-gaussian", 2.0), ("linear-orthogonal", 0.0)]
)
def test_v8_one_layer_normalised_variance(name, expected):
    gen = torch.Generator().manual_seed(0)
    pairs = [v08._squared_singular_moments(v08.V8_SYSTEMS[name], 1, 256, s, gen) for s in range(3)]
    assert np.mean([p[1] for p in pairs]) == pytest.approx(expected, abs=0.15)
    assert np.mean([p[0] for p in pairs]) == pytest.approx(1.0, abs=0.1)


def test_v8_variance_is_normalised_by_the_mean_off_criticality():
    system = {"activation": "linear", "init": "gaussian", "sigma_w": 2.0}  # m1 = sigma_w^2 = 4 per layer
    m1, normalised = v08._squared_singular_moments(system, 1, 256, 0, torch.Generator().manual_seed(0))
    assert m1 == pytest.approx(4.0, rel=0.1)
    assert normalised == pytest.approx(1.0, abs=0.15)


def test_v8_orthogonal_chain_is_isometric_and_gaussian_is_not():
    assert run_tiny("V8").measured["isometry_max_dev"] < 1e-13
    assert run_tiny("V8", isometry_init="gaussian").measured["isometry_max_dev"] > 0.5


def test_v8_mismatch_list_reads_published_values():
    m = {
        "moments": {
            "linear-gaussian": [{"depth": 4, "variance": 5.5, "published": 4.0}],
            "linear-orthogonal": [{"depth": 4, "variance": 1e-16, "published": 0.0}],
        }
    }
    assert v08._moment_mismatches(m) == ["linear-gaussian L=4: 5.5 vs 4"]
