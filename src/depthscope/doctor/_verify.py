"""`verify`: the model before and after treatment, side by side, optionally after a short training.

result = verify(model, treated, x)                               # two probe reports compared
result = verify(model, treated, x, train=digits_task(steps=200))  # and both trained the same way
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from depthscope._errors import InputError, NonFiniteError, check_count, check_seed
from depthscope._io import encode_json
from depthscope.doctor._text import number, paragraph
from depthscope.ledger import Dataset, digits, train_classifier
from depthscope.probing import STABLE, Report, probe

# The digits task: 8x8 images flattened to 64 values, ten classes.
DIGITS_FEATURES = 64
DIGITS_CLASSES = 10
# SGD with momentum 0.9 at this learning rate trains treated deep MLPs on digits in 200 steps
# (benchmarks/doctor_cases.py: a 50-deep ReZero-wrapped sigmoid net 2.30 -> 0.26, a 20-deep critical
# tanh net -> 0.09); at 0.05 a 20-deep isometric linear net diverges (each of its layers moves the
# output at the full rate). Batch 64 of the ~1350 training images.
DIGITS_LR = 0.01
DIGITS_BATCH = 64
DIGITS_MOMENTUM = 0.9
# The per-step table prints at most this many rows (the first and last halves of longer chains).
TABLE_ROWS = 24


@dataclass(frozen=True)
class TrainTask:
    """A short, deterministic training run on scikit-learn's digits (`depthscope.ledger.digits`).

    Attributes:
        steps: optimiser steps; lr, momentum, optimizer ("sgd" | "adam"), batch: as in
            `depthscope.ledger.train_classifier`; seed: the mini-batch order (both models see the
            same batches); data_seed: the train/test split.
    """

    steps: int = 200
    lr: float = DIGITS_LR
    seed: int = 0
    batch: int = DIGITS_BATCH
    optimizer: str = "sgd"
    momentum: float = DIGITS_MOMENTUM
    data_seed: int = 0


def digits_task(
    steps: int = 200, lr: float = DIGITS_LR, seed: int = 0, batch: int = DIGITS_BATCH, optimizer: str = "sgd"
) -> TrainTask:
    """A `TrainTask` on digits; models trained on it must map (n, 64) -> (n, 10) logits."""
    check_count("steps", steps, 1)
    check_count("batch", batch, 1)
    check_seed(seed)
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not (math.isfinite(lr) and lr > 0):
        raise InputError(f"lr must be a positive finite number, got {lr!r}")
    if optimizer not in ("sgd", "adam"):
        raise InputError(f"optimizer must be 'sgd' or 'adam', got {optimizer!r}")
    return TrainTask(steps=int(steps), lr=float(lr), seed=int(seed), batch=int(batch), optimizer=optimizer)


@dataclass(frozen=True)
class Training:
    """One model's run of a `TrainTask`: its final full-training-set loss (nan if it diverged),
    test accuracy, and where it diverged (None if it did not)."""

    final_loss: float
    test_accuracy: float
    diverged_at: int | None = None


def _train(model: nn.Module, task: TrainTask, data: Dataset, label: str) -> Training:
    """Train a deep copy of ``model`` on ``data`` as ``task`` says; ``model`` is untouched."""
    twin = copy.deepcopy(model)
    with torch.no_grad():
        twin.eval()
        try:
            out = twin(data.x_train[:2])
        except (RuntimeError, ValueError, TypeError) as err:
            raise InputError(
                f"the {label} model cannot take digits images: it must map (n, {DIGITS_FEATURES}) -> "
                f"(n, {DIGITS_CLASSES}) ({err})"
            ) from err
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, DIGITS_CLASSES):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise InputError(
            f"the {label} model maps digits (2, {DIGITS_FEATURES}) to {shape}; training on digits needs "
            f"(n, {DIGITS_FEATURES}) -> (n, {DIGITS_CLASSES}) logits"
        )
    try:
        run = train_classifier(
            twin,
            data,
            steps=task.steps,
            lr=task.lr,
            batch=task.batch,
            seed=task.seed,
            optimizer=task.optimizer,
            momentum=task.momentum,
        )
    except NonFiniteError as err:
        return Training(math.nan, math.nan, err.step)
    return Training(run.final_train_loss, run.test_accuracy)


def gradient_log_ratio(report: Report) -> float:
    """log ||dE/dx|| at the body's input minus at its top (the input of the step after the body):
    0 when the gradient crosses the body unchanged, below -1 when the input's is more than a
    factor e smaller. Without a body, the first step's input against the last step's."""
    rows = {b.index: b for b in report.blocks}
    if report.body_span is None:
        first, top = report.blocks[0].index, report.blocks[-1].index
    else:
        first, last = report.body_span
        top = last + 1 if last + 1 in rows else last
    return rows[first].grad_log_norm - rows[top].grad_log_norm


@dataclass(frozen=True)
class Verification:
    """Before and after: the two probe reports and, with a training task, both runs.

    Attributes:
        before, after: probe reports of the original and the treated model at the same input.
        task: the training task, or None.
        trained_before, trained_after: the two runs (None without a task).
    """

    before: Report
    after: Report
    task: TrainTask | None = None
    trained_before: Training | None = None
    trained_after: Training | None = None

    @property
    def stable(self) -> bool:
        """The treated model's verdict is "stable"."""
        return self.after.verdict == STABLE

    def rows(self) -> list[tuple[str, float, float, float, float]]:
        """(step, log gain 0->k before, after, grad ratio before, after) for the steps whose names
        appear in both reports, in the original's order."""
        after = {b.name: b for b in self.after.blocks}
        return [
            (b.name, b.cum_log_rms, after[b.name].cum_log_rms, b.grad_ratio, after[b.name].grad_ratio)
            for b in self.before.blocks
            if b.name in after
        ]

    def summary(self) -> list[tuple[str, str, str]]:
        """(quantity, before, after) rows of the side-by-side table, as text."""
        b, a = self.before, self.after
        out = [
            ("verdict", b.verdict, a.verdict),
            ("log gain", f"{b.log_gain:+.2f}", f"{a.log_gain:+.2f}"),
            ("depth scale", number(b.depth_scale), number(a.depth_scale)),
            ("input/top gradient (log)", f"{gradient_log_ratio(b):+.2f}", f"{gradient_log_ratio(a):+.2f}"),
        ]
        if self.trained_before is not None and self.trained_after is not None:
            for label, key in (("final train loss", "final_loss"), ("test accuracy", "test_accuracy")):
                out.append((label, _run_text(self.trained_before, key), _run_text(self.trained_after, key)))
        return out

    def to_dict(self) -> dict[str, Any]:
        return encode_json(
            {
                "before": self.before.to_dict(),
                "after": self.after.to_dict(),
                "gradient_log_ratio": [gradient_log_ratio(self.before), gradient_log_ratio(self.after)],
                "task": None if self.task is None else asdict(self.task),
                "trained_before": None if self.trained_before is None else asdict(self.trained_before),
                "trained_after": None if self.trained_after is None else asdict(self.trained_after),
            }
        )

    def lines(self, width: int = 80) -> list[str]:
        """The comparison as plain-text lines of at most ``width`` columns."""
        out = [f"{'':26}{'before':>18}{'after':>18}"]
        out += [f"{q:26}{b:>18}{a:>18}" for q, b, a in self.summary()]
        if self.task is not None:
            t = self.task
            out += paragraph(
                f"trained {t.steps} steps on digits, {t.optimizer} lr {t.lr:g}, batch {t.batch}, seed {t.seed}, "
                "both from the same batches",
                "",
                width,
            )
        rows = self.rows()
        if rows:
            out += [
                "",
                f"{'step':24}{'log gain 0->k':>28}{'grad ratio':>28}",
                f"{'':24}{'before':>14}{'after':>14}{'before':>14}{'after':>14}",
            ]
            shown = rows if len(rows) <= TABLE_ROWS else [*rows[: TABLE_ROWS // 2], None, *rows[-TABLE_ROWS // 2 :]]
            for row in shown:
                if row is None:
                    out.append(f"{'...':24}")
                    continue
                name, cb, ca, gb, ga = row
                out.append(f"{name[:23]:24}{cb:>+14.3f}{ca:>+14.3f}{gb:>14.4g}{ga:>14.4g}")
        return out

    def __str__(self) -> str:
        return "\n".join(self.lines())


def _run_text(run: Training, key: str) -> str:
    if run.diverged_at is not None:
        return f"diverged (step {run.diverged_at})"
    return f"{getattr(run, key):.4f}"


def verify(
    model: nn.Module, treated: nn.Module, x: torch.Tensor, train: TrainTask | None = None, **probe_kwargs: Any
) -> Verification:
    """Probe ``model`` and ``treated`` at ``x`` with the same settings and, with ``train``, train
    deep copies of both the same way; neither model is modified.

    Raises:
        InputError: with ``train``, a model that does not map (n, 64) -> (n, 10).
    """
    before = probe(model, x, **probe_kwargs)
    after = probe(treated, x, **probe_kwargs)
    if train is None:
        return Verification(before, after)
    data = digits(seed=train.data_seed)
    return Verification(
        before, after, train, _train(model, train, data, "original"), _train(treated, train, data, "treated")
    )
