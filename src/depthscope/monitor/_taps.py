"""Taps on a model's blocks: what the training step's own forward and backward pass through them.

A forward hook on each block module sees the block's output x_k (and input x_{k-1}) as the user's
forward computes it. On a monitored step it

- reduces x_k to per-channel sums ``[sum x, sum x^2]`` (the signal-propagation statistics of Brock,
  De and Smith 2021 are averages of per-channel moments), and the same for the block's increment
  ``x_k - x_{k-1}`` where the shapes agree (the residual branch when the skip is the identity);
- registers a tensor hook on x_k, which autograd calls with dL/dx_k during the user's backward;
  the hook keeps ``||dL/dx_k||^2``.

Tensor hooks, not module backward hooks: ``register_full_backward_hook`` wraps the block's output in
a custom autograd function, and torchvision-style code that later changes that output in place
(``out += identity``, ``ReLU(inplace=True)``) then fails ("a view ... is being modified
inplace"). A tensor hook attaches to the autograd node that produced the tensor and is untouched
by later in-place operations.

Every reduction stays on the device as a small tensor; nothing here reads a value back to the
host (no synchronisation per block). `BlockTaps.flat` concatenates the step's pieces into one
flat vector, so that a distributed all-reduce and the transfer to the host happen once per step.

Channel convention: dim 1 of ``(B, C, *spatial)`` and of ``(B, D)``; the last dim of a
three-dimensional ``(B, T, D)`` output (token sequences, the common three-dimensional case).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

# The passes over whole activations and gradients reduce in float32 whatever the tensors' dtype
# (fp16/bf16 under autocast): squares of half-precision values overflow at 256.
REDUCE_DTYPE = torch.float32
# The small reduced values (norms, per-channel sums) are kept and squared in float64: a vanishing
# gradient's norm of 1e-20 squares to 1e-40, below float32's smallest normal number (1.2e-38),
# where float32 keeps only a few digits (seen on a depth-30 sigmoid MLP).
STATS_DTYPE = torch.float64
# A block whose gradient norm was below this at its last measured step has its gradient reduced in
# float64 (4x the time of float32 on a CPU): float32 squares of elements under ~1e-19 fall below
# float32's smallest normal number and keep only a few digits (a depth-30 sigmoid MLP's first block
# has norms of 5e-20 and lost 3e-6 relative in float32); 1e-12 leaves a wide margin. Every block
# starts in float64: the first measured step has no norm to go by.
PRECISE_BELOW = 1e-12
# Rows of a block's per-channel statistics: sum of x and sum of x^2 over batch and positions.
MOMENTS = 2


def host_to_device(values: Sequence[float], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A short host list as a tensor on ``device`` without waiting for the device's queued work.

    ``torch.tensor(values, device="cuda")`` copies from pageable memory and waits for the stream to
    finish, here the whole backward, on every measured step. Staged in pinned memory, the copy is
    queued behind that work instead (the caching host allocator keeps the pinned buffer until the
    copy has run), and the step's one wait is its transfer back to the host.
    """
    t = torch.tensor(values, dtype=dtype)
    if device.type != "cuda":
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)


def _first_tensor(value: object) -> torch.Tensor | None:
    """A block's output or input as one tensor: the tensor itself, or the first item of a tuple
    (Hugging Face layers return ``(hidden, attentions, ...)``); None when there is none."""
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)) and value and isinstance(value[0], torch.Tensor):
        return value[0]
    return None


