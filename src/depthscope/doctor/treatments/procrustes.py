"""Norm-preserving transitions: each shape-changing projection becomes its nearest scaled isometry.

Identity blocks preserve the gradient norm; a transition (a block that changes the shape: a strided
convolution, a projection to more channels) breaks it unless its operator maps every direction it
keeps by the same factor (Zaeemzadeh, Rahnavard & Shah, TPAMI 2020, "Norm-Preservation: Why Residual
Networks Can Become Extremely Deep?"; claim N4). The treatment replaces the weight of every
shape-changing layer inside a shape-changing body block by its orthogonal-Procrustes projection:

- a Conv2d (ungrouped, undilated) with c_in != c_out or a stride: the zoo's `procrustes_`, every
  nonzero singular value of the circular operator set to sqrt(c_out / c_in) (exact for 1x1
  kernels; for larger kernels the crop to the kernel support only narrows the spread);
- a Linear with in != out: sqrt(out / in) U V^T from W = U S V^T, the nearest scaled
  semi-orthogonal matrix in Frobenius norm.

Other layers are left alone. The function changes (``preserves_function`` is False).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from depthscope._errors import InputError
from depthscope.doctor._finding import BOTTLENECK, ILL_CONDITIONED
from depthscope.doctor._structure import BlockInfo, body_blocks, treated_copy, weight_layers
from depthscope.doctor._treatment import Case, Treatment
from depthscope.doctor.treatments._common import stable
from depthscope.probing import Report
from depthscope.zoo import procrustes_

# The promise: at every transition the ratio sigma_max / rms (the spread of its singular values)
# does not grow by more than this fraction, and falls by at least this fraction at one of them.
SPREAD_RTOL = 0.01


def projectable(layer: nn.Module) -> bool:
    """A Linear or ungrouped, undilated Conv2d that changes the width or subsamples."""
    if isinstance(layer, nn.Linear):
        return layer.in_features != layer.out_features
    if isinstance(layer, nn.Conv2d):
        plain = layer.groups == 1 and tuple(layer.dilation) == (1, 1)
        return plain and (layer.in_channels != layer.out_channels or tuple(layer.stride) != (1, 1))
    return False


def _targets(case: Case) -> list[BlockInfo]:
    """Shape-changing body blocks holding at least one projectable layer."""
    return [
        b for b in body_blocks(case) if not b.shape_preserving and any(projectable(m) for m in weight_layers(b.module))
    ]


@torch.no_grad()
def procrustes_linear_(layer: nn.Linear) -> nn.Linear:
    """Set ``layer.weight`` (out, in) to sqrt(out / in) U V^T, its nearest scaled semi-orthogonal matrix."""
    w = layer.weight
    u, _, vh = torch.linalg.svd(w.to(torch.float64), full_matrices=False)
    w.copy_((u @ vh * math.sqrt(w.shape[0] / w.shape[1])).to(w.dtype))
    return layer


def _spread(row) -> float:
    return row.local_sigma_max / row.local_rms if row.local_rms > 0 else math.inf


class Procrustes(Treatment):
    """Project each transition's shape-changing weights onto the nearest scaled isometry."""

    name = "procrustes"
    title = "Norm-preserving transitions: Procrustes projection of shape-changing weights"
    source = (
        "Zaeemzadeh, Rahnavard & Shah 2020, Norm-Preservation: Why Residual Networks Can Become "
        "Extremely Deep? (IEEE TPAMI)"
    )
    treats = (ILL_CONDITIONED, BOTTLENECK)
    preserves_function = False
    promise = (
        "at every transition the singular values are pulled together: sigma_max / rms falls at one and "
        "grows at none; the body's verdict stays stable where it was"
    )

    def applies(self, case: Case) -> str | None:
        targets = _targets(case)
        names = {b.name for b in targets}
        hit = [f for f in case.findings if f.kind in self.treats and (names & set(f.steps))]
        if not hit:
            return None
        steps = [b.name for b in targets if any(b.name in f.steps for f in hit)]
        kinds = sorted({f.kind for f in hit})
        return (
            f"{' and '.join(kinds)} at the transition(s) {', '.join(steps)}: their projections become scaled isometries"
        )

    def blocked(self, case: Case) -> str | None:
        if _targets(case):
            return None
        return "no shape-changing block holds a Linear or Conv2d that changes the width or subsamples"

    def apply(self, model: nn.Module, case: Case) -> nn.Module:
        targets = _targets(case)
        if not targets:
            raise InputError(f"{self.name}: {self.blocked(case)}")
        new, copies = treated_copy(model, targets)
        for _, block in copies:
            for layer in weight_layers(block):
                if projectable(layer):
                    if isinstance(layer, nn.Linear):
                        procrustes_linear_(layer)
                    else:
                        procrustes_(layer)
        return new

    def constants(self, case: Case) -> dict[str, float]:
        layers = [m for b in _targets(case) for m in weight_layers(b.module) if projectable(m)]
        return {"transitions": float(len(_targets(case))), "layers": float(len(layers))}

    def kept(self, before: Report, after: Report) -> bool:
        was = {b.name: b for b in before.blocks if tuple(b.in_shape) != tuple(b.out_shape)}
        span = after.body_span
        rows = [
            b
            for b in after.blocks
            if span is not None and span[0] <= b.index <= span[1] and b.name in was and b.in_shape != b.out_shape
        ]
        if not rows:
            return False
        ratios = [(_spread(b), _spread(was[b.name])) for b in rows]
        no_growth = all(now <= then * (1 + SPREAD_RTOL) for now, then in ratios)
        one_falls = any(now < then * (1 - SPREAD_RTOL) for now, then in ratios)
        return no_growth and one_falls and (stable(after) or not stable(before))
