"""Scheduled probes, history files, TensorBoard scalars and the plot."""

from __future__ import annotations

import csv
import math
import re

import numpy as np
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tests.monitor.models import digits_batches, residual_mlp, train
from torch import nn

import depthscope as ds
from depthscope.monitor import BLOCK_QUANTITIES, HISTORY_CSV, HISTORY_JSON, History


class _DropoutMLP(nn.Module):
    """Blocks with dropout and batch norm, so that the mode a probe runs in shows."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Linear(64, 16)
        self.blocks = nn.Sequential(
            *[nn.Sequential(nn.Linear(16, 16), nn.BatchNorm1d(16), nn.Tanh(), nn.Dropout(0.2)) for _ in range(3)]
        )
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)))


def test_probe_schedule_restores_mode_grads_and_random_state():
    torch.manual_seed(0)
    model = _DropoutMLP()
    batches = digits_batches(5, batch=8)
    probe_x = batches[0][0][:4]
    mon = ds.Monitor(model, blocks=["blocks.*"], probe_every=2, probe_input=probe_x, console=False)
    assert mon.blocks == ("blocks.0", "blocks.1", "blocks.2")
    model.train()
    bn = model.blocks[0][1]
    for x, y in batches:
        nn.functional.cross_entropy(model(x), y).backward()
        grads = [p.grad.clone() for p in model.parameters()]
        stats = bn.running_mean.clone()
        rng = torch.get_rng_state()
        mon.step()
        assert all(torch.equal(a, p.grad) for a, p in zip(grads, model.parameters()))
        assert torch.equal(stats, bn.running_mean) and torch.equal(rng, torch.get_rng_state())
        assert model.training and all(m.training for m in model.modules())
        model.zero_grad()
    mon.close()
    assert [p.step for p in mon.history.probes] == [0, 2, 4]
    # The probe's verdict is the one ds.probe gives for the model in eval mode.
    model.eval()
    want = ds.probe(model, probe_x)
    last = mon.history.probes[-1]
    assert last.verdict == want.verdict and math.isclose(last.log_gain, want.log_gain, rel_tol=1e-6)
    assert len(mon.history.records) == 5  # the probes' forwards were not counted as steps


def test_history_files_tensorboard_and_plot(tmp_path):
    batches = digits_batches(3, batch=8)
    model = residual_mlp(depth=3)
    log_dir = tmp_path / "run"
    mon = ds.Monitor(
        model, example=batches[0][0], probe_every=2, probe_input=batches[0][0][:2], log_dir=log_dir, console=False
    )
    train(model, mon, batches)
    history = mon.close()
    # JSON round trip, atomically written at close.
    back = History.load(log_dir / HISTORY_JSON)
    assert back.blocks == history.blocks and back.alerts == history.alerts and back.probes == history.probes
    for q in BLOCK_QUANTITIES:
        np.testing.assert_array_equal(back.array(q), history.array(q))
    assert np.isnan(back.array("grad_ratio")[:, -1]).all()
    # CSV: one row per step and block.
    with (log_dir / HISTORY_CSV).open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 3 * len(history.blocks)
    assert float(rows[4]["grad_norm"]) == history.records[1].grad_norm[1]
    # TensorBoard scalars, read back with tensorboard's own reader.
    events = list(log_dir.glob("events.out.tfevents.*"))
    assert len(events) == 1
    acc = EventAccumulator(str(log_dir))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    for k, name in enumerate(history.blocks):
        for q in BLOCK_QUANTITIES:
            # no ratio after the last block
            assert (f"depthscope/{q}/{name}" in tags) == (q != "grad_ratio" or k < len(history.blocks) - 1)
    assert {"depthscope/loss", "depthscope/end_to_end", "depthscope/probe/log_gain"} <= tags
    got = [e.value for e in acc.Scalars(f"depthscope/grad_norm/{history.blocks[0]}")]
    np.testing.assert_allclose(got, history.array("grad_norm")[:, 0], rtol=1e-6)
    assert [e.step for e in acc.Scalars(f"depthscope/update_ratio/{history.blocks[0]}")] == [0, 1, 2]
    fig = mon.plot()
    assert type(fig).__name__ == "Figure"
    image = fig.axes[0].images[0].get_array()
    assert image.shape == (len(history.blocks), 3)
    np.testing.assert_allclose(image, np.log10(history.array("grad_norm")).T)
    np.testing.assert_allclose(fig.axes[1].lines[0].get_ydata(), history.array("end_to_end"))


def test_console_prints_alerts_once(capsys):
    from tests.monitor.models import sigmoid_mlp

    batches = digits_batches(3, batch=8)
    model = sigmoid_mlp(depth=12)
    mon = ds.Monitor(model, example=batches[0][0], console=True)
    train(model, mon, batches)
    err = capsys.readouterr().err
    # the step-0 summary line, in its full or (on a narrow terminal) compact form
    assert err.count("vanishing gradient") == 1 and re.search(r"^depthscope (step )?0 ", err, re.M)
