"""diagnose, Diagnosis and Prescription: ranking, apply, text, JSON, and the original left untouched."""

import functools
import json
import warnings

import pytest
import torch
from tests.doctor.treatment_cases import state, unchanged, zoo
from torch import nn

import depthscope as ds
from depthscope._errors import InputError
from depthscope.doctor import (
    Diagnosis,
    DoctorWarning,
    Treatment,
    UnknownTreatmentError,
    diagnose,
    list_treatments,
    step_ranges,
)
from depthscope.doctor._diagnosis import prescribe
from depthscope.probing import ProbeWarning

BATCH = 8


_zoo = functools.partial(zoo, batch=BATCH)


def test_step_ranges():
    order = ["stem", *[f"blocks.{i}" for i in range(50)], "head"]
    assert step_ranges(["blocks.3", "blocks.4", "blocks.5", "head"], order) == "blocks.3..blocks.5, head"
    assert step_ranges([f"blocks.{i}" for i in range(3, 50)] + ["head"], order) == "blocks.3..head"
    assert step_ranges(["stem", "blocks.1", "blocks.2"], order) == "stem, blocks.1, blocks.2"
    assert step_ranges([], order) == "the whole model"


def test_diagnosis_of_a_vanishing_sigmoid_net():
    model, x = _zoo("plain_mlp", depth=20, width=16, activation="sigmoid")
    before = state(model)
    dx = diagnose(model, x)
    assert dx.report.log_gain == ds.probe(model, x).log_gain  # the same chain as ds.probe builds
    assert not dx.healthy and dx.findings[0].kind == "vanishing"
    assert [f.severity for f in dx.findings] == sorted((f.severity for f in dx.findings), reverse=True)
    names = [p.name for p in dx.prescriptions]
    assert "criticality" in names and "rezero" in names
    for p in dx.prescriptions:
        assert p.rationale and p.source and "vanishing" in p.treats
    text = str(dx)
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "vanishing" in text and "blocks." in text and "Schoenholz" in text
    json.dumps(dx.to_dict(), allow_nan=False)
    treated = dx.apply(model)
    by_name = dx.apply(model, "rezero")
    assert treated is not model and by_name is not model
    assert unchanged(model, before)  # bit for bit


def test_healthy_model_gets_nothing():
    model, x = _zoo("rezero_mlp")
    dx = diagnose(model, x)
    assert dx.healthy and dx.findings == () and dx.prescriptions == ()
    assert "healthy" in str(dx)
    with pytest.raises(InputError, match="nothing to treat"):
        dx.apply(model)
    with pytest.raises(UnknownTreatmentError, match="unknown treatment 'no-such'"):
        dx.apply(model, "no-such")  # a misspelt name is named even when nothing needs treating
    assert dx.to_dict()["healthy"] is True


def test_apply_errors():
    model, x = _zoo("plain_mlp", depth=12, width=16, activation="linear", slope=1.5, sigma_w=1.0)
    dx = diagnose(model, x)
    with pytest.raises(UnknownTreatmentError, match=r"unknown treatment 'no-such'.*criticality.*rezero"):
        dx.apply(model, "no-such")
    with pytest.raises(InputError, match="does not apply to this model"):
        dx.apply(model, "deepnorm")
    other, _ = _zoo("plain_mlp", depth=12, width=16, activation="linear", slope=1.5, sigma_w=1.0)
    with pytest.raises(InputError, match="the model that was diagnosed"):
        dx.apply(other)


class _Fake(Treatment):
    """A treatment for the ranking tests: fits every diagnosis, blocked or not as told."""

    title = "fake"
    source = "none"
    promise = "nothing"

    def __init__(self, name, treats, blocked=None, keeps=True):
        self.name, self.treats, self._blocked, self._keeps = name, treats, blocked, keeps

    def applies(self, case):
        return f"{self.name} fits"

    def blocked(self, case):
        return self._blocked

    def apply(self, model, case):
        import copy

        return copy.deepcopy(model)

    def kept(self, before, after):
        return self._keeps


