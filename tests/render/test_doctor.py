"""The doctor's renderers: findings, prescriptions and before/after fit 80 and 120 columns."""

from __future__ import annotations

import pytest
import torch
from rich.console import Console

import depthscope as ds
from depthscope.render import render_diagnosis, render_verification


def _case():
    torch.manual_seed(0)
    model = ds.create_model("plain_mlp", depth=30, width=32, activation="tanh", sigma_w=4.0).eval()
    x = model.example_input(8, torch.Generator().manual_seed(0))
    dx = ds.diagnose(model, x)
    treated = dx.apply(model, "rezero")
    return dx, ds.verify(model, treated, x)


@pytest.mark.parametrize("width", [80, 120])
def test_diagnosis_and_verification_fit_the_console(width: int) -> None:
    dx, v = _case()
    console = Console(width=width, record=True, force_terminal=False)
    render_diagnosis(dx, console)
    render_verification(v, console)
    text = console.export_text()
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= width
    for needle in ("exploding", "saturation", "blocks.", "rezero", "Schoenholz", "Before and after", "stable"):
        assert needle in text
    # long chains: the per-step table is cut in the middle, never dropped
    assert "..." in text and "blocks.29" in text and "blocks.0 " in text


def test_healthy_diagnosis() -> None:
    torch.manual_seed(0)
    model = ds.create_model("resnet_mlp", depth=4, width=16).eval()
    x = model.example_input(8, torch.Generator().manual_seed(0))
    console = Console(width=80, record=True, force_terminal=False)
    render_diagnosis(ds.diagnose(model, x), console)
    text = console.export_text()
    assert "healthy" in text and "Prescriptions" not in text
