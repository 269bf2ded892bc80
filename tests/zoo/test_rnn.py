"""Recurrent nets as chains over time: structure, exact Jacobians, initialisation."""

from __future__ import annotations

import pytest
import torch
from torch.func import jacrev

import depthscope
import depthscope.dynamics
from depthscope.zoo import rnn

# Exact oracles in float64: the same products evaluated in another order agree to ~1e-15 relative;
# 1e-12 leaves room for T = 12 matrix products.
F64_RTOL = 1e-12
F64_ATOL = 1e-12
# Parameters are stored in float32: exact radii and orthogonality hold to float32 rounding.
F32_TOL = 1e-5


def _compose(fns, h):
    for f in fns:
        h = f(h)
    return h


@pytest.mark.parametrize("name", ["rnn_linear", "rnn_tanh"])
def test_rnn_chain_is_stem_time_steps_readout(name):
    spec = depthscope.model_spec(name)
    assert spec.family == "rnn"
    torch.manual_seed(0)
    model = spec.factory(**spec.tiny)
    x = model.example_input(3, torch.Generator().manual_seed(1))
    T = spec.tiny["seq_len"]
    assert x.shape == (3, T, spec.tiny["input_dim"])
    chain = depthscope.Chain.from_module(model, example=x)
    assert chain.names == ["stem", *[f"t={t}" for t in range(1, T + 1)], "readout"]
    states = chain.states(x)
    assert all(s.shape == (3, spec.tiny["hidden"]) for s in states[1:-1])
    torch.testing.assert_close(states[-1], model(x), rtol=0, atol=0)
    # h_0 is the learned initial state, the same for every example.
    torch.testing.assert_close(states[1], model.init_state.h0.expand(3, -1), rtol=0, atol=0)


def test_time_step_t_consumes_input_t():
    torch.manual_seed(2)
    model = rnn.rnn_tanh(hidden=6, input_dim=2, seq_len=4).double()
    x = model.example_input(2, torch.Generator().manual_seed(3)).double()
    states = depthscope.Chain.from_module(model, example=x).states(x)
    cell = model.cell
    for t in range(1, 5):
        expected = torch.tanh(states[t] @ cell.W.weight.T + x[:, t - 1] @ cell.U.weight.T + cell.b)
        torch.testing.assert_close(states[t + 1], expected, rtol=F64_RTOL, atol=F64_ATOL)


def test_chain_steps_need_the_input():
    model = rnn.rnn_linear(**depthscope.model_spec("rnn_linear").tiny)
    with pytest.raises(depthscope.InputError, match="example=x"):
        model.chain_steps(None)


@pytest.mark.parametrize("init", rnn.RNN_INITS)
def test_linear_rnn_end_to_end_jacobian_is_w_to_the_t(init):
    hidden, T = 6, 12
    torch.manual_seed(4)
    model = rnn.rnn_linear(hidden=hidden, input_dim=3, seq_len=T, g=1.1, init=init).double()
    x = model.example_input(1, torch.Generator().manual_seed(5)).double()
    steps = [f for _, f in model.time_steps(x)]
    h0 = model.init_state(x)
    jac = jacrev(lambda h: _compose(steps, h))(h0).reshape(hidden, hidden)
    w = model.cell.W.weight.detach()
    torch.testing.assert_close(jac, torch.linalg.matrix_power(w, T), rtol=F64_RTOL, atol=F64_ATOL)


