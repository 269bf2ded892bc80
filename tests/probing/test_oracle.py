"""The probe's estimators against exact oracles (float64, small random chains)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from tests.oracles import cumulative, step_jacobians
from torch import nn

import depthscope as ds

# Hutchinson with 16 Rademacher probes on these near-isometric residual steps: relative standard
# deviation of ||J||_F^2 is below 2%, so 5% on ||J||_F is a > 4-sigma bound.
HUTCHINSON_RTOL = 0.05
# Lanczos stops at a residual bound of 1% of lambda, i.e. <= 0.5% on sigma.
SIGMA_RTOL = 0.01


def _chain(kind: str, gen: torch.Generator) -> ds.Chain:
    torch.manual_seed(int(torch.randint(0, 1000, (1,), generator=gen)))
    if kind == "plain":
        layers = []
        for _ in range(5):
            layers += [nn.Linear(6, 6), nn.Tanh()]
        return ds.Chain([nn.Sequential(layers[i], layers[i + 1]) for i in range(0, 10, 2)])
    if kind == "residual":
        blocks = [
            ds.create_model("resnet_mlp", depth=5, width=6, activation="tanh").double().blocks[i] for i in range(5)
        ]
        return ds.Chain(blocks)
    if kind == "mixed":
        return ds.Chain(
            [
                nn.Sequential(nn.Linear(5, 7), nn.Tanh()),
                nn.Sequential(nn.Linear(7, 7), nn.ReLU()),
                nn.Linear(7, 3),
                nn.Sequential(nn.Linear(3, 6), nn.Sigmoid()),
            ]
        )
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["plain", "residual", "mixed"])
@pytest.mark.parametrize("exact", [False, True])
def test_probe_matches_oracle(kind: str, exact: bool, gen: torch.Generator) -> None:
    chain = _chain(kind, gen)
    for s in chain:
        s.module.double()
    x = torch.randn(3, _in(chain), dtype=torch.float64, generator=gen)
    Js, states = step_jacobians(chain, x)
    rep = ds.probe(chain, x, exact=exact, lyapunov=2, seed=1)
    for b, J in zip(rep.blocks, Js):
        s = torch.linalg.svdvals(J)
        n_in = J.shape[2]
        assert b.local_rms == pytest.approx(float((J.flatten(1).norm(dim=1) / n_in**0.5).mean()), rel=1e-10)
        assert b.local_sigma_max == pytest.approx(float(s[:, 0].mean()), rel=1e-10 if exact else SIGMA_RTOL)
        if J.shape[1] == J.shape[2]:
            assert b.local_sigma_min == pytest.approx(float(s[:, -1].mean()), rel=1e-10 if exact else SIGMA_RTOL)
            gap = torch.linalg.svdvals(J - torch.eye(n_in, dtype=J.dtype))[:, 0]
            assert b.identity_gap == pytest.approx(float(gap.mean()), rel=1e-10 if exact else SIGMA_RTOL)
        else:
            assert b.local_sigma_min is None and b.identity_gap is None
    for b, M in zip(rep.blocks, cumulative(Js)):
        expect = float(torch.log(M.flatten(1).norm(dim=1) / M.shape[2] ** 0.5).mean())
        assert b.cum_log_rms == pytest.approx(expect, abs=1e-9)
    # gradients: autograd through the whole chain for the same default loss direction
    xg = x.clone().requires_grad_(True)
    hs = [xg]
    for step in chain:
        hs.append(step.fn(hs[-1]))
        hs[-1].retain_grad()
    g = torch.randn(hs[-1][0].shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    rep2 = ds.probe(chain, x, loss=lambda out: (out * g).sum(), lyapunov=0, exact=exact)
    (hs[-1] * g).sum().backward()
    norms = [h.grad.norm(dim=1) if h is not xg else xg.grad.norm(dim=1) for h in hs]
    for k, b in enumerate(rep2.blocks):
        assert b.grad_log_norm == pytest.approx(float(torch.log(norms[k]).mean()), abs=1e-9)
        assert b.grad_ratio == pytest.approx(float(torch.exp(torch.log(norms[k] / norms[k + 1]).mean())), rel=1e-9)


def _in(chain: ds.Chain) -> int:
    first = chain.steps[0].module
    lin = first if isinstance(first, nn.Linear) else next(m for m in first.modules() if isinstance(m, nn.Linear))
    return lin.in_features


def test_matrix_free_matches_oracle(gen: torch.Generator) -> None:
    torch.manual_seed(3)
    m = ds.create_model("resnet_mlp", depth=6, width=48).double()
    x = torch.randn(2, 48, dtype=torch.float64, generator=gen)
    chain = ds.Chain.from_module(m)
    Js, _ = step_jacobians(chain, x)
    rep = ds.probe(m, x, method="matrix-free", lyapunov=0, probes=16)
    for b, J in zip(rep.blocks, Js):
        s = torch.linalg.svdvals(J)
        fro = float((J.flatten(1).norm(dim=1) / J.shape[2] ** 0.5).mean())
        assert b.method == "matrix-free"
        assert b.local_sigma_max == pytest.approx(float(s[:, 0].mean()), rel=SIGMA_RTOL)
        if b.name.startswith("blocks"):
            assert b.local_rms == pytest.approx(fro, rel=HUTCHINSON_RTOL)
            gap = torch.linalg.svdvals(J - torch.eye(48, dtype=J.dtype))[:, 0]
            assert b.identity_gap == pytest.approx(float(gap.mean()), rel=SIGMA_RTOL)
            # Weyl: a lower bound, never above the truth
            assert b.sigma_min_kind == "weyl-lower-bound"
            assert b.local_sigma_min <= float(s[:, -1].mean()) + 1e-9


@pytest.mark.parametrize("lyapunov", [0, 8, 24])
def test_frame_cumulative_on_wide_input(lyapunov: int, gen: torch.Generator) -> None:
    """Beyond EXACT_CUMULATIVE_MAX_DIM the cumulative norms are estimated from the pushed random
    frame (whatever the number of Lyapunov exponents that share it); the end-to-end gain through a
    narrow head is exact."""
    torch.manual_seed(4)
    m = ds.create_model("resnet_mlp", depth=3, width=300, out_dim=4).double()
    x = torch.randn(1, 300, dtype=torch.float64, generator=gen)
    Js, _ = step_jacobians(ds.Chain.from_module(m), x)
    if lyapunov > 4:  # more exponents than the 4-wide output has: cut, with a warning
        with pytest.warns(ds.ProbeWarning, match=f"lyapunov={lyapunov} exceeds"):
            rep = ds.probe(m, x, lyapunov=lyapunov)
    else:
        rep = ds.probe(m, x, lyapunov=lyapunov)
    assert rep.settings["lyapunov"] == min(lyapunov, 4)
    assert rep.settings["cumulative"] == f"frame({max(16, min(lyapunov, 4))})"
    assert len(rep.lyapunov) == min(lyapunov, 4)  # capped by the 4-wide output
    cums = cumulative(Js)
    for b, M in list(zip(rep.blocks, cums))[:-1]:
        expect = float(torch.log(M.flatten(1).norm(dim=1) / M.shape[2] ** 0.5).mean())
        assert abs(b.cum_log_rms - expect) < math.log(1 + HUTCHINSON_RTOL)
    M = cums[-1]
    assert rep.blocks[-1].cum_log_rms == pytest.approx(float(torch.log(M.norm() / 300**0.5)), abs=1e-9)


def test_lyapunov_against_product_singular_values(gen: torch.Generator) -> None:
    """Lyapunov exponents = lim (1/L) log sigma_i(J(0 -> L)); at L = 300 they agree to O(1/L)."""
    torch.manual_seed(5)
    W = torch.randn(4, 4, dtype=torch.float64) / 2
    chain = ds.Chain.repeat(lambda h: h @ W.T, 300)
    x = torch.randn(1, 4, dtype=torch.float64, generator=gen)
    rep = ds.probe(chain, x, lyapunov=3)
    # product of one fixed matrix: exponents are log |eigenvalues| (descending)
    expect = sorted(torch.log(torch.linalg.eigvals(W).abs()).tolist(), reverse=True)[:3]
    assert np.allclose(rep.lyapunov, expect, atol=0.03)
    stream = ds.lyapunov(chain, x, k=3, transient=50)
    assert np.allclose(stream.exponents.tolist(), expect, atol=0.01)


@pytest.mark.parametrize("method", ["explicit", "matrix-free"])
def test_sigma_min_false_skips_only_sigma_min_and_gap(method: str, gen: torch.Generator) -> None:
    torch.manual_seed(6)
    m = ds.create_model("resnet_mlp", depth=3, width=20).double()
    x = torch.randn(2, 20, dtype=torch.float64, generator=gen)
    Js, _ = step_jacobians(ds.Chain.from_module(m), x)
    rep = ds.probe(m, x, method=method, sigma_min=False, lyapunov=0)
    for b, J in zip(rep.blocks, Js):
        assert b.local_sigma_min is None and b.identity_gap is None
        assert b.local_sigma_max == pytest.approx(float(torch.linalg.svdvals(J)[:, 0].mean()), rel=SIGMA_RTOL)


@pytest.mark.parametrize("method", ["explicit", "matrix-free"])
@pytest.mark.parametrize("scale", [1e30, 1e-30])
def test_steps_of_extreme_scale_in_float32(method: str, scale: float) -> None:
    """A float32 step whose Jacobian is 1e30 (or 1e-30) times an ordinary one: J^T J would be 1e60
    (1e-60), beyond float32, yet sigma_max, ||J||_F and ||J - I||_2 match the float64 SVD."""
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 8))
    with torch.no_grad():
        m[1].weight.mul_(scale)
    rep = ds.probe(m, torch.randn(2, 8), method=method, probes=16)
    W = m[1].weight.detach().double()
    b = rep.blocks[1]
    assert b.local_sigma_max == pytest.approx(float(torch.linalg.svdvals(W)[0]), rel=SIGMA_RTOL)
    assert b.identity_gap == pytest.approx(
        float(torch.linalg.svdvals(W - torch.eye(8, dtype=W.dtype))[0]), rel=SIGMA_RTOL
    )
    assert b.local_rms == pytest.approx(float(W.norm() / 8**0.5), rel=HUTCHINSON_RTOL)
    assert math.isfinite(rep.log_gain) and all(math.isfinite(g) for g in rep.column("grad_log_norm"))


@pytest.mark.parametrize("method", ["explicit", "matrix-free"])
def test_a_step_with_a_zero_jacobian_is_measured_as_zero(method: str) -> None:
    """A step whose output is differentiable but does not move with its input here (a dead ReLU
    layer) has J = 0: the probe reports zeros, on the autograd route (cumsum, which has no tape
    rule, forces it) too."""

    def dead(h):  # every ReLU is off
        return torch.cumsum(torch.relu(h - 100.0), dim=1)

    chain = ds.Chain([lambda h: h * 2.0, dead, lambda h: h + 1.0])
    rep = ds.probe(chain, torch.randn(2, 8), method=method, lyapunov=0)
    assert rep.settings["jacobian_routes"].get("autograd", 0) >= 1
    b = rep.blocks[1]
    assert b.local_rms == 0.0 and b.local_sigma_max == 0.0
    assert rep.blocks[0].local_sigma_max == pytest.approx(2.0, rel=SIGMA_RTOL)


def test_a_recurrence_probes_alike_matrix_free_and_explicit() -> None:
    spec = ds.model_spec("rnn_tanh")
    torch.manual_seed(0)
    m = spec.factory(**spec.tiny).eval()
    x = m.example_input(2, torch.Generator().manual_seed(0))
    a, b = ds.probe(m, x, method="matrix-free"), ds.probe(m, x, method="explicit")
    for p, q in zip(a.column("local_sigma_max"), b.column("local_sigma_max")):
        assert p == pytest.approx(q, rel=SIGMA_RTOL, abs=1e-12)
