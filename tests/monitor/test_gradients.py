"""The monitor's per-block numbers against autograd's own (retain_grad on block outputs)."""

from __future__ import annotations

import copy

import numpy as np
import torch
from tests.monitor.models import digits_batches, oracle_step, residual_mlp, sigmoid_mlp, train
from torch import nn

import depthscope as ds
from depthscope.monitor import VANISHING_BELOW

# The monitor's norms come from the very tensors autograd hands back, summed in float32: they
# agree with the float64 norms of the same float32 gradients to float32 rounding (~1e-7).
RTOL = 1e-6
# Forward statistics are float32 per-channel sums turned into variances: a few float32 roundings.
STATS_RTOL = 1e-4
STEPS = 3


def _compare(make, quantities, rtol):
    batches = digits_batches(STEPS)
    model = make()
    twin = copy.deepcopy(model)
    mon = ds.Monitor(model, example=batches[0][0][:4], console=False)
    train(model, mon, batches)
    mon.close()
    opt = torch.optim.SGD(twin.parameters(), lr=0.1)
    for s, (x, y) in enumerate(batches):
        want = oracle_step(twin, x, y)
        opt.step()
        opt.zero_grad()
        for q in quantities:
            np.testing.assert_allclose(mon.history.array(q)[s], want[q], rtol=rtol, err_msg=f"{q} at step {s}")
    return mon


def test_sigmoid_mlp_depth30_norms_equal_autograd_and_vanishing_alert_names_blocks():
    mon = _compare(sigmoid_mlp, ("grad_norm", "param_grad_norm"), RTOL)
    h = mon.history
    assert h.blocks == tuple(f"blocks.{k}" for k in range(30))
    g = h.array("grad_norm")
    ratio = h.array("grad_ratio")
    np.testing.assert_allclose(ratio[:, :-1], g[:, :-1] / g[:, 1:], rtol=1e-12)
    assert np.isnan(ratio[:, -1]).all()
    np.testing.assert_allclose(h.array("end_to_end"), g[:, 0] / g[:, -1], rtol=1e-12)
    # The vanishing alert names exactly the blocks below the band at step 0, once.
    expected = tuple(f"blocks.{k}" for k in np.flatnonzero(g[0] / g[0, -1] < VANISHING_BELOW))
    assert 0 < len(expected) < 30
    vanishing = [a for a in h.alerts if a.kind == "vanishing"]
    assert vanishing[0].step == 0 and vanishing[0].blocks == expected
    assert "blocks.0" in vanishing[0].message
    assert [a.kind for a in h.alerts if a.step == 0].count("gain_low") == 1


def test_forward_statistics_equal_direct_computation():
    _compare(residual_mlp, ("grad_norm", "param_grad_norm", "act_mean_sq", "act_var", "branch_var"), STATS_RTOL)


def test_update_ratio_is_relative_change_made_by_the_optimiser():
    batches = digits_batches(3)
    model = residual_mlp()
    mon = ds.Monitor(model, example=batches[0][0], console=False)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    before, after = [], []
    for x, y in batches:
        nn.functional.cross_entropy(model(x), y).backward()
        mon.step()
        before.append([torch.cat([p.detach().reshape(-1) for p in b.parameters()]).clone() for b in model.blocks])
        opt.step()
        opt.zero_grad()
        after.append([torch.cat([p.detach().reshape(-1) for p in b.parameters()]).clone() for b in model.blocks])
    mon.close()  # measures the last step's update
    got = mon.history.array("update_ratio")
    want = np.array(
        [[(a - b).norm().item() / b.norm().item() for a, b in zip(aa, bb)] for aa, bb in zip(after, before)]
    )
    np.testing.assert_allclose(got, want, rtol=1e-5)
    assert np.isnan(mon.history.array("loss")).all()  # no loss passed


def test_every_k_measures_only_every_kth_step_and_skips_hook_work():
    batches = digits_batches(7, batch=8)
    model = residual_mlp()
    mon = ds.Monitor(model, every=3, example=batches[0][0], console=False)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    registered = []
    for x, y in batches:
        out = model(x)
        # On skipped steps the taps register no tensor hook: the block outputs carry none.
        registered.append(mon.taps.forward_seen)
        nn.functional.cross_entropy(out, y).backward()
        record = mon.step()
        assert (record is not None) == ((mon.step_count - 1) % 3 == 0)
        opt.step()
        opt.zero_grad()
    mon.close()
    assert registered == [True, False, False, True, False, False, True]
    assert mon.history.steps.tolist() == [0, 3, 6]
    assert np.isfinite(mon.history.array("update_ratio")).all()  # each measured at the following step