def test_ranking_unblocked_then_severity_then_registry_order(monkeypatch):
    model, x = _zoo("plain_mlp", depth=20, width=64, activation="tanh", sigma_w=4.0)
    dx = diagnose(model, x)
    kinds = {f.kind: f.severity for f in dx.findings}
    assert kinds["exploding"] > kinds["saturation"]
    fakes = [
        _Fake("a-sat", ("saturation",)),
        _Fake("b-blocked", ("exploding",), blocked="no blocks"),
        _Fake("c-exp", ("exploding",)),
        _Fake("d-exp", ("exploding",)),
    ]
    monkeypatch.setattr("depthscope.doctor._diagnosis.list_treatments", lambda: fakes)
    ranked = prescribe(dx.case)
    assert [p.name for p in ranked] == ["c-exp", "d-exp", "a-sat", "b-blocked"]
    assert ranked[-1].blocked == "no blocks"


def test_best_skips_a_prescription_that_breaks_its_promise(monkeypatch):
    model, x = _zoo("plain_mlp", depth=12, width=16, activation="linear", slope=1.5, sigma_w=1.0)
    fakes = [_Fake("broken", ("exploding",), keeps=False), _Fake("works", ("exploding",))]
    monkeypatch.setattr("depthscope.doctor._diagnosis.list_treatments", lambda: fakes)
    monkeypatch.setattr("depthscope.doctor._diagnosis.get_treatment", {t.name: t for t in fakes}.__getitem__)
    dx = diagnose(model, x)
    chosen, treated, report = dx.best(model)
    assert chosen.name == "works" and isinstance(report, ds.Report)
    fakes[1]._keeps = False
    with pytest.warns(DoctorWarning, match="no prescription kept its promise"):
        chosen, _, _ = dx.best(model)
    assert chosen.name == "broken"  # the first, with the warning
    fakes[0]._blocked = fakes[1]._blocked = "cannot"
    dx = diagnose(model, x)
    with pytest.raises(InputError, match="no prescription can be applied.*broken: cannot"):
        dx.apply(model)
    with pytest.raises(InputError, match="'works' cannot be applied to this model: cannot"):
        dx.apply(model, "works")


def test_shape_changing_blocks_get_findings_and_reasons():
    torch.manual_seed(0)
    widths = [8, 16, 12, 20, 10, 24, 14, 18, 9, 22, 11]
    model = nn.Sequential(*[nn.Sequential(nn.Linear(a, b), nn.Sigmoid()) for a, b in zip(widths, widths[1:])])
    x = torch.randn(BATCH, 8, generator=torch.Generator().manual_seed(0))
    dx = diagnose(model, x)
    assert dx.findings[0].kind == "vanishing"
    assert any("rezero" in n and "shape" in n for n in dx.notes)  # the wrapping that cannot be done, and why
    assert "rezero" not in [p.name for p in dx.prescriptions]


def test_training_mode_is_restored_and_buffers_untouched():
    model, x = _zoo("resnet56", width=0.25, input_size=8)
    model.train()
    before = state(model)
    with pytest.warns(ProbeWarning, match="BatchNorm2d in training mode"):
        dx = diagnose(model, x)
    assert model.training and all(m.training for m in model.modules())
    assert unchanged(model, before)  # running statistics included
    assert any(f.kind == "batchnorm-branches" for f in dx.findings)


def test_small_batch_note():
    model, x = _zoo("resnet_mlp", batch=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dx = diagnose(model, x)
    assert any("dead ReLU units not judged" in n for n in dx.notes)
    assert isinstance(dx, Diagnosis)


def test_registry_is_what_diagnose_consults():
    assert len(list_treatments()) >= 8


def test_a_hugging_face_model_is_diagnosed():
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=3, num_attention_heads=2, intermediate_size=32)
    model = BertModel(config).eval()
    ids = torch.randint(0, 50, (2, 8), generator=torch.Generator().manual_seed(0))
    dx = diagnose(model, ids)
    assert any("encoder.layer.2" in name for name in dx.report.column("name"))
    assert dx.healthy  # BERT's 0.02-scale init leaves every layer close to the identity
