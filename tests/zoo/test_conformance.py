"""Every registered model, built at its tiny size, must work as a chain (timm-style conformance).

The list is read from the registry when the tests are collected, so a newly registered model is
tested for free.
"""

from __future__ import annotations

import warnings

import pytest
import torch

import depthscope

SEED = 0
BATCH = 2
# A ChainModule's forward is the composition of its steps, so chain and model agree to round-off;
# float32 re-evaluation of identical operations should in fact agree exactly.
COMPOSE_RTOL = 1e-5
COMPOSE_ATOL = 1e-6
MIN_CHAIN_STEPS = 3  # stem, at least one block, head

MODEL_NAMES = depthscope.list_models()


def _build(name: str) -> tuple[depthscope.ChainModule, torch.Tensor]:
    torch.manual_seed(SEED)
    spec = depthscope.model_spec(name)
    model = spec.factory(**spec.tiny)
    x = model.example_input(BATCH, torch.Generator().manual_seed(SEED))
    return model, x


def _output(out: object) -> torch.Tensor:
    assert isinstance(out, torch.Tensor), f"model returned a {type(out).__name__}, expected a tensor"
    return out


def test_registry_is_populated() -> None:
    assert len(MODEL_NAMES) >= 1
    for name in ("plain_mlp", "resnet_mlp", "rezero_mlp", "fixup_mlp", "resnet20", "procresnet", "densenet_mlp"):
        assert name in MODEL_NAMES


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_forward_backward(name: str) -> None:
    model, x = _build(name)
    assert isinstance(model, depthscope.ChainModule)
    assert x.shape[0] == BATCH
    y = _output(model(x))
    assert y.shape[0] == BATCH
    assert torch.isfinite(y).all(), f"{name}: non-finite output"
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not params:
        return
    # A fixed random projection of the output, so no entry's gradient cancels by symmetry.
    w = torch.randn(y.shape, generator=torch.Generator().manual_seed(SEED + 1), dtype=y.dtype)
    (y * w).sum().backward()
    for pname, p in params:
        assert p.grad is not None, f"{name}: parameter {pname} received no gradient"
        assert torch.isfinite(p.grad).all(), f"{name}: parameter {pname} has a non-finite gradient"


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_chain_composes_to_model(name: str) -> None:
    model, x = _build(name)
    model.eval()  # BatchNorm and dropout: chains are probed in eval mode
    chain = depthscope.Chain.from_module(model, example=x)
    assert len(chain) >= MIN_CHAIN_STEPS, f"{name}: chain has only {len(chain)} steps"
    with torch.no_grad():
        expected = _output(model(x))
        states = chain.states(x)  # raises NonFiniteError naming the step if a NaN/Inf appears
    got = states[-1]
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=COMPOSE_RTOL, atol=COMPOSE_ATOL)
    assert len(states) == len(chain) + 1


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_probe_completes(name: str) -> None:
    """Every registered model can be probed at its tiny size, and every number is finite."""
    spec = depthscope.model_spec(name)
    torch.manual_seed(0)
    model = spec.factory(**spec.tiny).eval()
    x = model.example_input(2, torch.Generator().manual_seed(0))
    with warnings.catch_warnings():  # models with a one-value state compute one exponent, and say so
        warnings.filterwarnings("ignore", "lyapunov=2 exceeds", depthscope.ProbeWarning)
        rep = depthscope.probe(model, x, lyapunov=2)
    assert len(rep.lyapunov) == rep.settings["lyapunov"] <= 2
    assert len(rep) >= 3 and rep.verdict in ("stable", "vanishing", "exploding")
    for b in rep.blocks:
        assert all(v is None or v == v for v in (b.local_rms, b.local_sigma_max, b.cum_log_rms, b.grad_ratio))
        assert b.local_rms >= 0 and b.local_sigma_max >= 0
