"""Criticality initialisation of a plain (non-residual) stack: the edge of chaos, chi_1 = 1.

Mean-field theory (Schoenholz et al. 2017) says a wide random network x_{l+1} = phi(W x_l + b) with
W_ij ~ N(0, sigma_w^2 / fan_in), b_i ~ N(0, sigma_b^2) multiplies the squared gradient norm by
chi_1 = sigma_w^2 E[phi'(sqrt(q*) z)^2] per layer; at chi_1 = 1 gradients neither vanish nor
explode at any depth. The treatment redraws every weight layer of the body at the sigma_w that
solves chi_1 = 1 for the body's activation at sigma_b = `SIGMA_B` (`depthscope.doctor._meanfield`),
and its biases at sigma_b:

- where dynamical isometry is achievable (tanh, the linear activation: phi(0) = 0 and every unit
  has the same slope as q* -> 0; Pennington et al. 2017), Linear weights are sigma_w times a random
  orthogonal matrix, so every singular value of the Jacobian, not only their mean square, is 1;
- where it is not (ReLU: half the units are off whatever q* is), weights are Gaussian at the
  critical sigma_w (He et al. 2015's sqrt(2) for ReLU): the mean square is 1, the spread remains.

Convolutions are always redrawn Gaussian (the orthogonal construction for them, delta-orthogonal,
is not applied). The stem and the head keep their weights. The treated model computes a different
function: ``preserves_function`` is False.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from depthscope._errors import InputError
from depthscope.doctor._meanfield import MeanField, critical_sigma_w, meanfield
from depthscope.doctor._structure import (
    activation_name,
    activation_of,
    body_blocks,
    is_plain_stack,
    treated_copy,
    weight_layers,
)
from depthscope.doctor._treatment import Case, Treatment
from depthscope.doctor.treatments._common import BODY_STABLE_PROMISE, GAIN_KINDS, generator, stable
from depthscope.probing import Report

# Biases are set to zero: at sigma_b = 0 the critical point of tanh sits at q* -> 0, where
# dynamical isometry holds (Pennington et al. 2017); ReLU is critical at sigma_w = sqrt(2) for any
# sigma_b.
SIGMA_B = 0.0


# A bounded activation (sigmoid, tanh) whose critical point needs pre-activations of variance q*
# above this sits on its flat tails there (standard deviation 3: sigmoid' < 0.05 beyond it): chi_1 = 1
# holds on average but most units are saturated. A 50-deep sigmoid net at its critical sigma_w 10.15
# (q* 45.6) read stable yet trained no better than untreated (digits, 200 steps: 2.32 against 2.31),
# so the treatment is reported as blocked there and the residual treatments come first.
SATURATED_Q_STAR = 9.0
BOUNDED = ("sigmoid", "tanh")


# The mean-field numbers at criticality by activation (class and parameters): a root search costs up to
# ~0.4 s (tanh) and applies, apply and constants each need the same answer.
_CRITICAL: dict[tuple[type, str], MeanField] = {}


def _critical(case: Case) -> tuple[nn.Module, MeanField] | None:
    """The body's activation and its mean-field numbers at the critical sigma_w, or None."""
    act = activation_of(body_blocks(case))
    if act is None:
        return None
    key = (type(act), repr(act))  # repr carries the parameters (a slope, a negative slope)
    if key not in _CRITICAL:
        _CRITICAL[key] = meanfield(act, critical_sigma_w(act, SIGMA_B), SIGMA_B)
    return act, _CRITICAL[key]


