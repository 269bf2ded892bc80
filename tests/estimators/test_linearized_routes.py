"""`LinearizedChain`'s choice between a step's tape and autograd: which steps record tapes, the
check of every tape against autograd, and identical probes through either route."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from tests.estimators.tape_layers import exact_jacobian

import depthscope as ds
from depthscope.estimators import ROUTE_AUTOGRAD, ROUTE_TAPE, LinearizedChain
from depthscope.estimators._tape import layers

D = torch.float64
W = torch.randn(12, 12, dtype=D, generator=torch.Generator().manual_seed(3))


def test_chain_routes_cnn_and_transformer_steps_to_tapes_and_the_rest_to_autograd():
    torch.manual_seed(0)
    cnn = ds.create_model("resnet20", width=0.25).eval()
    lin = LinearizedChain(ds.Chain.from_module(cnn), cnn.example_input(1, torch.Generator().manual_seed(0)))
    assert set(lin.routes.values()) == {ROUTE_TAPE}
    tr = ds.create_model("transformer_postln", **ds.model_spec("transformer_postln").tiny).eval()
    lin = LinearizedChain(ds.Chain.from_module(tr), tr.example_input(1, torch.Generator().manual_seed(0)))
    assert set(lin.routes.values()) == {ROUTE_TAPE}  # softmax and LayerNorm have rules
    # A call with no rule keeps autograd, named in the reason; attention there runs on a kernel
    # with a double backward (float32 on a CPU would otherwise take the flash kernel, which has none).
    w = W.float()

    def step(h):
        q = (h @ w.T.to(h.dtype)).unflatten(-1, (3, 4))  # (B, 3 tokens, 4)
        return torch.cumsum(F.scaled_dot_product_attention(q, q, q).flatten(1), 1)

    x = torch.randn(5, 12)
    lin = LinearizedChain(ds.Chain([step]), x)
    assert lin.routes == {0: ROUTE_AUTOGRAD} and "cumsum" in lin.route_reasons[0]
    J = exact_jacobian(step, x.double()).float()  # on the math kernel: vmap has no batching rule for flash
    v = torch.randn(1, *x.shape)
    assert torch.allclose(lin.jvp(0, v)[0], torch.einsum("bmn,bn->bm", J, v[0]), atol=1e-5)


def test_a_wrong_tape_is_caught_and_the_step_falls_back(monkeypatch):
    """The check against autograd is real: a tape whose ReLU mask is wrong is refused."""
    monkeypatch.setitem(layers.POINTWISE_FAST, torch.relu, lambda x: torch.ones_like(x))
    chain = ds.Chain([lambda h: torch.relu(h @ W.T)])
    x = torch.randn(3, 12, dtype=D)
    lin = LinearizedChain(chain, x)
    assert lin.route(0) == ROUTE_AUTOGRAD and "differs from autograd" in lin.route_reasons[0]
    J = exact_jacobian(lambda h: torch.relu(h @ W.T), x)
    assert torch.allclose(lin.explicit(0), J)  # the fallback is exact


def test_one_check_per_signature_and_every_failure_is_checked(monkeypatch):
    """Tapes that replay the same calls on the same shapes are checked once; a tape that fails
    does not vouch for the next one of its signature, which is checked (and fails) itself."""
    torch.manual_seed(0)
    cnn = ds.create_model("resnet20", width=0.25).eval()
    x = cnn.example_input(1, torch.Generator().manual_seed(0))
    checked = []
    original = LinearizedChain._check_tape

    def counting(self, k, tape):
        checked.append(tape.signature)
        return original(self, k, tape)

    monkeypatch.setattr(LinearizedChain, "_check_tape", counting)
    lin = LinearizedChain(ds.Chain.from_module(cnn), x)
    signatures = {lin._tape[k].signature for k in lin.steps}
    assert len(checked) == len(signatures) < len(lin.steps)
    checked.clear()
    monkeypatch.setitem(layers.POINTWISE_FAST, torch.relu, lambda x: torch.ones_like(x))
    lin = LinearizedChain(ds.Chain.from_module(cnn), x)
    relu_steps = [k for k in lin.steps if lin.route(k) == ROUTE_AUTOGRAD]
    assert len(relu_steps) >= 9 and len(checked) == len(lin.steps)  # no signature was vouched for


def test_probe_is_the_same_through_tapes_and_through_autograd(monkeypatch):
    torch.manual_seed(0)
    m = ds.create_model("resnet20", width=0.25).double().eval()
    x = m.example_input(2, torch.Generator().manual_seed(0)).double()
    fast = ds.probe(m, x, lyapunov=4, method="matrix-free")
    monkeypatch.setattr("depthscope.estimators._linearized.record", lambda fn, x: (fn(x), None, "disabled"))
    slow = ds.probe(m, x, lyapunov=4, method="matrix-free")
    for a, b in zip(fast.blocks, slow.blocks):
        for field in ("local_rms", "local_sigma_max", "identity_gap", "cum_log_rms", "grad_log_norm"):
            va, vb = getattr(a, field), getattr(b, field)
            assert (va is None and vb is None) or va == pytest.approx(vb, rel=1e-9, abs=1e-12), field
    assert fast.lyapunov == pytest.approx(slow.lyapunov, rel=1e-9, abs=1e-12)
