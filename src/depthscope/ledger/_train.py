"""A small, deterministic training loop shared by the ledger's training experiments."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from depthscope._errors import NonFiniteError
from depthscope.ledger._data import Dataset


@dataclass
class TrainingRun:
    """Losses of one run.

    Attributes:
        train_loss: mini-batch training loss at every step, (steps,).
        final_train_loss: full training-set loss after the last step.
        test_accuracy: accuracy on the test split after the last step.
    """

    train_loss: list[float]
    final_train_loss: float
    test_accuracy: float


def train_classifier(
    model: nn.Module,
    data: Dataset,
    *,
    steps: int,
    lr: float,
    batch: int = 128,
    seed: int = 0,
    optimizer: str = "sgd",
    momentum: float = 0.9,
) -> TrainingRun:
    """Train ``model`` (maps (n, d) -> (n, classes) logits) with cross-entropy; raises on NaN loss."""
    g = torch.Generator().manual_seed(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    if optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=lr, momentum=momentum)
    elif optimizer == "adam":
        opt = torch.optim.Adam(params, lr=lr)
    else:
        raise ValueError(f"optimizer must be 'sgd' or 'adam', got {optimizer!r}")
    loss_fn = nn.CrossEntropyLoss()
    n = len(data.x_train)
    losses = []
    model.train()
    for step in range(steps):
        idx = torch.randint(n, (min(batch, n),), generator=g)
        loss = loss_fn(model(data.x_train[idx]), data.y_train[idx])
        if not torch.isfinite(loss):
            raise NonFiniteError(f"training loss became {loss.item()} at step {step}", step=step, step_name="train")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    model.eval()
    with torch.no_grad():
        final = loss_fn(model(data.x_train), data.y_train).item()
        acc = (model(data.x_test).argmax(1) == data.y_test).float().mean().item()
    return TrainingRun(losses, final, acc)
