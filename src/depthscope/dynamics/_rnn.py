"""Recurrent networks over time as chains: one chain step per time step.

rnn_linear: h_t = W h_{t-1} + U x_t          J_t = W                  (h_T = W^T h_0 + ..., claim V9)
rnn_tanh:   h_t = tanh(W h_{t-1} + U x_t + b)  J_t = diag(1 - h_t^2) W

States are ``h: (B, n)``; inputs, when given, are ``(T, B, d_in)`` (B may be 1 to drive every
example with the same sequence) and fix the number of steps T. The input term shifts the state but
not the linear-RNN Jacobian, so the linear RNN's Lyapunov exponents are those of W^T whatever the
input: the top one is ln rho(W) (claims V9, V10). Each step carries an analytic ``jvp``.
These are the bare recurrences as chains; the trainable modules of the same names (with a learned
initial state and a readout) are the zoo's registered models ``rnn_linear`` and ``rnn_tanh``.
"""

from __future__ import annotations

import torch

from depthscope.chain import Chain, Step
from depthscope.dynamics._maps import _matrix


class _AffineStep:
    """h -> h W^T + c on ``h: (B, n)`` with ``c: (B or 1, n)`` or None; J = W."""

    def __init__(self, W: torch.Tensor, drive: torch.Tensor | None):
        self.W = W
        self.drive = drive

    def __call__(self, h: torch.Tensor) -> torch.Tensor:
        out = h @ self.W.to(h.dtype).T
        return out if self.drive is None else out + self.drive.to(h.dtype)

    def jvp(self, h: torch.Tensor, V: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self(h), V @ self.W.to(h.dtype).T


class _TanhStep:
    """h -> tanh(h W^T + c) on ``h: (B, n)``; J V = (1 - h'^2) * (V W^T) with h' the output."""

    def __init__(self, W: torch.Tensor, drive: torch.Tensor | None):
        self.W = W
        self.drive = drive

    def __call__(self, h: torch.Tensor) -> torch.Tensor:
        pre = h @ self.W.to(h.dtype).T
        return torch.tanh(pre if self.drive is None else pre + self.drive.to(h.dtype))

    def jvp(self, h: torch.Tensor, V: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self(h)
        return out, (1.0 - out * out) * (V @ self.W.to(h.dtype).T)


def _drives(W: torch.Tensor, n_steps: int, U, inputs, bias) -> list[torch.Tensor | None]:
    """The per-step additive term ``U x_t + b``: a list of ``n_steps`` tensors ``(B or 1, n)`` or Nones."""
    n = W.shape[0]
    if (U is None) != (inputs is None):
        raise ValueError("give U and inputs together (h_t = W h_{t-1} + U x_t), or neither")
    drive = None
    if inputs is not None:
        U = torch.as_tensor(U, dtype=torch.float64)
        inputs = torch.as_tensor(inputs, dtype=torch.float64)
        if U.ndim != 2 or U.shape[0] != n:
            raise ValueError(f"U must be (n, d_in) = ({n}, d_in); got shape {tuple(U.shape)}")
        if inputs.ndim != 3 or inputs.shape[0] != n_steps or inputs.shape[2] != U.shape[1]:
            raise ValueError(
                f"inputs must be (T, B, d_in) = ({n_steps}, B, {U.shape[1]}); got shape {tuple(inputs.shape)}"
            )
        drive = inputs @ U.T  # (T, B, n)
    if bias is not None:
        bias = torch.as_tensor(bias, dtype=torch.float64).reshape(1, 1, n)
        drive = bias.expand(n_steps, 1, n) if drive is None else drive + bias
    if drive is None:
        return [None] * n_steps
    return list(drive.unbind(0))


def _rnn_chain(step_cls, W, n_steps: int, U, inputs, bias) -> Chain:
    W = _matrix(W, "W")
    if n_steps < 1:
        raise ValueError(f"n_steps must be >= 1, got {n_steps}")
    drives = _drives(W, n_steps, U, inputs, bias)
    if drives[0] is None:  # autonomous: one step object shared by every time step
        step = step_cls(W, None)
        return Chain.repeat(step, n_steps, "t=", jvp=step.jvp)
    steps = [step_cls(W, d) for d in drives]
    return Chain(Step(f"t={t + 1}", s, None, s.jvp) for t, s in enumerate(steps))


def rnn_linear(W, n_steps: int, U=None, inputs=None) -> Chain:
    """The linear RNN h_t = W h_{t-1} (+ U x_t) for ``n_steps`` steps on ``h: (B, n)``.

    Args:
        W: ``(n, n)`` recurrent matrix (stored float64).
        n_steps: T, the number of time steps.
        U: ``(n, d_in)`` input matrix, with ``inputs``: ``(T, B, d_in)``; both or neither.
    """
    return _rnn_chain(_AffineStep, W, n_steps, U, inputs, None)


def rnn_tanh(W, n_steps: int, U=None, inputs=None, bias=None) -> Chain:
    """The tanh RNN h_t = tanh(W h_{t-1} (+ U x_t) (+ b)) for ``n_steps`` steps on ``h: (B, n)``.

    Args:
        W: ``(n, n)`` recurrent matrix (stored float64).
        n_steps: T, the number of time steps.
        U: ``(n, d_in)`` input matrix, with ``inputs``: ``(T, B, d_in)``; both or neither.
        bias: ``(n,)`` or None.
    """
    return _rnn_chain(_TanhStep, W, n_steps, U, inputs, bias)
