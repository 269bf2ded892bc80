"""Residual wrapping with a branch scale: each shape-preserving plain block F becomes x + alpha F(x).

Two siblings, one wrapper (`depthscope.doctor._blocks.ScaledResidual`):

- ``rezero``: alpha = 0, a learnable scalar per block (ReZero, Bachlechner et al. 2020; SkipInit,
  De & Smith 2020). Every wrapped block is exactly the identity at initialisation, so its Jacobian
  is exactly I and the body's gain is 1 at any depth; training grows alpha. This does NOT keep the
  model's function (the blocks' outputs are dropped until alpha moves): what it keeps is the
  signal, unchanged through every wrapped block.
- ``stable-resnet``: alpha = 1/sqrt(L) fixed, with L the number of residual blocks after wrapping
  (Hayou et al. 2021, Stable ResNet): the branch Jacobians add up to a bounded end-to-end gain as
  L grows. The function changes too.

Blocks that change shape or already have a skip connection are left as they are (see
`depthscope.doctor._structure` for how a skip is detected).
"""

from __future__ import annotations

import abc
import math

from torch import nn

from depthscope._errors import InputError
from depthscope.doctor._blocks import ScaledResidual
from depthscope.doctor._structure import body_blocks, plain_blocks, replace_module, residual_blocks, treated_copy
from depthscope.doctor._treatment import Case, Treatment
from depthscope.doctor.treatments._common import BODY_STABLE_PROMISE, GAIN_KINDS, stable
from depthscope.probing import Report


class _ResidualWrap(Treatment):
    """Wrap each shape-preserving plain block as x + alpha F(x); subclasses fix alpha."""

    treats = GAIN_KINDS
    preserves_function = False
    promise = BODY_STABLE_PROMISE
    learnable: bool

    @abc.abstractmethod
    def alpha(self, n_residual: int) -> float:
        """The branch scale for a model with ``n_residual`` residual blocks after wrapping."""

    def _counts(self, case: Case) -> tuple[int, int]:
        blocks = body_blocks(case)
        return len(plain_blocks(blocks)), len(residual_blocks(blocks))

    def applies(self, case: Case) -> str | None:
        kinds = [k for k in self.treats if case.has(k)]
        wrap, already = self._counts(case)
        if not kinds or wrap == 0:
            return None
        return (
            f"the model reads {' and '.join(kinds)} and has {wrap} shape-preserving blocks without a skip "
            f"connection: x + alpha F(x) with alpha = {self.alpha(wrap + already):.4g}"
        )

    def blocked(self, case: Case) -> str | None:
        blocks = body_blocks(case)
        if not blocks:
            return "the model has no body of blocks between a stem and a head"
        if plain_blocks(blocks):
            return None
        if all(not b.shape_preserving for b in blocks):
            return "every block changes the shape of its input, so x + F(x) is not defined"
        if all(b.skip for b in blocks if b.shape_preserving):
            return "every shape-preserving block already has a skip connection"
        return "no shape-preserving block is known to lack a skip connection"

    def apply(self, model: nn.Module, case: Case) -> nn.Module:
        blocks = body_blocks(case)
        targets = plain_blocks(blocks)
        if not targets:
            raise InputError(f"{self.name}: {self.blocked(case)}")
        alpha = self.alpha(len(targets) + len(residual_blocks(blocks)))
        new, copies = treated_copy(model, targets)
        for path, block in copies:
            replace_module(new, path, ScaledResidual(block, alpha, learnable=self.learnable))
        return new

    def constants(self, case: Case) -> dict[str, float]:
        wrap, already = self._counts(case)
        return {"alpha": self.alpha(wrap + already), "L": float(wrap + already), "wrapped": float(wrap)}

    def kept(self, before: Report, after: Report) -> bool:
        return stable(after)


class ReZero(_ResidualWrap):
    """x + alpha F(x) with a learnable alpha = 0: every wrapped block's Jacobian is exactly I."""

    name = "rezero"
    title = "ReZero / SkipInit: residual wrapping with a zero-initialised learnable branch scale"
    source = (
        "Bachlechner, Majumder, Mao, Cottrell & McAuley 2020, ReZero is All You Need: Fast Convergence "
        "at Large Depth; De & Smith 2020, Batch Normalization Biases Residual Blocks Towards the Identity "
        "Function in Deep Networks (SkipInit)"
    )
    learnable = True

    def alpha(self, n_residual: int) -> float:
        return 0.0


class StableResNet(_ResidualWrap):
    """x + F(x) / sqrt(L), fixed: a bounded end-to-end gain as the depth L grows."""

    name = "stable-resnet"
    title = "Stable ResNet: residual wrapping with branch scale 1/sqrt(L)"
    source = "Hayou, Clerico, He, Deligiannidis, Doucet & Rousseau 2021, Stable ResNet (AISTATS)"
    learnable = False

    def alpha(self, n_residual: int) -> float:
        return 1.0 / math.sqrt(max(1, n_residual))
