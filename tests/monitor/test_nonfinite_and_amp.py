"""NaN/Inf reported where and when they appeared; norms unscaled under a GradScaler."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tests.monitor.models import digits_batches, residual_mlp, train
from torch import nn

import depthscope as ds

BLOCK, STEP = 2, 3  # where the NaN is injected


class _NanGrad(torch.autograd.Function):
    """Identity forward; the backward writes NaN into the gradient."""

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        return torch.full_like(g, float("nan"))


def _inject(model: nn.Module, phase: str) -> dict:
    """A forward hook on block BLOCK that, at training step STEP, writes NaN into its output
    (forward) or into the gradient flowing back through it (backward)."""
    state = {"step": 0}

    def hook(module, args, out):
        if state["step"] != STEP:
            return None
        if phase == "forward":
            return out.masked_fill(
                torch.zeros_like(out, dtype=torch.bool).index_fill_(1, torch.tensor([0]), True), float("nan")
            )
        return _NanGrad.apply(out)

    model.blocks[BLOCK].register_forward_hook(hook)
    return state


def _run(phase: str, on_nonfinite: str):
    model = residual_mlp(depth=5)
    batches = digits_batches(5, batch=8)
    # The monitor's hooks come first, so it sees block BLOCK's output before the injection.
    # Injected first, so that it is part of block BLOCK as the monitor sees it.
    state = _inject(model, phase)
    mon = ds.Monitor(model, example=batches[0][0], console=False, on_nonfinite=on_nonfinite)
    for s, (x, y) in enumerate(batches):
        state["step"] = s
        nn.functional.cross_entropy(model(x), y).backward()
        mon.step()
        model.zero_grad()  # no optimiser step: the NaN gradient must not reach the weights
    return mon


@pytest.mark.parametrize("phase", ["forward", "backward"])
def test_nan_in_block_k_at_step_s_is_reported_as_block_k_step_s(phase):
    mon = _run(phase, "warn")
    alerts = [a for a in mon.history.alerts if a.kind == "nonfinite"]
    assert len(alerts) == 1  # once per event
    a = alerts[0]
    # Forward: block BLOCK's output is the first NaN. Backward: block BLOCK's backward makes the
    # gradient at its input (block BLOCK-1's output) the highest NaN gradient.
    assert (a.step, a.blocks, a.phase) == (STEP, (f"blocks.{BLOCK}",), phase)
    assert f"step {STEP}" in a.message and f"blocks.{BLOCK}" in a.message and phase in a.message
    g = mon.history.array("grad_norm")
    assert np.isfinite(g[STEP + 1]).all() and not np.isfinite(g[STEP]).all()
    assert np.isfinite(g[STEP, BLOCK:]).all() == (phase == "backward")


@pytest.mark.parametrize("phase", ["forward", "backward"])
def test_on_nonfinite_raise_names_block_step_and_pass(phase):
    with pytest.raises(ds.NonFiniteError, match=f"step {STEP} in the {phase} pass") as info:
        _run(phase, "raise")
    assert info.value.step == BLOCK and info.value.step_name == f"blocks.{BLOCK}"


def test_grad_scaler_norms_are_logged_unscaled():
    batches = digits_batches(2, batch=8)
    plain_model, scaled_model = residual_mlp(), residual_mlp()
    plain = ds.Monitor(plain_model, example=batches[0][0], console=False)
    train(plain_model, plain, batches, lr=0.0)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
    mon = ds.Monitor(scaled_model, example=batches[0][0], console=False, scaler=scaler)
    for x, y in batches:
        loss = nn.functional.cross_entropy(scaled_model(x), y)
        scaler.scale(loss).backward()
        mon.step(loss)
        scaled_model.zero_grad()
    for q in ("grad_norm", "param_grad_norm"):
        np.testing.assert_allclose(mon.history.array(q), plain.history.array(q), rtol=1e-5)
    assert (mon.history.array("grad_scale") == 2.0**12).all()
    np.testing.assert_allclose(mon.history.array("loss"), plain.history.array("loss"), rtol=1e-6)


def test_params_already_unscaled_are_not_divided_again():
    x, y = digits_batches(1, batch=8)[0]
    model = residual_mlp()
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    mon = ds.Monitor(model, example=x, console=False, scaler=scaler)
    scaler.scale(nn.functional.cross_entropy(model(x), y)).backward()
    scaler.unscale_(opt)
    record = mon.step(params_unscaled=True)
    want = [torch.cat([p.grad.reshape(-1) for p in b.parameters()]).norm().item() for b in model.blocks]
    np.testing.assert_allclose(record.param_grad_norm, want, rtol=1e-5)
