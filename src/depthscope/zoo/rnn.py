"""Recurrent networks unrolled in time: each time step is a chain step.

rnn_tanh:     h_t = tanh(W h_{t-1} + U x_t + b)
rnn_linear:   h_t = W h_{t-1} + U x_t              (h_T = W^T h_0 + ..., claim V9)
rate_network: h_{k+1} = h_k + dt (-h_k + J tanh(h_k))   (Euler steps of h' = -h + J tanh(h);
              Engelken, Wolf & Abbott 2020, "Lyapunov spectra of chaotic recurrent neural networks")

The chain state is the hidden state h. For the input-driven RNNs the input sequence x (B, T, D_in)
is captured by ``chain_steps(x)``:

    stem:      x -> h_0, the learned initial state broadcast over the batch, (B, hidden)
    t=1..t=T:  h_{t-1} -> h_t, step t closes over x[:, t-1]
    readout:   h_T -> W_out h_T, (B, out_dim)

so the product of the T step Jacobians is d h_T / d h_0 (W^T for the linear RNN). The rate
network is autonomous; its input is the initial state h(0) (B, N), its stem and head are
identities, and its K Euler steps are the steps in between.

The bare recurrences (no stem, no head) are chains of `depthscope.dynamics` under the same names:
``rnn_linear``, ``rnn_tanh``, and ``rate_chain`` (``random_rate_chain`` draws the coupling); the
Euler step itself is `depthscope.dynamics.rate_euler_step`, shared by both.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from depthscope._errors import InputError
from depthscope.chain import ChainModule
from depthscope.dynamics import rate_coupling, rate_euler_step
from depthscope.zoo._registry import register_model

RNN_INITS = ("gaussian", "orthogonal", "spectral")


@torch.no_grad()
def recurrent_weight(n: int, g: float, init: str, generator: torch.Generator | None = None) -> torch.Tensor:
    """A recurrent matrix (n, n) of gain g.

    ``gaussian``: W_ij ~ N(0, g^2/n), spectral radius -> g as n grows (circular law).
    ``orthogonal``: g Q with Q Haar-orthogonal; every eigenvalue has modulus exactly g
    (Saxe et al. 2014; Le et al. 2015 use the identity case for IRNNs).
    ``spectral``: Gaussian rescaled so that its spectral radius is exactly g (echo-state networks,
    Jaeger 2001); the choice for experiments on claim V9.
    """
    w = torch.randn(n, n, generator=generator, dtype=torch.float64) / math.sqrt(n)
    if init == "gaussian":
        w = g * w
    elif init == "orthogonal":
        q, r = torch.linalg.qr(w)
        w = g * q * torch.sign(torch.diagonal(r))  # sign fix makes Q Haar-distributed (Mezzadri 2007)
    elif init == "spectral":
        w = g * w / torch.linalg.eigvals(w).abs().max()
    else:
        raise ValueError(f"unknown init {init!r}; choose one of {', '.join(RNN_INITS)}")
    return w.to(torch.get_default_dtype())


class _LinearCell(nn.Module):
    """h, x_t -> W h + U x_t. h: (B, hidden), x_t: (B, input_dim)."""

    def __init__(self, w: torch.Tensor, input_dim: int):
        super().__init__()
        hidden = w.shape[0]
        self.W = nn.Linear(hidden, hidden, bias=False)
        self.U = nn.Linear(input_dim, hidden, bias=False)
        with torch.no_grad():
            self.W.weight.copy_(w)
            # Input weights N(0, 1/input_dim): each input moves h by O(1) per step.
            self.U.weight.normal_(0.0, 1.0 / math.sqrt(input_dim))

    def forward(self, h: torch.Tensor, x_t: torch.Tensor) -> torch.Tensor:
        return self.W(h) + self.U(x_t)


class _TanhCell(_LinearCell):
    """h, x_t -> tanh(W h + U x_t + b); b starts at 0."""

    def __init__(self, w: torch.Tensor, input_dim: int):
        super().__init__(w, input_dim)
        self.b = nn.Parameter(torch.zeros(w.shape[0]))

    def forward(self, h: torch.Tensor, x_t: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.W(h) + self.U(x_t) + self.b)


class TimeStep:
    """The step h_{t-1} -> h_t of ``cell`` with the input x_t bound; a plain, printable callable."""

    def __init__(self, cell: nn.Module, x_t: torch.Tensor):
        self.cell = cell
        self.x_t = x_t

    def __call__(self, h: torch.Tensor) -> torch.Tensor:
        return self.cell(h, self.x_t)

    def __repr__(self) -> str:
        return f"TimeStep({type(self.cell).__name__}, x_t={tuple(self.x_t.shape)})"


class _InitialState(nn.Module):
    """x (B, T, D_in) -> h_0 (B, hidden): the learned initial state, the same for every example."""

    def __init__(self, h0: torch.Tensor):
        super().__init__()
        self.h0 = nn.Parameter(h0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.h0.expand(x.shape[0], -1)


class RNN(ChainModule):
    """An RNN unrolled over seq_len steps. x: (B, seq_len, input_dim) -> (B, out_dim)."""

    def __init__(self, cell: _LinearCell, hidden: int, input_dim: int, seq_len: int, out_dim: int):
        super().__init__()
        self.input_dim = input_dim
        self.seq_len = seq_len
        # h_0 ~ N(0, 1/hidden): ||h_0|| ~ 1, non-zero so that forward norm ratios are defined.
        self.init_state = _InitialState(torch.randn(hidden) / math.sqrt(hidden))
        self.cell = cell
        self.readout = nn.Linear(hidden, out_dim)
        with torch.no_grad():
            self.readout.weight.normal_(0.0, 1.0 / math.sqrt(hidden))
            self.readout.bias.zero_()

    def time_steps(self, x: torch.Tensor) -> list[tuple[str, Callable[[torch.Tensor], torch.Tensor]]]:
        """The T steps h_{t-1} -> h_t, step t bound to x[:, t-1]; x: (B, T, input_dim)."""
        return [(f"t={t + 1}", TimeStep(self.cell, x[:, t])) for t in range(x.shape[1])]

    def chain_steps(self, x: torch.Tensor | None) -> list[tuple[str, Callable[[torch.Tensor], torch.Tensor]]]:
        if x is None:
            raise InputError("an RNN's steps consume the input sequence: pass example=x (B, T, input_dim)")
        return [("stem", self.init_state), *self.time_steps(x), ("readout", self.readout)]

    def example_input(self, batch: int = 1, generator: torch.Generator | None = None) -> torch.Tensor:
        """Standard normal inputs, (batch, seq_len, input_dim)."""
        return torch.randn(batch, self.seq_len, self.input_dim, generator=generator)


def _check(**sizes: int) -> None:
    bad = {k: v for k, v in sizes.items() if v < 1}
    if bad:
        raise ValueError(f"RNN sizes must be positive, got {bad}")


_RNN_TINY = dict(hidden=8, input_dim=3, seq_len=5)


@register_model(
    "rnn_linear",
    family="rnn",
    description="linear RNN h_t = W h_{t-1} + U x_t unrolled in time; W of gain g (claim V9)",
    tiny=_RNN_TINY,
)
def rnn_linear(
    hidden: int = 64, input_dim: int = 8, seq_len: int = 50, g: float = 1.0, init: str = "gaussian", out_dim: int = 1
) -> RNN:
    """A linear RNN; see `recurrent_weight` for ``g`` and ``init``."""
    _check(hidden=hidden, input_dim=input_dim, seq_len=seq_len, out_dim=out_dim)
    cell = _LinearCell(recurrent_weight(hidden, g, init), input_dim)
    return RNN(cell, hidden, input_dim, seq_len, out_dim)


@register_model(
    "rnn_tanh",
    family="rnn",
    description="vanilla RNN h_t = tanh(W h_{t-1} + U x_t + b) unrolled in time; W of gain g",
    tiny=_RNN_TINY,
)
def rnn_tanh(
    hidden: int = 64, input_dim: int = 8, seq_len: int = 50, g: float = 1.0, init: str = "gaussian", out_dim: int = 1
) -> RNN:
    """A tanh RNN; g = 1 is the edge of chaos of the autonomous network (Sompolinsky et al. 1988)."""
    _check(hidden=hidden, input_dim=input_dim, seq_len=seq_len, out_dim=out_dim)
    cell = _TanhCell(recurrent_weight(hidden, g, init), input_dim)
    return RNN(cell, hidden, input_dim, seq_len, out_dim)


class EulerRateStep(nn.Module):
    """h -> h + dt (-h + J tanh(h)) = (1 - dt) h + dt J tanh(h); h: (B, N).

    Jacobian: (1 - dt) I + dt J diag(1 - tanh(h)^2).
    """

    def __init__(self, j: torch.Tensor, dt: float):
        super().__init__()
        self.J = nn.Parameter(j.clone())
        self.dt = float(dt)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return rate_euler_step(h, self.J, self.dt)

    def extra_repr(self) -> str:
        return f"N={self.J.shape[0]}, dt={self.dt}"


class RateNetwork(ChainModule):
    """K Euler steps of h' = -h + J tanh(h). x = h(0): (B, N) -> h(K dt): (B, N).

    One step module is shared by all K steps (the network is autonomous); stem and head are
    identities so that every Euler step is a block.
    """

    def __init__(self, step: EulerRateStep, steps: int):
        super().__init__()
        self.n = step.J.shape[0]
        self.steps = steps
        self.stem = nn.Identity()
        self.step = step
        self.head = nn.Identity()

    def chain_steps(self, x: torch.Tensor | None) -> list[tuple[str, Callable[[torch.Tensor], torch.Tensor]]]:
        return [("stem", self.stem), *[(f"t={k + 1}", self.step) for k in range(self.steps)], ("head", self.head)]

    def example_input(self, batch: int = 1, generator: torch.Generator | None = None) -> torch.Tensor:
        """Initial states h(0) ~ N(0, 1), (batch, N)."""
        return torch.randn(batch, self.n, generator=generator)


@register_model(
    "rate_network",
    family="rnn",
    description="rate network h' = -h + J tanh(h), Euler steps; J_ij ~ N(0, g^2/N), chaotic for g > 1",
    tiny=dict(N=8, steps=5),
)
def rate_network(N: int = 128, g: float = 2.0, dt: float = 0.1, steps: int = 100) -> RateNetwork:
    """The rate network of Engelken et al. 2020 with coupling `rate_coupling` (N, g)."""
    _check(N=N, steps=steps)
    if not 0.0 < dt <= 1.0:
        raise ValueError(f"dt must lie in (0, 1] for an Euler step of a unit time constant, got {dt}")
    # The coupling is drawn from the global RNG, like every other zoo initialisation.
    seed = int(torch.randint(0, 2**31 - 1, ()).item())
    return RateNetwork(EulerRateStep(rate_coupling(N, g, seed).to(torch.get_default_dtype()), dt), steps)
