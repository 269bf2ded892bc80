"""Constants and helpers shared by claims V1-V10 (the text on vanishing and exploding gradients, seed 003).

Conventions shared by the experiments: a gradient "vanishes" over a chain when its norm falls below
1/10 of the output gradient's and "explodes" above 10 times (the thresholds of the probe's verdict,
``VERDICT_LOG_GAIN = ln 10``); in between it is "marginal".
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import scipy.linalg
import torch
from torch import nn

from depthscope.chain import Chain
from depthscope.estimators import sweep_log_grad_norms
from depthscope.ledger.claims._residual_common import _per_example_jacobian
from depthscope.probing import VERDICT_LOG_GAIN
from depthscope.zoo import create_model
from depthscope.zoo.rnn import recurrent_weight

SOURCE = "003"
VANISHING, EXPLODING, MARGINAL = "vanishing", "exploding", "marginal"
SEED_RANGE = 2**31 - 1  # child seeds are drawn uniformly below this


@contextmanager
def _float64() -> Iterator[None]:
    """Make float64 the default dtype inside the block (zoo models are built in the default dtype)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def _child_seed(gen: torch.Generator) -> int:
    """A seed drawn from ``gen``, for one model or one random matrix."""
    return int(torch.randint(0, SEED_RANGE, (), generator=gen))


def _build(name: str, seed: int, **kwargs: Any) -> nn.Module:
    """The zoo model ``name`` in float64, initialised from ``seed``; the global RNG state is restored."""
    with torch.random.fork_rng(), _float64():
        torch.manual_seed(seed)
        return create_model(name, **kwargs)


def _jacobian(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The Jacobian ``(m, n)`` at ``x: (n,)`` of a map ``fn: (B, n) -> (B, m)`` that treats examples
    independently (every chain step does)."""
    return _per_example_jacobian(fn, x.detach().unsqueeze(0))[0]


def _gradient_log_gain(chain: Chain, x: torch.Tensor, cotangent: torch.Tensor) -> float:
    """log ||d <chain(x), u> / dx|| for ``x: (1, n)`` and a unit ``u: (1, m)``: backpropagation one step
    at a time (autograd's vector-Jacobian product at each step's input state), renormalised after every
    step and accumulated in log domain (`sweep_log_grad_norms`), so it neither under- nor overflows."""
    with torch.no_grad():
        states = chain.states(x)

    def apply_t(k: int, U: torch.Tensor) -> torch.Tensor:
        """J_k^T U for ``U: (1, 1, m_k)``."""
        xin = states[k].detach().requires_grad_(True)
        with torch.enable_grad():
            (g,) = torch.autograd.grad(chain.steps[k](xin), xin, U[0])
        return g.unsqueeze(0)

    return float(sweep_log_grad_norms(apply_t, range(len(chain)), cotangent)[0, 0])


def _unit(n: int, gen: torch.Generator) -> torch.Tensor:
    """A uniformly random unit vector ``(1, n)``."""
    v = torch.randn(1, n, generator=gen, dtype=torch.float64)
    return v / v.norm()


def _gain_class(log_gain: float) -> str:
    """``vanishing`` below 1/10, ``exploding`` above 10, ``marginal`` in between."""
    if log_gain < -VERDICT_LOG_GAIN:
        return VANISHING
    if log_gain > VERDICT_LOG_GAIN:
        return EXPLODING
    return MARGINAL


def _blocks_of(model: nn.Module) -> tuple[Chain, nn.Module]:
    """The blocks of a zoo MLP as a chain, without its stem and head, and the stem."""
    chain = Chain.from_module(model)
    return chain[1 : len(chain) - 1], model.stem


def _shear(W: torch.Tensor, strength: float) -> torch.Tensor:
    """``W: (n, n)`` made non-normal without moving an eigenvalue.

    In the real Schur form W = Z T Z^T, T is quasi-triangular with 1x1 and 2x2 diagonal blocks; an
    entry two places above the diagonal lies outside every block, so adding ``strength`` on that
    superdiagonal leaves the eigenvalues (those of the blocks) unchanged while coupling the modes
    in a feed-forward chain, which amplifies transiently. ``strength = 0`` returns W itself.
    """
    if strength == 0:
        return W
    T, Z = scipy.linalg.schur(W.numpy(), output="real")
    T = T + strength * np.eye(W.shape[0], k=2)
    return torch.from_numpy(Z @ T @ Z.T)


def _recurrent_matrix(n: int, rho: float, shear: float, seed: int) -> torch.Tensor:
    """The zoo's recurrent matrix of spectral radius exactly ``rho`` (`recurrent_weight`, "spectral"),
    made non-normal by ``shear`` (`_shear`, eigenvalues unchanged); ``(n, n)`` float64."""
    with _float64():
        W = recurrent_weight(n, rho, "spectral", torch.Generator().manual_seed(seed))
    return _shear(W, shear)


def _relative_gap(a: float, b: float) -> float:
    """|a - b| / max(|a|, |b|), and 0 when both are 0."""
    scale = max(abs(a), abs(b))
    return 0.0 if scale == 0 else abs(a - b) / scale
