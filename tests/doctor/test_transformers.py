"""The issue's transformer checks: a 48-layer Post-LN stack and a 24-layer BERT, diagnosed, treated
with DeepNorm or Pre-LN, and re-probed: the input gradient within a factor e of the top layer's."""

from __future__ import annotations

import pytest
import torch

import depthscope as ds
from depthscope import doctor

# |log(input gradient / top gradient)| at most 1: within a factor e.
WITHIN_E = 1.0


def _treated(model, x, dx, name):
    case = doctor.Case(dx.report, dx.findings, ds.Chain.from_module(model, None, example=x), x)
    return doctor.get_treatment(name).apply(model, case)


@pytest.mark.parametrize("name", ["deepnorm", "pre-ln"])
def test_postln_48_layers_is_found_contracting_and_treated(name):
    # At d_model 16 the 48-layer Post-LN stack's gradient ratio (input / top, log) depends on the
    # draw: -0.7, -1.1, -4.3, -1.9 for seeds 0-3, a contraction finding on seeds 1-3. This is the
    # seed-2 draw, where it vanishes. At the zoo's default width it does not contract (log ratio 0.0:
    # no finding, nothing prescribed), which benchmarks/doctor_cases.py shows.
    torch.manual_seed(2)
    model = ds.create_model("transformer_postln", depth=48, d_model=16, n_heads=2, d_ff=32).eval()
    x = model.example_input(2, torch.Generator().manual_seed(0))
    dx = ds.diagnose(model, x)
    kinds = {f.kind for f in dx.findings}
    assert "postln-contraction" in kinds and "vanishing" in kinds
    assert doctor.gradient_log_ratio(dx.report) < -WITHIN_E
    assert name in [p.name for p in dx.prescriptions]
    after = ds.probe(_treated(model, x, dx, name), x)
    assert abs(doctor.gradient_log_ratio(after)) <= WITHIN_E


def test_bert_24_layers_from_a_config():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.BertConfig(
        vocab_size=50, hidden_size=32, num_hidden_layers=24, num_attention_heads=2, intermediate_size=64
    )
    model = transformers.BertModel(cfg).eval()
    ids = torch.randint(0, 50, (1, 8), generator=torch.Generator().manual_seed(0))
    dx = ds.diagnose(model, ids)
    # Hugging Face's 0.02 initialisation keeps a 24-layer BERT's gradient within e at init: the
    # doctor says so (no gain finding) rather than inventing one; DeepNorm keeps it there.
    assert not {"vanishing", "exploding"} & {f.kind for f in dx.findings}
    assert abs(doctor.gradient_log_ratio(dx.report)) <= WITHIN_E
    after = ds.probe(_treated(model, ids, dx, "deepnorm"), ids)
    assert abs(doctor.gradient_log_ratio(after)) <= WITHIN_E


def test_an_activation_without_a_critical_point_is_named_not_raised():
    torch.manual_seed(0)
    model = ds.create_model("plain_mlp", depth=12, width=16, activation="relu", sigma_w=0.5).eval()
    for block in model.blocks:  # GELU has no sigma_w with chi_1 = 1 at sigma_b = 0
        block.act = torch.nn.GELU()
    x = torch.randn(4, 16, generator=torch.Generator().manual_seed(0))
    dx = ds.diagnose(model, x)
    assert "criticality" not in [p.name for p in dx.prescriptions if p.blocked is None]
