"""The probe against closed forms: orthogonal chains, I + W, scalar chains, Fibonacci, sigmoid towers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import depthscope as ds

PHI = (1 + math.sqrt(5)) / 2


def _linear(W: torch.Tensor):
    return lambda h: h @ W.T


def test_orthogonal_chain_is_an_isometry(gen: torch.Generator) -> None:
    Q = torch.linalg.qr(torch.randn(16, 16, dtype=torch.float64, generator=gen))[0]
    chain = ds.Chain.repeat(_linear(Q), 30)
    rep = ds.probe(chain, torch.randn(2, 16, dtype=torch.float64, generator=gen), lyapunov=4)
    for b in rep.blocks:
        for v in (b.local_rms, b.local_sigma_max, b.local_sigma_min, b.grad_ratio):
            assert v == pytest.approx(1.0, abs=1e-6)
        assert b.cum_log_rms == pytest.approx(0.0, abs=1e-9)
    assert np.allclose(rep.lyapunov, 0.0, atol=1e-9)
    assert rep.verdict == "stable" and rep.depth_scale > 1e6


@pytest.mark.parametrize("eps", [0.05, 0.3])
def test_weyl_interval_for_identity_plus_small(eps: float, gen: torch.Generator) -> None:
    W = torch.randn(12, 12, dtype=torch.float64, generator=gen)
    W = W * (eps / torch.linalg.matrix_norm(W, 2))
    rep = ds.probe(ds.Chain([_linear(torch.eye(12, dtype=torch.float64) + W)]), torch.randn(1, 12, dtype=torch.float64))
    b = rep.blocks[0]
    assert b.identity_gap == pytest.approx(eps, rel=1e-2)
    assert 1 - eps - 1e-9 <= b.local_sigma_min <= b.local_sigma_max <= 1 + eps + 1e-9


@pytest.mark.parametrize("a", [0.5, 1.5])
def test_scalar_chain_exponent_is_log_a(a: float) -> None:
    rep = ds.probe(ds.Chain.repeat(lambda h: a * h, 40), torch.ones(1, 1, dtype=torch.float64), lyapunov=1)
    assert rep.lyapunov[0] == pytest.approx(math.log(a), abs=1e-12)
    assert rep.blocks[-1].cum_log_rms == pytest.approx(40 * math.log(a), abs=1e-9)


def test_fibonacci_chain_exponents() -> None:
    F = torch.tensor([[1.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
    # 600 steps keep the state below float64's overflow (phi^1475); the frame transient adds O(1/L)
    rep = ds.probe(ds.Chain.repeat(_linear(F), 600), torch.tensor([[1.0, 0.0]], dtype=torch.float64), lyapunov=2)
    assert rep.lyapunov[0] == pytest.approx(math.log(PHI), abs=5e-3)
    assert rep.lyapunov[1] == pytest.approx(-math.log(PHI), abs=5e-3)  # ln|psi| = -ln(phi)
    stream = ds.lyapunov(
        ds.Chain.repeat(_linear(F), 600), torch.tensor([[1.0, 0.0]], dtype=torch.float64), k=2, transient=60
    )
    assert stream.exponents.tolist() == pytest.approx([math.log(PHI), -math.log(PHI)], abs=1e-9)


def test_sigmoid_scalar_tower_gradient_is_x_prod_sigma_prime() -> None:
    L, x0 = 20, 0.7
    chain = ds.Chain.repeat(torch.sigmoid, L)
    rep = ds.probe(chain, torch.tensor([[x0]], dtype=torch.float64), loss=lambda out: out.sum(), lyapunov=0)
    z, logprod = x0, 0.0
    for _ in range(L):
        s = 1 / (1 + math.exp(-z))
        logprod += math.log(s * (1 - s))
        z = s
    # d f_L / d x_0 = prod sigma'(z_k); with w_1 the first weight, d f_L / d w_1 = x * that (V1)
    assert rep.input_grad_log_norm == pytest.approx(logprod, abs=1e-10)
    assert all(b.grad_ratio <= 0.25 for b in rep.blocks)  # V2: sigma' <= 1/4


def test_ten_thousand_steps_neither_underflow_nor_overflow() -> None:
    rep = ds.probe(ds.Chain.repeat(lambda h: 0.5 * h, 10_000), torch.ones(1, 1, dtype=torch.float64), lyapunov=1)
    assert rep.blocks[-1].cum_log_rms == pytest.approx(10_000 * math.log(0.5), rel=1e-12)
    assert rep.input_grad_log_norm == pytest.approx(10_000 * math.log(0.5), rel=1e-12)
    assert math.isfinite(rep.log_gain) and rep.verdict == "vanishing"
    assert rep.depth_scale == pytest.approx(1 / math.log(2), rel=1e-9)


@pytest.mark.parametrize(
    "kw, expected",
    [
        (dict(depth=50, width=32, activation="sigmoid"), "vanishing"),
        (dict(depth=20, width=32, activation="linear", slope=1.5, sigma_w=1.0, init="orthogonal"), "exploding"),
        (dict(depth=40, width=32, activation="linear", init="orthogonal"), "stable"),
    ],
)
def test_verdicts(kw: dict, expected: str) -> None:
    torch.manual_seed(0)
    model = ds.create_model("plain_mlp", **kw)
    rep = ds.probe(model, model.example_input(4, torch.Generator().manual_seed(0)), lyapunov=0)
    assert rep.verdict == expected
