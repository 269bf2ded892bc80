"""The contract of a treatment: when it applies, what it changes, its source, what it promises.

Writing a new treatment (one module in `depthscope.doctor.treatments`, listed once in
``treatments.TREATMENTS``):

1. Subclass `Treatment` and set the class attributes ``name`` (the registry key, lower-case, as a
   user types it: ``"deepnorm"``), ``title``, ``source`` (the publication whose recipe it applies),
   ``treats`` (the finding kinds it addresses, from `_finding.KINDS`) and ``preserves_function``
   (True only where the treated model computes the same output, which a test checks to 1e-6).
2. ``applies(case)``: why the treatment fits this model and diagnosis, or None. Cheap: it reads
   the findings, the report and the model's structure; it never runs the model.
3. ``blocked(case)``: why it cannot be applied to this model's structure (blocks that change shape,
   no block sequence), or None. A treatment that applies but is blocked is listed with the reason.
4. ``apply(model, case)``: a NEW model (``copy.deepcopy`` first); the original is never modified.
5. ``constants(case)``: the published constants with the values used for this model.
6. ``promise`` (words) and ``kept(before, after)``: what the re-probe of the treated model must
   show (for instance the log gain inside the stable band); `verify` and the conformance tests
   check it.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from depthscope.chain import Chain
from depthscope.doctor._finding import Finding
from depthscope.probing import Report


@dataclass(frozen=True)
class Case:
    """What a treatment's predicates read: the model's probe report at ``x``, the doctor's
    findings, and the chain the probe measured (its steps carry their modules)."""

    report: Report
    findings: tuple[Finding, ...]
    chain: Chain
    x: torch.Tensor

    def has(self, kind: str) -> bool:
        return any(f.kind == kind for f in self.findings)


class Treatment(abc.ABC):
    """A published fix for a finding: see the module docstring for the contract."""

    name: ClassVar[str]
    title: ClassVar[str]
    source: ClassVar[str]
    treats: ClassVar[tuple[str, ...]]
    preserves_function: ClassVar[bool] = False
    promise: ClassVar[str]

    @abc.abstractmethod
    def applies(self, case: Case) -> str | None:
        """Why this treatment fits ``case``, or None."""

    def blocked(self, case: Case) -> str | None:
        """Why it cannot be applied to this model's structure, or None."""
        return None

    @abc.abstractmethod
    def apply(self, model: nn.Module, case: Case) -> nn.Module:
        """A new, treated model; ``model`` is left untouched."""

    def constants(self, case: Case) -> dict[str, float]:
        """The published constants, with the values used for this model."""
        return {}

    @abc.abstractmethod
    def kept(self, before: Report, after: Report) -> bool:
        """Whether the re-probe of the treated model shows what ``promise`` says."""
