"""Treatments that edit some of the body's blocks, their targets: the shape they share.

A `TargetedTreatment` applies when the diagnosis has a finding it treats and the model has targets;
it is blocked, with `unfit`'s reason, when there are none; `apply` copies the model and hands the
targets to `treat`. Its two families: `ResidualBranchTreatment` (zero-gamma, Fixup: the branches
of residual blocks) and, in `_transformers`, `PostLNTreatment` (DeepNorm, Pre-LN, Admin).
"""

from __future__ import annotations

import abc
from typing import ClassVar

from torch import nn

from depthscope._errors import InputError
from depthscope.doctor._structure import BlockInfo, body_blocks, residual_blocks
from depthscope.doctor._treatment import Case, Treatment
from depthscope.doctor.treatments._common import BODY_STABLE_PROMISE, stable
from depthscope.probing import Report


class TargetedTreatment(Treatment):
    """A treatment of the body's blocks that `targets` selects (see the module docstring).

    Subclasses set ``fits`` (what a target is, plural: "Post-LN blocks") and fill `targets`,
    `unfit`, `remedy` and `treat`.
    """

    fits: ClassVar[str]

    @abc.abstractmethod
    def targets(self, case: Case) -> list[BlockInfo]:
        """The blocks this treatment edits, in chain order."""

    @abc.abstractmethod
    def unfit(self, case: Case) -> str:
        """Why the model has no target."""

    @abc.abstractmethod
    def remedy(self, case: Case, targets: list[BlockInfo]) -> str:
        """What the treatment does to them, for `applies`' sentence."""

    @abc.abstractmethod
    def treat(self, model: nn.Module, case: Case, targets: list[BlockInfo]) -> nn.Module:
        """A treated copy of ``model`` (never ``model`` itself)."""

    def applies(self, case: Case) -> str | None:
        kinds = [k for k in self.treats if case.has(k)]
        targets = self.targets(case)
        if not kinds or not targets:
            return None
        return f"the model reads {' and '.join(kinds)} and has {len(targets)} {self.fits}: {self.remedy(case, targets)}"

    def blocked(self, case: Case) -> str | None:
        return None if self.targets(case) else self.unfit(case)

    def apply(self, model: nn.Module, case: Case) -> nn.Module:
        targets = self.targets(case)
        if not targets:
            raise InputError(f"{self.name}: {self.unfit(case)}")
        return self.treat(model, case, targets)


class ResidualBranchTreatment(TargetedTreatment):
    """A treatment of residual branches of a known layout; its promise: the body's gain in band."""

    promise = BODY_STABLE_PROMISE
    # Why a model with residual blocks still has no target.
    no_target: ClassVar[str]

    def unfit(self, case: Case) -> str:
        return self.no_target if residual_blocks(body_blocks(case)) else "the model has no residual blocks"

    def kept(self, before: Report, after: Report) -> bool:
        return stable(after)
