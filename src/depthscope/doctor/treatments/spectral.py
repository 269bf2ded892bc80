"""Rescaling a plain stack's weights, keeping their directions: two siblings.

``spectral-rescale`` (an exploding or vanishing linear / ReLU stack): every weight layer of the body
is multiplied by the one factor that sets its RMS singular value ||W||_F / sqrt(fan_in) to the
critical gain of the activation, 1/|a| for a linear activation of slope a (1 when there is no
activation) and sqrt(2) for ReLU (half the units pass; He et al. 2015). The RMS singular value, not
the spectral norm, is the target because the probe's log gain is the log RMS gain, which the RMS
singular values multiply to (normalising a square Gaussian matrix's spectral norm to 1 would leave
its RMS singular value near 1/2, and the stack would vanish). Biases are multiplied by the same
factor, so a ReLU layer's output is scaled as a whole. This is the critical scale of mean-field
theory read off the weights the model has, rather than drawn anew (compare ``criticality``).

``desaturate`` (a tanh / sigmoid stack whose activations sit on their flat parts): the inputs of
the nonlinearities are shrunk. The body's effective weight and bias scales sigma_w = rms row norm
of W (the pre-activation scale per unit input) and sigma_b = rms(b) are measured, and one factor c
is found with chi_1(c sigma_w, c sigma_b) = 1 (`depthscope.doctor._meanfield`; Schoenholz et al.
2017): the point on the ray through the model's own (sigma_w, sigma_b) where gradients are
preserved. Each layer's weights are then set to row-norm scale c sigma_w and its biases to scale
c sigma_b, keeping their directions.

Both change the function (``preserves_function`` is False).
"""

from __future__ import annotations

import math

import torch
from scipy.optimize import brentq
from torch import nn

from depthscope._errors import InputError
from depthscope.doctor._finding import EXPLODING, SATURATION, VANISHING
from depthscope.doctor._meanfield import critical_sigma_w, meanfield
from depthscope.doctor._structure import (
    ACTIVATION_NAMES,
    ZOO_LINEAR,
    activation_of,
    body_blocks,
    is_plain_stack,
    treated_copy,
    weight_layers,
)
from depthscope.doctor._treatment import Case, Treatment
from depthscope.doctor.treatments._common import BODY_STABLE_PROMISE, stable
from depthscope.probing import Report

# He et al. 2015: a ReLU layer passes half of its input's energy, so its weights' RMS singular
# value must be sqrt(2) to keep the gain at 1.
RELU_GAIN = math.sqrt(2.0)
# The bounded activations `desaturate` treats.
SATURATING = ("tanh", "sigmoid")
# Range of the factor c searched for chi_1(c sigma_w, c sigma_b) = 1 (a model 1000 times too wide
# or too narrow is far outside any initialisation in use).
FACTOR_RANGE = (1e-3, 1e3)
ROOT_RTOL = 1e-10
# Why neither sibling fits a body that `_plain` declines.
NOT_PLAIN = (
    "the body is not known to be a plain stack of weight layers (it has residual or unrecognised blocks, or no weights)"
)


def _rms_singular_value(w: torch.Tensor) -> float:
    """||W||_F / sqrt(fan_in): the RMS singular value of a (out, in) matrix, and of a stride-1
    convolution's operator per input coordinate (``w[1]`` is its in-channel count)."""
    return float(w.detach().to(torch.float64).norm() / math.sqrt(w.shape[1]))


def _rms_row_norm(w: torch.Tensor) -> float:
    """sqrt(||W||_F^2 / out): the effective sigma_w of W_ij ~ N(0, sigma_w^2 / fan_in)."""
    return float(w.detach().to(torch.float64).norm() / math.sqrt(w.shape[0]))


def _plain(case: Case) -> bool:
    blocks = body_blocks(case)
    return is_plain_stack(blocks) and any(weight_layers(b.module) for b in blocks)


def critical_gain(case: Case) -> float | None:
    """The RMS singular value each weight is set to: sqrt(2) for ReLU, 1/|a| for the linear
    activation of slope a, 1 for a body with no activation; None for any other activation."""
    blocks = body_blocks(case)
    act = activation_of(blocks)
    if act is None:
        found = [m for b in blocks for m in b.module.modules() if type(m) in ACTIVATION_NAMES]
        return None if found else 1.0
    if isinstance(act, nn.ReLU):
        return RELU_GAIN
    if isinstance(act, ZOO_LINEAR) and act.slope != 0:
        return 1.0 / abs(act.slope)
    return None


