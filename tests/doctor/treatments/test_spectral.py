"""Spectral rescaling and desaturation: weights to the critical scale, keeping their directions."""

from __future__ import annotations

import math

import torch
from tests.doctor.treatment_cases import case_for, zoo

from depthscope.doctor import critical_sigma_w, get_treatment, meanfield
from depthscope.doctor.treatments.spectral import critical_factor

SPECTRAL = get_treatment("spectral-rescale")
DESATURATE = get_treatment("desaturate")


def _rms_singular_value(w: torch.Tensor) -> float:
    return float(torch.linalg.svdvals(w.detach().double()).pow(2).mean().sqrt())


def test_linear_and_relu_weights_get_the_critical_rms_singular_value() -> None:
    for kwargs, target in (
        (dict(activation="linear", slope=1.5, sigma_w=1.0), 1 / 1.5),
        (dict(activation="relu", sigma_w=2.0), math.sqrt(2)),
    ):
        model, x = zoo("plain_mlp", depth=3, width=8, **kwargs)
        case = case_for(model, x, ("exploding",))
        assert math.isclose(SPECTRAL.constants(case)["target_rms_singular_value"], target)
        treated = SPECTRAL.apply(model, case)
        for old, new in zip(model.blocks, treated.blocks):
            assert math.isclose(_rms_singular_value(new.linear.weight), target, rel_tol=1e-5)
            cos = torch.nn.functional.cosine_similarity(
                old.linear.weight.detach().flatten(), new.linear.weight.detach().flatten(), dim=0
            )
            assert float(cos) > 1 - 1e-6  # the direction is kept


def test_spectral_is_blocked_for_bounded_activations_and_residual_nets() -> None:
    tanh = case_for(*zoo("plain_mlp", depth=3, width=8, activation="tanh"), ("exploding",))
    assert "not linear or ReLU" in SPECTRAL.blocked(tanh) and SPECTRAL.applies(tanh) is None
    assert "residual" in SPECTRAL.blocked(case_for(*zoo("resnet_mlp", depth=3, width=8), ("exploding",)))


def test_critical_factor_puts_the_scales_on_chi_one() -> None:
    c = critical_factor(torch.nn.Tanh(), 4.0, 0.5)
    assert math.isclose(meanfield("tanh", 4.0 * c, 0.5 * c).chi_1, 1.0, rel_tol=1e-8)
    assert math.isclose(critical_factor(torch.nn.Tanh(), 4.0, 0.0), critical_sigma_w("tanh") / 4.0)


def test_desaturate_shrinks_a_saturated_tanh_stack_onto_the_critical_line() -> None:
    model, x = zoo("plain_mlp", depth=3, width=16, activation="tanh", sigma_w=4.0, sigma_b=0.5)
    case = case_for(model, x, ("saturation",))
    assert "saturated" in DESATURATE.applies(case)
    constants = DESATURATE.constants(case)
    assert constants["sigma_w"] < constants["sigma_w_before"] / 2
    assert math.isclose(meanfield("tanh", constants["sigma_w"], constants["sigma_b"]).chi_1, 1.0, rel_tol=1e-8)
    treated = DESATURATE.apply(model, case)
    for block in treated.blocks:
        w = block.linear.weight.detach().double()
        assert math.isclose(float(w.norm() / math.sqrt(w.shape[0])), constants["sigma_w"], rel_tol=1e-5)
    assert DESATURATE.applies(case_for(model, x, ("exploding",))) is None  # no saturation finding