def channel_moments(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Per-channel ``[sum x, sum x^2]`` of a block output, and the count behind each channel.

    Args:
        x: ``(B, C, *S)``, ``(B, D)``, ``(B, T, D)`` (channel last) or ``(B,)`` (one channel).

    Returns:
        ``(MOMENTS, C)`` in `STATS_DTYPE` on x's device, and n = numel / C.

    The reductions run along contiguous rows (a row sum and a row norm of ``(B, C, S)``, then a
    sum over the small ``(B, C)``): reducing over dims (0, 2, 3) at once, or with ``var_mean``,
    measured 20 to 200 times slower on a CPU for a (32, 16, 32, 32) output.
    """
    x = x.detach()
    if x.dtype != torch.float64:
        x = x.to(REDUCE_DTYPE)  # a no-op for float32
    if x.dim() >= 4:
        rows = x.reshape(x.shape[0], x.shape[1], -1)
        sums = rows.sum(2).sum(0)
        squares = torch.linalg.vector_norm(rows, dim=2).to(STATS_DTYPE).square().sum(0)
    else:
        rows = x.reshape(-1, x.shape[-1] if x.dim() > 1 else 1)
        sums = rows.sum(0)
        squares = torch.linalg.vector_norm(rows, dim=0).to(STATS_DTYPE).square()
    return torch.stack([sums.to(STATS_DTYPE), squares]), x.numel() // max(sums.numel(), 1)


@dataclass(frozen=True)
class Gathered:
    """One step's taps read back to the host (after any all-reduce): numpy arrays, one per block.

    Attributes:
        grad_sq: (K,) sums of ||dL/dx_k||^2 over the step's backward passes (nan: no gradient).
        moments: K arrays ``(MOMENTS, C_k)``, per-channel sums of x_k and x_k^2 (None: not seen).
        counts: (K,) elements per channel behind ``moments``.
        branch: K arrays like ``moments`` for x_k - x_{k-1} (None: shapes differ or not seen).
        branch_counts: (K,) elements per channel behind ``branch``.
        extra: the values the monitor appended after the taps' pieces (loss, parameter norms).
    """

    grad_sq: np.ndarray
    moments: list[np.ndarray | None]
    counts: np.ndarray
    branch: list[np.ndarray | None]
    branch_counts: np.ndarray
    extra: np.ndarray


class BlockTaps:
    """Forward hooks on ``modules`` that collect one training step's per-block statistics.

    The monitor turns the taps on for the steps it measures (``active``) and pauses them while it
    runs its own forward passes (``paused``: probes). Forward passes without gradient (validation
    under ``torch.no_grad()``) are not counted. Several forward/backward passes before one
    ``flat`` (gradient accumulation) add up.

    Args:
        modules: the K block modules, in depth order.
        forward_stats: also collect the signal-propagation statistics (a few reductions per block).
    """

    def __init__(self, modules: Sequence[nn.Module], forward_stats: bool = True):
        self.modules = list(modules)
        self.forward_stats = forward_stats
        self.active = True
        self.paused = False
        self._handles = [m.register_forward_hook(self._forward_hook(k)) for k, m in enumerate(self.modules)]
        # Channel counts seen so far, so that a block missing from one step still takes its place
        # in the flat vector (ranks must all-reduce vectors of one layout).
        self._channels: list[int] = [0] * len(self.modules)
        self._branch_channels: list[int] = [0] * len(self.modules)
        # Which blocks reduce their gradient in float64 (`PRECISE_BELOW`); the monitor updates it.
        self.precise: list[bool] = [True] * len(self.modules)
        self.reset()

    # -- state of the current step ---------------------------------------------------------------
    def reset(self) -> None:
        """Forget the current step's pieces (called after each `flat`)."""
        k = len(self.modules)
        self._grad_sq: list[torch.Tensor | None] = [None] * k
        self._moments: list[torch.Tensor | None] = [None] * k
        self._branch: list[torch.Tensor | None] = [None] * k
        self._counts = [0] * k
        self._branch_counts = [0] * k
        self.forward_seen = False
        self.backward_seen = False
        self._device: torch.device | None = None

    def remove(self) -> None:
        """Take the hooks off the modules."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    # -- hooks -------------------------------------------------------------------------------------
    def _forward_hook(self, k: int):
        def hook(module: nn.Module, args: tuple, output: object) -> None:
            if not self.active or self.paused or not torch.is_grad_enabled():
                return
            out = _first_tensor(output)
            if out is None or not out.is_floating_point():
                return
            self.forward_seen = True
            self._device = out.device
            if self.forward_stats:
                with torch.no_grad():
                    self._add_forward(k, out, _first_tensor(args))
            if out.requires_grad:
                out.register_hook(self._grad_hook(k))

        return hook

    def _add_forward(self, k: int, out: torch.Tensor, inp: torch.Tensor | None) -> None:
        moments, n = channel_moments(out)
        self._moments[k] = moments if self._moments[k] is None else self._moments[k] + moments
        self._counts[k] += n
        self._channels[k] = moments.shape[1]
        if inp is not None and inp.shape == out.shape and inp.is_floating_point():
            branch, n_b = channel_moments(out.detach() - inp.detach())
            self._branch[k] = branch if self._branch[k] is None else self._branch[k] + branch
            self._branch_counts[k] += n_b
            self._branch_channels[k] = branch.shape[1]

    def _grad_hook(self, k: int):
        def hook(grad: torch.Tensor) -> None:
            self.backward_seen = True
            g = grad.detach()
            norm = torch.linalg.vector_norm(g, dtype=STATS_DTYPE if self.precise[k] else REDUCE_DTYPE)
            sq = norm.to(STATS_DTYPE).square()
            self._grad_sq[k] = sq if self._grad_sq[k] is None else self._grad_sq[k] + sq

        return hook

    # -- reading a step ------------------------------------------------------------------------------
    def flat(self) -> tuple[torch.Tensor, list[bool]]:
        """The step's pieces as one flat `STATS_DTYPE` vector on the device, and which blocks got
        a gradient. Layout: grad_sq (K), counts (K), branch counts (K), then per block its moments
        and its branch moments (zeros where missing, sized by the channels seen before)."""
        device = self._device or torch.device("cpu")
        k = len(self.modules)
        grad_seen = [g is not None for g in self._grad_sq]
        zero = torch.zeros((), dtype=STATS_DTYPE, device=device)
        pieces = [torch.stack([g if g is not None else zero for g in self._grad_sq]).reshape(k)]
        pieces.append(host_to_device(self._counts + self._branch_counts, STATS_DTYPE, device))
        for j in range(k):
            for held, width in ((self._moments[j], self._channels[j]), (self._branch[j], self._branch_channels[j])):
                if held is not None:
                    pieces.append(held.reshape(-1))
                elif width:
                    pieces.append(torch.zeros(MOMENTS * width, dtype=STATS_DTYPE, device=device))
        return torch.cat(pieces), grad_seen

    def split(self, host: np.ndarray, grad_seen: Sequence[bool], n_extra: int) -> Gathered:
        """`flat`'s vector (plus ``n_extra`` appended values), read back, as a `Gathered`."""
        k = len(self.modules)
        grad_sq = host[:k].astype(np.float64)
        grad_sq[~np.asarray(grad_seen, dtype=bool)] = np.nan
        counts = host[k : 2 * k].astype(np.float64)
        branch_counts = host[2 * k : 3 * k].astype(np.float64)
        at = 3 * k
        moments: list[np.ndarray | None] = []
        branch: list[np.ndarray | None] = []
        for j in range(k):
            for width, into, n in (
                (self._channels[j], moments, counts[j]),
                (self._branch_channels[j], branch, branch_counts[j]),
            ):
                if width:
                    block = host[at : at + MOMENTS * width].astype(np.float64).reshape(MOMENTS, width)
                    at += MOMENTS * width
                    into.append(block if n > 0 else None)
                else:
                    into.append(None)
        extra = host[at : at + n_extra].astype(np.float64)
        return Gathered(grad_sq, moments, counts, branch, branch_counts, extra)


def moment_stats(moments: np.ndarray | None, count: float) -> tuple[float, float]:
    """Average channel squared mean and average channel variance from per-channel sums.

    Args:
        moments: ``(MOMENTS, C)`` sums of x and x^2 per channel; count: elements per channel.

    Returns:
        (mean over channels of mean_c^2, mean over channels of var_c); nan when nothing was seen.
    """
    if moments is None or count <= 0:
        return float("nan"), float("nan")
    mean = moments[0] / count
    var = np.maximum(moments[1] / count - mean * mean, 0.0)  # rounding can leave -1e-9
    return float(np.mean(mean * mean)), float(np.mean(var))