class SpectralRescale(Treatment):
    """Every weight of a plain linear / ReLU stack to the critical RMS singular value."""

    name = "spectral-rescale"
    title = "Spectral rescaling: every weight's RMS singular value to the activation's critical gain"
    source = (
        "He, Zhang, Ren & Sun 2015, Delving Deep into Rectifiers (ICCV); Saxe, McClelland & Ganguli 2014, "
        "Exact solutions to the nonlinear dynamics of learning in deep linear neural networks (ICLR)"
    )
    treats = (EXPLODING, VANISHING)
    preserves_function = False
    promise = BODY_STABLE_PROMISE

    def applies(self, case: Case) -> str | None:
        kinds = [k for k in self.treats if case.has(k)]
        gain = critical_gain(case)
        if not kinds or not _plain(case) or gain is None:
            return None
        return (
            f"a plain linear/ReLU stack reads {' and '.join(kinds)}: every weight rescaled to RMS singular "
            f"value {gain:.4g}"
        )

    def blocked(self, case: Case) -> str | None:
        if not _plain(case):
            return NOT_PLAIN
        if critical_gain(case) is None:
            return "the body's activation is not linear or ReLU (see criticality or desaturate)"
        return None

    def apply(self, model: nn.Module, case: Case) -> nn.Module:
        gain = critical_gain(case)
        if gain is None or not _plain(case):
            raise InputError(f"{self.name}: {self.blocked(case)}")
        new, copies = treated_copy(model, body_blocks(case))
        with torch.no_grad():
            for _, block in copies:
                for layer in weight_layers(block):
                    rms = _rms_singular_value(layer.weight)
                    if rms == 0:
                        continue
                    layer.weight.mul_(gain / rms)
                    if layer.bias is not None:
                        layer.bias.mul_(gain / rms)
        return new

    def constants(self, case: Case) -> dict[str, float]:
        gain = critical_gain(case)
        return {} if gain is None else {"target_rms_singular_value": gain}

    def kept(self, before: Report, after: Report) -> bool:
        return stable(after)


def _measured_scales(case: Case) -> tuple[float, float]:
    """(sigma_w, sigma_b) of the body: RMS over its weight layers of the row-norm scale, and of the biases."""
    sw2, sb2, n = 0.0, 0.0, 0
    for b in body_blocks(case):
        for layer in weight_layers(b.module):
            sw2 += _rms_row_norm(layer.weight) ** 2
            if layer.bias is not None:
                sb2 += float(layer.bias.detach().to(torch.float64).pow(2).mean())
            n += 1
    return math.sqrt(sw2 / max(n, 1)), math.sqrt(sb2 / max(n, 1))


def critical_factor(activation: nn.Module, sigma_w: float, sigma_b: float) -> float:
    """c with chi_1(c sigma_w, c sigma_b) = 1 for ``activation``."""
    if sigma_b == 0:
        return critical_sigma_w(activation, 0.0) / sigma_w

    def excess(log_c: float) -> float:
        c = math.exp(log_c)
        return meanfield(activation, c * sigma_w, c * sigma_b).chi_1 - 1.0

    lo, hi = (math.log(v) for v in FACTOR_RANGE)
    if excess(lo) * excess(hi) > 0:
        raise InputError(
            f"chi_1 does not cross 1 for factors in {FACTOR_RANGE} at sigma_w={sigma_w}, sigma_b={sigma_b}"
        )
    return math.exp(brentq(excess, lo, hi, rtol=ROOT_RTOL))


class Desaturate(Treatment):
    """Shrink the inputs of a saturated tanh / sigmoid stack onto the critical line, keeping directions."""

    name = "desaturate"
    title = "Input and bias rescaling against saturation: weights and biases onto chi_1 = 1"
    source = (
        "Schoenholz, Gilmer, Ganguli & Sohl-Dickstein 2017, Deep Information Propagation (ICLR); "
        "Glorot & Bengio 2010, Understanding the difficulty of training deep feedforward neural networks"
    )
    treats = (SATURATION, VANISHING, EXPLODING)
    preserves_function = False
    promise = BODY_STABLE_PROMISE

    def _activation(self, case: Case) -> nn.Module | None:
        act = activation_of(body_blocks(case))
        return act if act is not None and ACTIVATION_NAMES[type(act)] in SATURATING else None

    def applies(self, case: Case) -> str | None:
        act = self._activation(case)
        if not case.has(SATURATION) or act is None or not _plain(case):
            return None
        sw, sb = _measured_scales(case)
        mf = meanfield(act, sw, sb)
        return (
            f"a plain {ACTIVATION_NAMES[type(act)]} stack is saturated at sigma_w = {sw:.3g}, sigma_b = {sb:.3g} "
            f"(chi_1 = {mf.chi_1:.3g}): weights and biases shrink by one factor onto chi_1 = 1"
        )

    def blocked(self, case: Case) -> str | None:
        if not _plain(case):
            return NOT_PLAIN
        if self._activation(case) is None:
            return "the body's activation is not a saturating tanh or sigmoid"
        return None

    def _targets(self, case: Case) -> tuple[float, float]:
        act = self._activation(case)
        if act is None or not _plain(case):
            raise InputError(f"{self.name}: {self.blocked(case)}")
        sw, sb = _measured_scales(case)
        c = critical_factor(act, sw, sb)
        return c * sw, c * sb

    def apply(self, model: nn.Module, case: Case) -> nn.Module:
        sw, sb = self._targets(case)
        new, copies = treated_copy(model, body_blocks(case))
        with torch.no_grad():
            for _, block in copies:
                for layer in weight_layers(block):
                    layer.weight.mul_(sw / _rms_row_norm(layer.weight))
                    if layer.bias is not None:
                        rms_b = float(layer.bias.detach().to(torch.float64).pow(2).mean().sqrt())
                        layer.bias.mul_(sb / rms_b if rms_b > 0 else 0.0)
        return new

    def constants(self, case: Case) -> dict[str, float]:
        if self._activation(case) is None or not _plain(case):
            return {}
        sw, sb = _measured_scales(case)
        sw_new, sb_new = self._targets(case)
        return {"sigma_w_before": sw, "sigma_b_before": sb, "sigma_w": sw_new, "sigma_b": sb_new, "chi_1": 1.0}

    def kept(self, before: Report, after: Report) -> bool:
        return stable(after)
