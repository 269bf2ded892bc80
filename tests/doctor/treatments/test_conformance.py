"""Every registered treatment, on a registered model it is declared to treat (timm-style conformance).

The treatments are read from the registry when the tests are collected; a treatment without a
pairing in `PAIRINGS` fails `test_every_treatment_has_a_pairing`, so a new one cannot go untested.
For each: the treatment applies and is not blocked, `apply` returns a new model and leaves the
original's parameters and buffers bit for bit as they were, the original does not already show the
promise (so the check could fail) and the treated model's re-probe does, `constants` are finite
numbers, and a function-preserving treatment keeps the output to 1e-6.
"""

from __future__ import annotations

import math
import numbers

import pytest
import torch
from tests.doctor.treatment_cases import case_for, state, unchanged, zoo

import depthscope as ds
from depthscope.doctor import KINDS, list_treatments

# A function-preserving treatment's output agrees with the original's to this (the contract's 1e-6).
FUNCTION_ATOL = 1e-6

_SIGMOID_MLP = ("plain_mlp", dict(depth=20, width=16, activation="sigmoid"))
_TANH_SMALL = ("plain_mlp", dict(depth=20, width=16, activation="tanh", sigma_w=0.5))
_RESNET56 = ("resnet56", dict(width=0.25, input_size=8))
_POSTLN = ("transformer_postln", dict(depth=24, d_model=16, n_heads=2, d_ff=32, seq_len=8, vocab=11))

# treatment -> (zoo model, its keyword arguments, the findings given, the steps they name). Each
# model shows the problem at this size: the sigmoid stack vanishes (log gain -30), so does the
# tanh stack at sigma_w = 0.5, resnet56
# explodes (+4.0), the Post-LN stack's input gradient is e^2 times its top one, the slope-1.5
# linear stack explodes (+7.9), the tanh stack at sigma_w = 4, sigma_b = 0.5 explodes (+5.0), and
# the unprojected ProcResNet's transitions spread their singular values.
PAIRINGS: dict[str, tuple[str, dict, tuple[str, ...], tuple[str, ...]]] = {
    "criticality": (*_TANH_SMALL, ("vanishing",), ()),
    "rezero": (*_SIGMOID_MLP, ("vanishing",), ()),
    "stable-resnet": (*_SIGMOID_MLP, ("vanishing",), ()),
    "zero-gamma": (*_RESNET56, ("exploding", "batchnorm-branches"), ()),
    "fixup": (*_RESNET56, ("exploding", "batchnorm-branches"), ()),
    "deepnorm": (*_POSTLN, ("postln-contraction",), ()),
    "pre-ln": (*_POSTLN, ("postln-contraction",), ()),
    "admin": (*_POSTLN, ("postln-contraction",), ()),
    "procrustes": (
        "procresnet",
        dict(n=1, width=0.25, input_size=8, procrustes=False),
        ("ill-conditioned",),
        ("blocks.1", "blocks.3"),
    ),
    "spectral-rescale": (
        "plain_mlp",
        dict(depth=20, width=16, activation="linear", slope=1.5, sigma_w=1.0),
        ("exploding",),
        (),
    ),
    "desaturate": (
        "plain_mlp",
        dict(depth=20, width=16, activation="tanh", sigma_w=4.0, sigma_b=0.5),
        ("saturation",),
        (),
    ),
}

TREATMENTS = {t.name: t for t in list_treatments()}


def test_every_treatment_has_a_pairing() -> None:
    missing = sorted(set(TREATMENTS) - set(PAIRINGS))
    assert not missing, f"treatments without a conformance pairing: {missing}"
    assert not set(PAIRINGS) - set(TREATMENTS), "a pairing names an unregistered treatment"


@pytest.mark.parametrize("name", sorted(TREATMENTS))
def test_declares_its_contract(name: str) -> None:
    t = TREATMENTS[name]
    assert t.name == name and t.title and t.promise
    assert any(str(year) in t.source for year in range(1990, 2030)), f"{name}: source has no year: {t.source!r}"
    assert t.treats and set(t.treats) <= set(KINDS)
    assert isinstance(t.preserves_function, bool)


@pytest.mark.parametrize("name", sorted(TREATMENTS))
def test_treatment_keeps_its_promise(name: str) -> None:
    if name not in PAIRINGS:
        pytest.fail(f"{name} has no pairing in PAIRINGS")
    treatment = TREATMENTS[name]
    model_name, kwargs, kinds, steps = PAIRINGS[name]
    model, x = zoo(model_name, **kwargs)
    case = case_for(model, x, kinds, steps)
    assert treatment.applies(case), f"{name} does not apply to {model_name}"
    assert treatment.blocked(case) is None
    saved = state(model)

    treated = treatment.apply(model, case)

    assert treated is not model
    assert unchanged(model, saved), f"{name} modified the original model"
    assert not treatment.kept(case.report, case.report), f"{model_name} already shows {name}'s promise"
    after = ds.probe(treated.eval(), x)
    assert treatment.kept(case.report, after), (
        f"{name}: promise '{treatment.promise}' not kept: log gain {case.report.log_gain:.3g} -> {after.log_gain:.3g}, "
        f"body {case.report.body_log_gain:.3g} -> {after.body_log_gain:.3g}"
    )
    constants = treatment.constants(case)
    assert constants, f"{name} declares no constants"
    for key, value in constants.items():
        assert isinstance(value, numbers.Real) and math.isfinite(value), f"{name}: constant {key} = {value!r}"
    if treatment.preserves_function:
        with torch.no_grad():
            torch.testing.assert_close(treated(x), model(x), rtol=0.0, atol=FUNCTION_ATOL)
