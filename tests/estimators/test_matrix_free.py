"""The matrix-free route's Lanczos groups: steps cut by working set, the same numbers in any grouping."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import depthscope as ds
import depthscope.estimators._matrix_free as mf
from depthscope.estimators import LinearizedChain, matrix_free_stats
from depthscope.estimators._tape import record


def _lin(widths=(8, 8, 64, 64, 8), batch=2, seed=0) -> LinearizedChain:
    torch.manual_seed(seed)
    steps = [nn.Sequential(nn.Linear(a, b), nn.Tanh()) for a, b in zip(widths, widths[1:])]
    return LinearizedChain(ds.Chain(steps), torch.randn(batch, widths[0]))


def test_a_tape_counts_its_constants_once_and_its_states():
    lin = nn.Linear(6, 5)
    x = torch.randn(3, 6, requires_grad=True)
    _, tape, _ = record(lambda t: torch.tanh(lin(t)) + lin(t), x)
    params = (6 * 5 + 5) * 4  # weight and bias read twice, counted once
    assert tape.constant_bytes == params
    # the input, two linear outputs, tanh and the sum: five states of the batch
    assert tape.node_bytes == (3 * 6 + 4 * 3 * 5) * 4
    assert tape.working_set(2) == params + 2 * tape.node_bytes


def test_groups_are_consecutive_and_within_the_budget(monkeypatch):
    lin = _lin()
    sizes = {k: lin.working_set(k, 1) for k in lin.steps}
    assert all(s is not None for s in sizes.values())
    budget = sizes[1] + sizes[2]
    monkeypatch.setattr(mf, "LOCKSTEP_BYTES", budget)
    groups = mf.lockstep_groups(lin, lin.steps, 1)
    assert [k for g in groups for k in g] == lin.steps
    for g, after in zip(groups, groups[1:]):  # each group is full: its successor's first step did not fit
        assert sum(sizes[k] for k in g) <= budget < sum(sizes[k] for k in g) + sizes[after[0]]
    assert 1 < len(groups) < len(lin.steps)
    monkeypatch.setattr(mf, "LOCKSTEP_BYTES", 0)
    assert mf.lockstep_groups(lin, lin.steps, 1) == [[k] for k in lin.steps]
    monkeypatch.setattr(mf, "LOCKSTEP_BYTES", 2**40)
    assert mf.lockstep_groups(lin, lin.steps, 1) == [lin.steps]


def test_a_step_without_a_tape_runs_alone(monkeypatch):
    lin = _lin()
    monkeypatch.setattr(mf, "LOCKSTEP_BYTES", 2**40)
    monkeypatch.setattr(lin, "working_set", lambda k, t: None if k == 2 else 1)
    assert mf.lockstep_groups(lin, lin.steps, 1) == [[0, 1], [2], [3]]


@pytest.mark.parametrize("with_min", [False, True])
def test_the_statistics_do_not_depend_on_the_grouping(monkeypatch, with_min):
    lin = _lin(widths=(8, 8, 8, 12, 12, 8))
    middle = lin.working_set(0, 2) * 2  # about two steps a group
    results, counts = [], []
    for budget in (0, middle, 2**40):
        monkeypatch.setattr(mf, "LOCKSTEP_BYTES", budget)
        counts.append(len(mf.lockstep_groups(lin, lin.steps, 2 if with_min else 1)))
        with torch.no_grad():
            results.append(matrix_free_stats(lin, lin.steps, 16, torch.Generator().manual_seed(0), with_min=with_min))
    assert counts[0] == len(lin.steps) > counts[1] > counts[2] == 1
    for other in results[1:]:
        for k in lin.steps:
            a, b = results[0][k], other[k]
            assert a.fro == b.fro
            assert a.sigma_max == pytest.approx(b.sigma_max, rel=1e-5)
            if with_min and lin.n_in[k] == lin.n_out[k]:
                assert a.identity_gap == pytest.approx(b.identity_gap, rel=1e-5)


def test_a_sparse_constant_is_recorded_and_not_counted():
    torch.manual_seed(0)
    A = (torch.randn(4, 4) * (torch.rand(4, 4) > 0.5)).double().to_sparse()
    chain = ds.Chain([("s", lambda h: torch.tanh(h @ A))])
    x = torch.randn(2, 4, dtype=torch.float64)
    lin = LinearizedChain(chain, x)
    assert lin.route(0) == "tape"
    assert lin.working_set(0, 1) == 3 * 2 * 4 * 8  # the input, the product and tanh; A has no storage
    J = torch.func.jacrev(lambda h: torch.tanh(h @ A.to_dense()))(x[:1]).reshape(4, 4)
    assert torch.allclose(lin.explicit(0)[0], J, atol=1e-12)
