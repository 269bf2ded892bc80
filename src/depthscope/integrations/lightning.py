"""`DepthscopeCallback`: the training monitor inside a PyTorch Lightning ``Trainer``.

    trainer = Trainer(callbacks=[DepthscopeCallback(every=1, log_dir="runs/exp1")])

The monitor is created at the first training batch, before its forward pass, from that batch's
input (or ``pl_module.example_input_array``), and reads each step in ``on_before_optimizer_step``:
after the backward (and, under DDP, after the gradients' all-reduce), before the optimiser. With
gradient accumulation that hook runs once per optimiser step, and the accumulated micro-batches'
statistics add up. Under Lightning's mixed precision the parameter gradients are already unscaled
at that point and the activation gradients are not; the callback tells the monitor so. Automatic
optimisation only (one optimiser step per batch). The loss is not recorded: Lightning logs it.
"""

from __future__ import annotations

import os
from typing import Any

import lightning.pytorch as pl
import torch

from depthscope._errors import InputError
from depthscope.monitor import History, Monitor

# Examples of the first batch kept as the probe batch when probe_every is set without a probe_input.
PROBE_BATCH = 4


def _batch_input(pl_module: pl.LightningModule, batch: Any) -> torch.Tensor:
    """The model input in a training batch: ``example_input_array``, the batch itself, or the first
    item of a tuple/list batch ``(x, y)``."""
    example = getattr(pl_module, "example_input_array", None)
    if isinstance(example, torch.Tensor):
        return example.to(pl_module.device)
    if isinstance(batch, torch.Tensor):
        return batch
    if isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], torch.Tensor):
        return batch[0]
    raise InputError(
        f"DepthscopeCallback cannot find the model input in a batch of type {type(batch).__name__}; "
        "set pl_module.example_input_array or pass example= to DepthscopeCallback"
    )


class DepthscopeCallback(pl.Callback):
    """`depthscope.Monitor` as a Lightning callback; the arguments are the monitor's.

    Attributes:
        monitor: the `Monitor` (None before the first training batch).
        history: the monitor's `History` (None before the first training batch).
    """

    def __init__(
        self,
        every: int = 1,
        *,
        probe_every: int | None = None,
        probe_input: torch.Tensor | None = None,
        example: torch.Tensor | None = None,
        blocks=None,
        log_dir: str | os.PathLike | None = None,
        on_nonfinite: str = "warn",
        console: bool = True,
        forward_stats: bool = True,
        track_updates: bool = True,
    ):
        super().__init__()
        self.options = dict(
            every=every,
            probe_every=probe_every,
            blocks=blocks,
            log_dir=log_dir,
            on_nonfinite=on_nonfinite,
            console=console,
            forward_stats=forward_stats,
            track_updates=track_updates,
        )
        self.probe_input = probe_input
        self.example = example
        self.monitor: Monitor | None = None

    @property
    def history(self) -> History | None:
        return None if self.monitor is None else self.monitor.history

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self.monitor is not None:
            return
        x = self.example if self.example is not None else _batch_input(pl_module, batch)
        probe_input = self.probe_input
        if probe_input is None and self.options["probe_every"] is not None:
            probe_input = x[:PROBE_BATCH].detach().clone()
        scaler = getattr(trainer.precision_plugin, "scaler", None)
        self.monitor = Monitor(pl_module, example=x, probe_input=probe_input, scaler=scaler, **self.options)

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        if self.monitor is not None:
            # Lightning's AMP plugin calls scaler.unscale_(optimizer) before this hook.
            self.monitor.step(params_unscaled=self.monitor.scaler is not None)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.monitor is not None:
            self.monitor.close()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if self.monitor is not None:
            self.monitor.close()
