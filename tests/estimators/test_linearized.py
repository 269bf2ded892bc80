"""`LinearizedChain` on awkward steps: in-place operations, non-finite Jacobians, batch coupling."""

from __future__ import annotations

import pytest
import torch
from tests.oracles import step_jacobians
from torch import nn

import depthscope as ds
from depthscope.estimators import LinearizedChain


def test_a_step_writing_into_its_input_leaves_the_states_alone() -> None:
    torch.manual_seed(0)
    lin = nn.Linear(3, 3).double()
    chain = ds.Chain([("lin", lin), ("relu_", nn.ReLU(inplace=True)), ("scale_", lambda h: h.mul_(3.0))])
    x = torch.randn(4, 3, dtype=torch.float64)
    L = LinearizedChain(chain, x)
    with torch.no_grad():
        h1 = lin(x)
    assert torch.equal(L.states[1], h1)  # not rectified in place by the step after it
    assert torch.equal(L.states[2], h1.relu())
    Js, _ = step_jacobians(ds.Chain([("lin", lin), ("relu", nn.ReLU()), ("scale", lambda h: h * 3.0)]), x)
    for k in range(3):
        assert torch.allclose(L.explicit(k), Js[k], atol=1e-12)


def _sqrt_abs_at_zero() -> tuple[ds.Chain, torch.Tensor]:
    chain = ds.Chain([("id", lambda h: h * 1.0), ("sqrt", lambda h: torch.sqrt(h.abs()))])
    x = torch.randn(2, 3, dtype=torch.float64)
    x[:, 1] = 0.0
    return chain, x


@pytest.mark.parametrize("use", ["explicit", "jvp", "vjp", "jvp_all", "vjp_all"])
def test_infinite_jacobian_entries_name_the_step(use: str) -> None:
    chain, x = _sqrt_abs_at_zero()
    L = LinearizedChain(chain, x)
    v = torch.randn(1, 2, 3, dtype=torch.float64)
    calls = {
        "explicit": lambda: L.explicit(1),
        "jvp": lambda: L.jvp(1, v),
        "vjp": lambda: L.vjp(1, v),
        "jvp_all": lambda: L.jvp_all([0, 1], [v, v]),
        "vjp_all": lambda: L.vjp_all([0, 1], [v, v]),
    }
    with pytest.raises(ds.NonFiniteError, match=r"Jacobian of step 1 \('sqrt'\)") as info:
        calls[use]()
    assert info.value.step == 1


def test_a_non_finite_tangent_does_not_blame_the_step() -> None:
    L = LinearizedChain(ds.Chain([("id", lambda h: h * 1.0)]), torch.randn(2, 3))
    v = torch.full((1, 2, 3), float("inf"))
    assert bool(L.jvp(0, v).isinf().all())
    assert torch.equal(L.jvp(0, torch.ones(1, 2, 3)), torch.ones(1, 2, 3))


def test_in_place_overwrite_on_a_tape_step_is_named_when_recorded() -> None:
    class Overwrites(nn.Module):
        def forward(self, h):
            o = torch.sigmoid(h)  # sigmoid's backward needs o, which the next line overwrites
            o.mul_(2)
            return o

    with pytest.raises(ds.InputError, match=r"step 1 \('bad'\) cannot be differentiated by autograd"):
        LinearizedChain(ds.Chain([("a", nn.Linear(3, 3)), ("bad", Overwrites())]), torch.randn(2, 3))


def test_in_place_overwrite_is_named_among_many_autograd_steps() -> None:
    class Overwrites(nn.Module):
        def forward(self, h):
            o = torch.exp(torch.special.erf(h))  # exp's backward needs o, which the next line overwrites
            o.mul_(2)
            return o

    # erf has no tape rule: every step takes the autograd route, and nothing is differentiated
    # before the products are asked for.
    chain = ds.Chain([("a", torch.special.erf), ("bad", Overwrites()), ("c", torch.special.erf)])
    L = LinearizedChain(chain, torch.randn(2, 3))
    assert set(L.routes.values()) == {"autograd"}
    u = torch.randn(1, 2, 3)
    with pytest.raises(ds.InputError, match=r"step 1 \('bad'\) cannot be differentiated by autograd"):
        L.vjp_all([0, 1, 2], [u, u, u])
    with pytest.raises(ds.InputError, match=r"step 1 \('bad'\)"):
        L.jvp(1, u)


def test_batch_coupling_is_checked_once_per_tape_signature() -> None:
    """The coupling check costs one extra forward of a step, and steps whose tape has the signature
    of an already checked one are not run again (cost stated in `LinearizedChain`)."""
    torch.manual_seed(0)
    runs = {"n": 0}

    class Counted(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 4)

        def forward(self, h):
            runs["n"] += 1
            return torch.tanh(self.lin(h))

    chain = ds.Chain([Counted() for _ in range(6)])
    L = LinearizedChain(chain, torch.randn(3, 4))
    assert set(L.routes.values()) == {"tape"}
    assert runs["n"] == 6 + 1  # six recordings and one check


def test_batch_coupling_check_runs_for_autograd_steps() -> None:
    chain = ds.Chain([("erf", torch.special.erf), ("norm", lambda h: torch.special.erf(h - h.mean(0)))])
    with pytest.raises(ds.ChainError, match=r"step 1 \('norm'\) mixes the examples"):
        LinearizedChain(chain, torch.randn(3, 4))


class _SparseProduct(nn.Module):
    """h -> tanh(h A^T) through torch.sparse.mm: no tape rule, and no batched double backward."""

    def __init__(self):
        super().__init__()
        self.A = torch.eye(4, dtype=torch.float64).to_sparse()

    def forward(self, h):
        return torch.tanh(torch.sparse.mm(self.A, h.T).T)


@pytest.mark.parametrize("use", ["jvp", "jvp_all"])
def test_a_step_autograd_cannot_batch_is_named(use: str) -> None:
    chain = ds.Chain([("dense", nn.Linear(4, 4).double()), ("sparse", _SparseProduct())])
    L = LinearizedChain(chain, torch.randn(2, 4, dtype=torch.float64))
    assert L.route(1) == "autograd"
    v = torch.randn(1, 2, 4, dtype=torch.float64)
    with pytest.raises(ds.InputError, match=r"step 1 \('sparse'\) cannot be differentiated by autograd's batched"):
        L.jvp(1, v) if use == "jvp" else L.jvp_all([0, 1], [v, v])
