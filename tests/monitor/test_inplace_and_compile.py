"""Blocks whose outputs are changed in place (torchvision's ResNets), and compiled models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from tests.monitor.models import residual_mlp
from torch import nn

import depthscope as ds
from depthscope.monitor import MonitorError

RTOL = 1e-6
# The monitor's hooks make dynamo break the graph at each block; wrapping the next graph's input,
# a non-leaf tensor, dynamo itself reads its .grad, which warns (a warning inside torch, harmless;
# pytest turns warnings into errors).
DYNAMO_GRAD_WARNING = "ignore:The .grad attribute of a Tensor that is not a leaf Tensor:UserWarning"


def _resnet18():
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None, num_classes=10)


def _retained_grad_norms(model: nn.Module, modules: list[nn.Module], x: torch.Tensor) -> list[float]:
    """dL/d(block output) through retain_grad on the tensors the blocks return."""
    outs = []
    handles = [m.register_forward_hook(lambda mod, a, out: (out.retain_grad(), outs.append(out))[0]) for m in modules]
    model(x).square().mean().backward()
    for h in handles:
        h.remove()
    return [o.grad.double().norm().item() for o in outs]


def test_torchvision_resnet18_blocks_with_inplace_additions():
    model = _resnet18()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    mon = ds.Monitor(model, example=x, console=False)
    assert mon.blocks == tuple(f"layer{i}.{j}" for i in range(1, 5) for j in range(2))
    model(x).square().mean().backward()
    record = mon.step()
    mon.close()
    model.zero_grad()
    want = _retained_grad_norms(model, [model.get_submodule(b) for b in mon.blocks], x)
    np.testing.assert_allclose(record.grad_norm, want, rtol=RTOL)
    assert np.isfinite(record.act_var).all() and np.isfinite(record.param_grad_norm).all()
    # Branch variance exists where the block keeps the shape and not where it downsamples.
    assert np.isnan(record.branch_var[2]) and np.isfinite(record.branch_var[1])


def test_full_backward_hooks_fail_on_these_blocks_which_is_why_tensor_hooks_are_used():
    model = _resnet18()
    model.layer1[0].relu.register_full_backward_hook(lambda *args: None)
    with pytest.raises(RuntimeError, match="inplace"):
        model(torch.randn(2, 3, 32, 32)).sum().backward()


def _train_compare(compiled_first: bool):
    torch._dynamo.reset()  # graphs compiled by earlier tests for the same classes must not be reused
    torch.manual_seed(0)
    eager = residual_mlp()
    twin = residual_mlp()
    x = torch.randn(8, 64, generator=torch.Generator().manual_seed(2))
    reference = ds.Monitor(eager, example=x, console=False)
    eager(x).square().mean().backward()
    want = reference.step().grad_norm
    # aot_eager runs dynamo's tracing and AOT autograd (where hooks matter) without needing a C
    # compiler; inductor adds code generation, which does not change how hooks are traced.
    compiled = torch.compile(twin, backend="aot_eager")
    if compiled_first:
        compiled(x).sum().backward()  # compiled once before the monitor exists
        twin.zero_grad()
    mon = ds.Monitor(compiled, example=x, console=False)
    compiled(x).square().mean().backward()
    return mon, want


@pytest.mark.filterwarnings(DYNAMO_GRAD_WARNING)
def test_hooks_registered_before_compilation_keep_working():
    mon, want = _train_compare(compiled_first=False)
    assert mon.wrapped == "compiled"
    np.testing.assert_allclose(mon.step().grad_norm, want, rtol=1e-5)


@pytest.mark.filterwarnings(DYNAMO_GRAD_WARNING)
def test_monitor_attached_after_a_compiled_call_says_it_cannot_see_the_blocks():
    # torch 2.14's dynamo does not guard on hooks added to submodules after compiling: the graph
    # compiled at the first call never calls them, and the monitor says so instead of logging nothing.
    mon, _ = _train_compare(compiled_first=True)
    with pytest.raises(MonitorError, match="compiled.*Create the Monitor before torch.compile"):
        mon.step()