class Criticality(Treatment):
    """Redraw a plain stack's weights at the edge of chaos, orthogonal where isometry is achievable."""

    name = "criticality"
    title = "Criticality initialisation (edge of chaos, chi_1 = 1)"
    source = (
        "Schoenholz, Gilmer, Ganguli & Sohl-Dickstein 2017, Deep Information Propagation (ICLR); "
        "Pennington, Schoenholz & Ganguli 2017, Resurrecting the sigmoid in deep learning through "
        "dynamical isometry (NeurIPS)"
    )
    treats = GAIN_KINDS
    preserves_function = False
    promise = BODY_STABLE_PROMISE

    def applies(self, case: Case) -> str | None:
        kinds = [k for k in self.treats if case.has(k)]
        blocks = body_blocks(case)
        if not kinds or not is_plain_stack(blocks):
            return None
        try:
            found = _critical(case)
        except InputError:  # no critical point: `blocked` says why
            return None
        if found is None:
            return f"a plain stack reads {' and '.join(kinds)}; its activation is not recognised (see blocked)"
        act, mf = found
        name = activation_name(act)
        how = (
            f"orthogonal weights at sigma_w = {mf.sigma_w:.4g} give dynamical isometry"
            if mf.isometry_achievable
            else f"dynamical isometry is impossible for {name} ({mf.isometry_reason}); Gaussian weights "
            f"at the critical sigma_w = {mf.sigma_w:.4g} set the mean squared singular value to 1"
        )
        return f"a plain {name} stack of {len(blocks)} blocks reads {' and '.join(kinds)}: {how}"

    def blocked(self, case: Case) -> str | None:
        blocks = body_blocks(case)
        if not blocks:
            return "the model has no body of blocks between a stem and a head"
        if not any(weight_layers(b.module) for b in blocks):
            return "the body has no Linear or Conv layer to reinitialise"
        if activation_of(blocks) is None:
            return "the body has no single recognised elementwise activation (relu, tanh, sigmoid, gelu, silu, linear)"
        try:
            found = _critical(case)
        except InputError as err:  # no critical point (GELU and SiLU jump across chi_1 = 1)
            return str(err)
        if found is not None:
            act, mf = found
            name = activation_name(act)
            if name in BOUNDED and math.isfinite(mf.q_star) and mf.q_star > SATURATED_Q_STAR:
                return (
                    f"{name}'s critical point (sigma_w = {mf.sigma_w:.4g}) needs pre-activations of variance "
                    f"q* = {mf.q_star:.3g}, on {name}'s flat tails: chi_1 = 1 on average, but most units saturated"
                )
        return None

    def apply(self, model: nn.Module, case: Case) -> nn.Module:
        found = _critical(case)
        if found is None:
            raise InputError(f"{self.name}: {self.blocked(case)}")
        _, mf = found
        new, copies = treated_copy(model, body_blocks(case))
        gen = generator()
        with torch.no_grad():
            for _, block in copies:
                for layer in weight_layers(block):
                    _redraw(layer, mf, gen)
        return new

    def constants(self, case: Case) -> dict[str, float]:
        try:
            found = _critical(case)
        except InputError:
            return {}
        if found is None:
            return {}
        _, mf = found
        out = {
            "sigma_w": mf.sigma_w,
            "sigma_b": mf.sigma_b,
            "chi_1": mf.chi_1,
            "orthogonal": float(mf.isometry_achievable),
        }
        if math.isfinite(mf.q_star):
            out["q_star"] = mf.q_star
        return out

    def kept(self, before: Report, after: Report) -> bool:
        return stable(after)


def _redraw(layer: nn.Module, mf: MeanField, gen: torch.Generator) -> None:
    """Weights N(0, sigma_w^2 / fan_in), or sigma_w times an orthogonal matrix (Linear, isometry
    achievable); biases N(0, sigma_b^2) (zero at sigma_b = 0). In place."""
    w = layer.weight
    fan_in = w[0].numel()
    if isinstance(layer, nn.Linear) and mf.isometry_achievable:
        nn.init.orthogonal_(w, gain=mf.sigma_w, generator=gen)
    else:
        nn.init.normal_(w, 0.0, mf.sigma_w / math.sqrt(fan_in), generator=gen)
    if layer.bias is not None:
        if mf.sigma_b > 0:
            nn.init.normal_(layer.bias, 0.0, mf.sigma_b, generator=gen)
        else:
            nn.init.zeros_(layer.bias)
