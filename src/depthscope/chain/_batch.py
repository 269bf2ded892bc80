"""The batch contract of a chain: inputs are batches ``(B, *S)`` whose examples the steps keep apart.

Every per-example quantity depthscope reports (the Jacobian of example b's output with respect to
example b's input) assumes that no step mixes the examples of a batch. A step that does (a softmax
or a normalisation over dim 0, rows permuted, BatchNorm in training mode) has a Jacobian with
blocks between examples, and the estimators, which push tangents for all examples at once, would
silently add them up (a softmax over dim 0 was reported with a local RMS gain of exactly 0: its
columns sum to zero over the batch, its per-example Jacobians do not). `check_examples_independent`
finds such a step from one extra evaluation.
"""

from __future__ import annotations

import torch

from depthscope._errors import ChainError, InputError, NonFiniteError
from depthscope.chain._step import Step, run_step

# Each moved example's input is moved by this fraction of its largest entry (or by sqrt(eps) of its
# dtype, whichever is larger, so that half precision still resolves it): far above rounding, so a
# step that mixes examples moves the others well above the noise floor below.
PERTURBATION = 1e-3
# An uncoupled step evaluated twice on the same rows returns the same values (CPU kernels are
# deterministic for fixed shapes); a change in the unmoved examples' outputs beyond this many units
# in the last place of their largest entry is counted as coupling (the slack covers reductions whose
# order may vary on accelerators). A softmax over dim 0 in float32 moves them by 2e-4 (B = 32) to
# 5e-5 (B = 4096) of their largest entry: 120x to 24x this floor.
NOISE_ULPS = 16
# Seeds the directions of the moves, so that a check is reproducible.
PERTURBATION_SEED = 20231


def check_batch(x: object, name: str = "x") -> None:
    """Refuse anything that is not a batch ``(B, *S)`` of real values with B >= 1 and S non-empty.

    Raises:
        InputError: not a tensor; a scalar or 1-D tensor (no per-example dimension); an empty batch;
            a tensor on the meta device (shapes without values); a bool or complex dtype.
        NonFiniteError: a floating-point batch with NaN or Inf entries (named as the input, before any
            step runs: NaN != NaN would otherwise make the chain checks blame a step).
    """
    if not isinstance(x, torch.Tensor):
        raise InputError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim == 0:
        raise InputError(f"{name} must have a batch dimension: shape (B, ...), got a scalar")
    if x.ndim == 1:
        raise InputError(
            f"{name} has shape {tuple(x.shape)}; a batch is (B, *S) with at least one dimension per "
            f"example: pass {name}[None] for one example of {x.shape[0]} features, or {name}[:, None] "
            f"for {x.shape[0]} one-dimensional states"
        )
    if x.shape[0] == 0:
        raise InputError(f"{name} is an empty batch (shape {tuple(x.shape)}); it needs at least one example")
    if x.device.type == "meta":
        raise InputError(
            f"{name} is on the meta device (a shape without values); depthscope evaluates the model, "
            "so it needs a tensor with values (on the CPU or an accelerator)"
        )
    if x.dtype == torch.bool or x.is_complex():
        raise InputError(f"{name} has dtype {x.dtype}; expected floating point (or integer ids for an embedding)")
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        raise NonFiniteError(f"the input {name} contains NaN or Inf", step=-1, step_name="input")


def check_examples_independent(step: Step, k: int, x: torch.Tensor, y: torch.Tensor) -> None:
    """Raise if step k mixes the examples of a batch, from one extra evaluation of the step.

    ``x: (B, *S_k)`` is the step's input and ``y = step(x): (B, *S_{k+1})`` its output. The first
    B // 2 examples are moved by a small random amount (fixed seed) and the step run again: the
    outputs of the others must not change. Moving half the batch, not one example, keeps the test
    sensitive whatever B: a softmax over dim 0 of B examples responds to one example by ~1/B^2 of
    its outputs, to half of them by a share independent of B. Rows reversed or rolled cross the
    halves and are caught; a permutation within the first half alone would go unseen. Costs one
    forward pass of the step (no graph); does nothing for B = 1.

    Raises:
        ChainError: the unmoved examples' outputs changed; names the step.
    """
    B = x.shape[0]
    if B < 2 or not x.is_floating_point() or not y.is_floating_point():
        return
    gen = torch.Generator().manual_seed(PERTURBATION_SEED + k)
    moved_rows, kept_rows = slice(0, B // 2), slice(B // 2, B)
    x_moved = x.detach()[moved_rows]
    largest = x_moved.flatten(1).abs().amax(1)
    rel = max(PERTURBATION, torch.finfo(x.dtype).eps ** 0.5)
    size = rel * torch.where(largest > 0, largest, 1.0)
    noise = torch.randn(x_moved.shape, generator=gen, dtype=torch.float64).to(x.dtype).to(x.device)
    moved = x.detach().clone()
    moved[moved_rows] = x_moved + size.reshape(-1, *[1] * (x.ndim - 1)) * noise
    with torch.no_grad():
        y_moved = run_step(step, k, moved)
        if y_moved.shape != y.shape:
            raise ChainError(
                f"step {k} ({step.name!r}) returns shape {tuple(y_moved.shape)} for an input of the same "
                f"shape that gave {tuple(y.shape)}: its output shape depends on the values"
            )
        kept = y.detach()[kept_rows]
        change = float((y_moved[kept_rows] - kept).abs().max())
        floor = NOISE_ULPS * torch.finfo(y.dtype).eps * float(kept.abs().max())
    if not change <= floor:  # also catches a NaN change
        raise ChainError(
            f"step {k} ({step.name!r}) mixes the examples of a batch: moving the inputs of {B // 2} "
            f"of its {B} examples (by {rel:.1g} of their largest entry) changed the outputs of the "
            f"others by up to {change:.3g}. depthscope measures each example's own Jacobian "
            "(d output_b / d input_b), which such a step does not have (a "
            "softmax or normalisation over dim 0, rows mixed, BatchNorm in training mode, or "
            "randomness in the step). Make the step act on each example separately"
        )