def test_tanh_rnn_step_jacobian_is_diag_derivative_times_w():
    torch.manual_seed(6)
    model = rnn.rnn_tanh(hidden=7, input_dim=2, seq_len=3, g=1.5).double()
    x = model.example_input(1, torch.Generator().manual_seed(7)).double()
    step = model.time_steps(x)[1][1]
    h = torch.randn(1, 7, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    jac = jacrev(step)(h).reshape(7, 7)
    ht = step(h).reshape(7)
    expected = torch.diag(1 - ht**2) @ model.cell.W.weight.detach()
    torch.testing.assert_close(jac, expected, rtol=F64_RTOL, atol=F64_ATOL)


def test_recurrent_weight_gains():
    n, g = 200, 1.3
    gen = torch.Generator().manual_seed(9)
    radius = {
        init: torch.linalg.eigvals(rnn.recurrent_weight(n, g, init, gen).double()).abs() for init in rnn.RNN_INITS
    }
    # Circular law: the finite-N spectral radius of N(0, g^2/N) matrices is g (1 + O(N^-1/2)).
    assert radius["gaussian"].max().item() == pytest.approx(g, rel=0.1)
    assert radius["spectral"].max().item() == pytest.approx(g, rel=F32_TOL)
    torch.testing.assert_close(radius["orthogonal"], torch.full((n,), g, dtype=torch.float64), rtol=F32_TOL, atol=0)
    q = rnn.recurrent_weight(n, g, "orthogonal", gen).double()
    torch.testing.assert_close(q.T @ q, g**2 * torch.eye(n, dtype=torch.float64), rtol=0, atol=F32_TOL)
    with pytest.raises(ValueError, match="unknown init"):
        rnn.recurrent_weight(4, 1.0, "xavier")


@pytest.mark.parametrize("g, vanishes", [(0.8, True), (1.25, False)])
def test_linear_rnn_gradient_vanishes_or_explodes_with_the_radius(g, vanishes):
    # Claim V9 at exact spectral radius g: ||W^T||_2 >= rho^T, and -> ~rho^T for large T.
    n, T = 16, 40
    w = rnn.recurrent_weight(n, g, "spectral", torch.Generator().manual_seed(10)).double()
    chain = depthscope.dynamics.linear_map(w, T)
    assert len(chain) == T
    jac = jacrev(chain)(torch.randn(1, n, dtype=torch.float64)).reshape(n, n)
    torch.testing.assert_close(jac, torch.linalg.matrix_power(w, T), rtol=F64_RTOL, atol=F64_ATOL)
    top = torch.linalg.svdvals(jac)[0].item()
    if vanishes:
        assert top < 1e-2  # 0.8^40 = 1.3e-4, times a transient factor
    else:
        assert top > 1e2  # 1.25^40 = 7.5e3


def test_rate_network_chain_and_coupling():
    spec = depthscope.model_spec("rate_network")
    assert spec.family == "rnn"
    torch.manual_seed(11)
    model = spec.factory(**spec.tiny)
    x = model.example_input(2, torch.Generator().manual_seed(12))
    chain = depthscope.Chain.from_module(model, example=x)
    K = spec.tiny["steps"]
    assert chain.names == ["stem", *[f"t={k}" for k in range(1, K + 1)], "head"]
    torch.testing.assert_close(chain(x), model(x), rtol=0, atol=0)
    n, g = 400, 2.0
    j = depthscope.dynamics.rate_coupling(n, g, seed=13)
    assert torch.equal(torch.diagonal(j), torch.zeros(n))
    off = j[~torch.eye(n, dtype=torch.bool)]
    # 159,600 samples: the sample variance is within ~0.4% (one sigma) of g^2/N; 3% is > 7 sigma.
    assert off.var().item() == pytest.approx(g**2 / n, rel=0.03)


def test_rate_network_euler_step_jacobian():
    n, g, dt = 9, 2.0, 0.1
    torch.manual_seed(14)
    model = rnn.rate_network(N=n, g=g, dt=dt, steps=3).double()
    h = torch.randn(1, n, generator=torch.Generator().manual_seed(15), dtype=torch.float64) * 2
    jac = jacrev(model.step)(h).reshape(n, n)
    j = model.step.J.detach()
    expected = (1 - dt) * torch.eye(n, dtype=torch.float64) + dt * j @ torch.diag(1 - torch.tanh(h[0]) ** 2)
    torch.testing.assert_close(jac, expected, rtol=F64_RTOL, atol=F64_ATOL)
    # The free-standing chain has the same steps.
    chain = depthscope.dynamics.rate_chain(j, dt, 3)
    torch.testing.assert_close(chain(h), model(h), rtol=F64_RTOL, atol=F64_ATOL)
    with pytest.raises(ValueError, match="dt"):
        rnn.rate_network(N=4, dt=1.5)


@pytest.mark.parametrize("name", ["rnn_linear", "rnn_tanh", "rate_network"])
def test_every_parameter_gets_a_finite_gradient(name):
    spec = depthscope.model_spec(name)
    torch.manual_seed(16)
    model = spec.factory(**spec.tiny)
    model(model.example_input(2, torch.Generator().manual_seed(17))).square().sum().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
