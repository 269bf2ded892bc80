"""Bad input and out-of-order use: clear depthscope errors that say what and where."""

from __future__ import annotations

import pytest
import torch
from tests.monitor.models import digits_batches, residual_mlp
from torch import nn

import depthscope as ds
from depthscope.monitor import MonitorError


def _x():
    return digits_batches(1, batch=4)[0][0]


def test_model_without_blocks():
    with pytest.raises(ds.NoBlocksError):
        ds.Monitor(nn.Linear(64, 10), example=_x(), console=False)


def test_sequential_of_stem_and_head_only_has_no_blocks():
    model = nn.Sequential()
    model.add_module("stem", nn.Linear(64, 8))
    model.add_module("head", nn.Linear(8, 10))
    with pytest.raises(ds.NoBlocksError, match="no blocks to monitor"):
        ds.Monitor(model, example=_x(), console=False)


@pytest.mark.parametrize("every", [0, -1, 2.5, True, "3", None])
def test_every_must_be_a_positive_integer(every):
    with pytest.raises(ds.InputError, match="every"):
        ds.Monitor(residual_mlp(), every=every, example=_x(), console=False)


def test_probe_every_needs_probe_input_and_on_nonfinite_is_checked():
    with pytest.raises(ds.InputError, match="probe_input"):
        ds.Monitor(residual_mlp(), probe_every=10, example=_x(), console=False)
    with pytest.raises(ds.InputError, match="probe_every"):
        ds.Monitor(residual_mlp(), probe_every=0, probe_input=_x(), console=False)
    with pytest.raises(ds.InputError, match="on_nonfinite"):
        ds.Monitor(residual_mlp(), on_nonfinite="ignore", example=_x(), console=False)
    with pytest.raises(ds.InputError, match="nn.Module"):
        ds.Monitor(lambda x: x, example=_x())


def test_step_before_any_forward_or_backward():
    model = residual_mlp()
    mon = ds.Monitor(model, example=_x(), console=False)
    with pytest.raises(MonitorError, match="no forward pass"):
        mon.step()
    model(_x()).sum()  # a forward, no backward
    with pytest.raises(MonitorError, match="before any backward"):
        mon.step()
    with torch.no_grad():  # validation passes do not count as the step's forward
        model(_x())
    with pytest.raises(MonitorError, match="no forward pass"):
        mon.step()


def test_step_after_close():
    model = residual_mlp()
    mon = ds.Monitor(model, example=_x(), console=False)
    mon.close()
    with pytest.raises(MonitorError, match="after close"):
        mon.step()
    model(_x()).sum().backward()  # the hooks are gone: training goes on untouched


def test_unwritable_log_dir(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    with pytest.raises(ds.DepthscopeError, match="a_file"):
        ds.Monitor(residual_mlp(), example=_x(), log_dir=blocker / "run", console=False)


def test_model_needing_an_example():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.ModuleList(nn.Sequential(nn.Linear(64, 64), nn.Tanh()) for _ in range(3))

        def forward(self, x):
            for layer in self.layers:
                x = layer(x)
            return x

    with pytest.raises(ds.ChainError, match="example="):
        ds.Monitor(Net(), console=False)
    assert ds.Monitor(Net(), example=_x(), console=False).blocks == ("layers.0", "layers.1", "layers.2")
