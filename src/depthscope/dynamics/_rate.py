"""The random rate network h' = -h + J tanh(h) in Euler steps (Engelken, Wolf & Abbott 2020).

    J_ij ~ N(0, g^2 / N) for i != j, J_ii = 0;   h_{k+1} = h_k + dt (-h_k + J tanh(h_k)),
    J_step(h) = (1 - dt) I + dt J D(h),  D(h) = diag(1 - tanh^2 h).

Time is in units of the neuron time constant tau = 1; chain exponents are per step, divide by dt for
per unit time. For large N the fixed point h = 0 is stable for g < 1 and the dynamics are chaotic
for g > 1 (Sompolinsky, Crisanti & Sommers 1988).

What is exact about the mean exponent (all N exponents, k = N):
- Per step, for any run length: sum_i lambda_i = mean over steps of log |det J_step(h_k)|, because
  the log |R_ii| of each QR sum to log |det(J_step Q)| = log |det J_step| (`rate_step_log_det`).
- Continuous time (Liouville): the sum is the time average of tr(-I + J D) = -N + sum_i J_ii D_ii
  = -N, since J_ii = 0; the mean exponent of the flow is -1 / tau exactly.
- The Euler map: log det J_step = N ln(1 - dt) + log det(I + eps J D), eps = dt / (1 - dt), and
  log det(I + eps J D) = eps tr(J D) - eps^2 tr((J D)^2) / 2 + ... with tr(J D) = 0, so the mean
  exponent per unit time is ln(1 - dt) / dt + O(eps^2 tr((J D)^2) / (N dt)): ln(1 - dt)/dt only up
  to that second-order term, and -1 only as dt -> 0.
"""

from __future__ import annotations

import math

import torch

from depthscope import _linalg
from depthscope.chain import Chain


def rate_coupling(N: int, g: float, seed: int = 0) -> torch.Tensor:
    """The coupling ``J: (N, N)`` float64, entries N(0, g^2 / N) off the diagonal, zero on it."""
    gen = torch.Generator().manual_seed(seed)
    J = torch.randn(N, N, generator=gen, dtype=torch.float64) * (g / math.sqrt(N))
    J.fill_diagonal_(0.0)  # no self-coupling: makes tr(J D) = 0, hence the mean exponent -1
    return J


def rate_euler_step(h: torch.Tensor, J: torch.Tensor, dt: float) -> torch.Tensor:
    """One Euler step h + dt (-h + J tanh(h)) = (1 - dt) h + dt tanh(h) J^T on ``h: (B, N)`` with
    ``J: (N, N)`` of h's dtype; returns ``(B, N)``. The one formula of the step: the chains here and
    the zoo's ``rate_network`` model both call it."""
    # dt multiplies the product, not tanh(h) before it: the rounding the rate chains had before the
    # step was shared, which keeps claim V10's spectra bit for bit those of earlier runs.
    return (1.0 - dt) * h + dt * (torch.tanh(h) @ J.T)


class _RateStep:
    """h -> `rate_euler_step` on ``h: (B, N)``; J_step V = (1 - dt) V + dt (D V) J^T."""

    def __init__(self, J: torch.Tensor, dt: float):
        self.J = J
        self.dt = float(dt)

    def __call__(self, h: torch.Tensor) -> torch.Tensor:
        return rate_euler_step(h, self.J.to(h.dtype), self.dt)

    def jvp(self, h: torch.Tensor, V: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        J = self.J.to(h.dtype)
        t = torch.tanh(h)
        return rate_euler_step(h, J, self.dt), (1.0 - self.dt) * V + self.dt * (((1.0 - t * t) * V) @ J.T)


def rate_chain(J, dt: float, n_steps: int) -> Chain:
    """``n_steps`` Euler steps of h' = -h + J tanh(h) with coupling ``J: (N, N)`` on ``h: (B, N)``."""
    J = torch.as_tensor(J, dtype=torch.float64)
    if J.ndim != 2 or J.shape[0] != J.shape[1]:
        raise ValueError(f"J must be (N, N); got shape {tuple(J.shape)}")
    if not 0.0 < dt < 1.0:
        raise ValueError(f"dt must lie in (0, 1) (dt >= 1 overshoots the leak term); got {dt}")
    step = _RateStep(J, dt)
    return Chain.repeat(step, n_steps, "k=", jvp=step.jvp)


def random_rate_chain(N: int, g: float, dt: float, n_steps: int, seed: int = 0) -> Chain:
    """`rate_chain` with a random coupling ``rate_coupling(N, g, seed)``: ``n_steps`` Euler steps on
    ``h: (B, N)``. (The zoo's registered ``rate_network`` is the same network as a trainable module.)"""
    return rate_chain(rate_coupling(N, g, seed), dt, n_steps)


def rate_step_log_det(J, dt: float, h: torch.Tensor) -> torch.Tensor:
    """log |det J_step(h)| per example for ``h: (B, N)``; returns ``(B,)`` (natural log).

    Averaged over a trajectory this equals the sum of all N per-step Lyapunov exponents that
    `depthscope.estimators.lyapunov` returns on the same steps (exactly, up to rounding).
    """
    J = torch.as_tensor(J, dtype=torch.float64)
    N = J.shape[0]
    d = 1.0 - torch.tanh(h.to(torch.float64)) ** 2  # (B, N)
    M = (1.0 - dt) * torch.eye(N, dtype=torch.float64) + dt * J * d.unsqueeze(1)  # J diag(d), (B, N, N)
    return _linalg.slogdet(M)[1]
