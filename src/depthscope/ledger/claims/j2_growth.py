"""Claim J2 (seed 001): blocks with ||J_F||_2 ~ 0 grow a trained net as a warm start; ||J_F||_2 bounds how many fit."""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from depthscope.ledger._data import digits
from depthscope.ledger._experiment import Experiment, Judgement, confirmed, refuted
from depthscope.ledger._train import train_classifier
from depthscope.ledger.claims._engineering_common import DIGITS_FEATURES
from depthscope.ledger.claims._residual_common import _per_example_jacobian
from depthscope.probing import probe
from depthscope.zoo import create_model
from depthscope.zoo.mlp import FixupBlock, ResidualBlock

# ReLU's critical weight scale (He et al. 2015): Var(W) = 2 / fan_in.
RELU_SIGMA_W = math.sqrt(2.0)
J2_PRESERVED = 1e-6  # max |change of any logit| that counts as "function preserved"
J2_IDENTITY_GAP = 1e-6  # ||J_block - I||_2 of a new block that counts as "layer Jacobian = I"
J2_BOUND_SLACK = 1e-9  # float64 rounding allowed on top of the (1 + eps)^m bound
J2_LR = 1e-3  # Adam step for the base network
J2_KINDS = ("random", "aligned", "naive")  # new-block families measured against the bound
J2_BLOCK_SEED_OFFSET = 1  # new blocks draw from seed + this (the base network from seed)


def _spectral_norms(J: torch.Tensor) -> torch.Tensor:
    """Largest singular value of each matrix: (B, m, n) -> (B,)."""
    return torch.linalg.matrix_norm(J, ord=2)


def _j2_train_base(setting: Mapping[str, Any], run_seed: int):
    """A residual MLP (zoo ``resnet_mlp``, alpha = 1/sqrt(depth)) trained on digits; returns (model, run)."""
    data = digits()
    torch.manual_seed(run_seed)
    model = create_model("resnet_mlp", depth=setting["base_depth"], width=setting["width"], in_dim=DIGITS_FEATURES)
    run = train_classifier(model, data, steps=setting["train_steps"], lr=J2_LR, optimizer="adam", seed=run_seed)
    return model, run


def _grown(model: nn.Module, new_blocks: list[nn.Module], at: int) -> nn.Module:
    """A copy of a zoo MLP with copies of ``new_blocks`` (cast to the model's dtype) inserted before
    its block ``at`` (stem and head kept)."""
    grown = copy.deepcopy(model)
    dtype = next(model.parameters()).dtype
    old = list(grown.blocks)
    grown.blocks = nn.ModuleList(old[:at] + [copy.deepcopy(b).to(dtype) for b in new_blocks] + old[at:])
    return grown


def _identity_blocks(width: int, count: int, depth: int) -> list[nn.Module]:
    """``count`` blocks that are exactly the identity at initialisation, alternating ReZero
    (x + alpha F(x), alpha = 0) and Fixup (last layer of F zero) from the zoo."""
    blocks: list[nn.Module] = []
    for i in range(count):
        if i % 2 == 0:
            blocks.append(ResidualBlock(width, "relu", 1.0, "gaussian", RELU_SIGMA_W, 0.0, 0.0, learnable_alpha=True))
        else:
            blocks.append(FixupBlock(width, depth, "relu", 1.0, "gaussian", RELU_SIGMA_W))
    return blocks


@torch.no_grad()
def _random_block(width: int, norm: float) -> ResidualBlock:
    """x + W2 relu(W1 x) with ||W1||_2 = 1 and ||W2||_2 = ``norm`` (biases zero), so F(0) = 0 and
    ||J_F(x)||_2 <= ||W2||_2 ||diag(relu')||_2 ||W1||_2 <= ``norm`` everywhere. Float64, so the
    norms hold to float64 rounding."""
    block = ResidualBlock(width, "relu", 1.0, "gaussian", RELU_SIGMA_W, 0.0, 1.0).double()
    block.fc1.weight /= torch.linalg.matrix_norm(block.fc1.weight, ord=2)
    block.fc1.bias.zero_()
    block.fc2.weight *= norm / torch.linalg.matrix_norm(block.fc2.weight, ord=2)
    return block


@torch.no_grad()
def _aligned_block(width: int, norm: float) -> ResidualBlock:
    """x + ``norm`` x (linear branch with W1 = W2 = sqrt(norm) I): J_F = norm I, the block that
    attains the (1 + eps)^m bound. Float64."""
    block = ResidualBlock(width, "linear", 1.0, "gaussian", 1.0, 0.0, 1.0).double()
    block.fc1.weight.copy_(math.sqrt(norm) * torch.eye(width, dtype=torch.float64))
    block.fc1.bias.zero_()
    block.fc2.weight.copy_(math.sqrt(norm) * torch.eye(width, dtype=torch.float64))
    return block


def _naive_block(width: int) -> ResidualBlock:
    """A zoo residual block at its usual random (He) initialisation with alpha = 1."""
    return ResidualBlock(width, "relu", 1.0, "gaussian", RELU_SIGMA_W, 0.0, 1.0)


def _stack_growth(blocks: list[nn.Module], h: torch.Tensor) -> dict:
    """How a stack of new blocks inserted at hidden states h (B, w) changes them, in float64.

    For m = 1..M: ``gain[m-1]`` = max over examples of ||J_{G_m}(h)||_2 (G_m = the first m blocks),
    ``change[m-1]`` = max over examples of ||G_m(h) - h|| / ||h||; ``branch_norm[m-1]`` = max over
    examples of ||J_F||_2 = ||J_block - I||_2 of block m at its own input.
    """
    h = h.double()
    eye = torch.eye(h.shape[1], dtype=torch.float64)
    J = eye.expand(h.shape[0], -1, -1)
    state = h
    gain, change, branch = [], [], []
    for block in blocks:
        b = copy.deepcopy(block).double()
        Jb = _per_example_jacobian(b, state)
        J = Jb @ J
        with torch.no_grad():
            state = b(state)
        gain.append(float(_spectral_norms(J).max()))
        change.append(float(((state - h).norm(dim=1) / h.norm(dim=1)).max()))
        branch.append(float(_spectral_norms(Jb - eye).max()))
    return {"gain": gain, "change": change, "branch_norm": branch}


def _max_safe_blocks(eps: float, tol: float) -> int:
    """The bound's count: the largest m with (1 + eps)^m <= 1 + tol, floor(log(1 + tol) / log(1 + eps))."""
    return int(math.floor(math.log1p(tol) / math.log1p(eps) + J2_BOUND_SLACK))


@torch.no_grad()
def _logits_change(model: nn.Module, grown: nn.Module, x: torch.Tensor) -> float:
    """max |grown(x) - model(x)| over examples and classes; x (B, 64)."""
    return float((grown(x) - model(x)).abs().max())


@torch.no_grad()
def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return float((model(x).argmax(1) == y).float().mean())


def _measure_j2(setting: Mapping[str, Any], seed: int) -> dict:
    """Train a residual MLP, insert identity blocks (function and layer Jacobians must not move),
    then stacks of m = 1..M new blocks of each kind, measuring gain and state change against the
    bound (1 + eps)^m. New blocks have ||J_F||_2 <= ``branch_norm_factor`` * eps; the bound assumes eps.
    """
    data = digits()
    model, run = _j2_train_base(setting, seed)
    width, eps, tol = setting["width"], setting["eps"], setting["tol"]
    at = setting["base_depth"] // 2
    x, y = data.x_test, data.y_test
    with torch.no_grad():
        h = model.stem(x[: setting["n_eval"]])
        for block in model.blocks[:at]:
            h = block(h)

    torch.manual_seed(seed + J2_BLOCK_SEED_OFFSET)
    identity = _identity_blocks(width, setting["identity_blocks"], setting["base_depth"] + setting["identity_blocks"])
    grown = _grown(model, identity, at)
    report = probe(grown, x[: setting["n_eval"]], lyapunov=0)
    gaps = [b.identity_gap for b in report.blocks[1 + at : 1 + at + len(identity)]]

    m_max = _max_safe_blocks(eps, tol)
    m_total = max(setting["m_factor"] * m_max, m_max + 1)
    norm = setting["branch_norm_factor"] * eps
    stacks = {
        "random": [_random_block(width, norm) for _ in range(m_total)],
        "aligned": [_aligned_block(width, norm) for _ in range(m_total)],
        "naive": [_naive_block(width) for _ in range(m_total)],
    }
    growth = {kind: _stack_growth(blocks, h) for kind, blocks in stacks.items()}
    accuracy = {kind: _accuracy(_grown(model, blocks[:m_max], at), x, y) for kind, blocks in stacks.items()}
    return {
        "base_test_accuracy": run.test_accuracy,
        "identity_logit_change": _logits_change(model, grown, x),
        "identity_accuracy": _accuracy(grown, x, y),
        "identity_gaps": gaps,
        "m_max": m_max,
        "m": list(range(1, m_total + 1)),
        "bound": [(1 + eps) ** m for m in range(1, m_total + 1)],
        "growth": growth,
        "accuracy_at_m_max": accuracy,
    }


def _judge_j2(m: Mapping[str, Any], setting: Mapping[str, Any]) -> Judgement:
    eps, tol, m_max = setting["eps"], setting["tol"], m["m_max"]
    gap = max(m["identity_gaps"])
    if m["identity_logit_change"] > J2_PRESERVED or gap > J2_IDENTITY_GAP:
        return refuted(
            f"identity-initialised blocks moved the trained net: max logit change {m['identity_logit_change']:.3g}, "
            f"max ||J_block - I||_2 = {gap:.3g} (allowed {J2_PRESERVED:g})"
        )
    bound = np.asarray(m["bound"])
    worst = {}
    for kind in ("random", "aligned"):
        g = m["growth"][kind]
        over_gain = np.asarray(g["gain"]) - bound * (1 + J2_BOUND_SLACK)
        over_change = np.asarray(g["change"]) - (bound - 1) * (1 + J2_BOUND_SLACK)
        worst[kind] = float(max(over_gain.max(), over_change.max()))
    if max(worst.values()) > 0:
        kind = max(worst, key=worst.get)
        g = m["growth"][kind]
        k = int(np.argmax(np.asarray(g["gain"]) > bound * (1 + J2_BOUND_SLACK)))
        return refuted(
            f"{kind} blocks assumed to have ||J_F||_2 <= eps = {eps:g} (measured up to {max(g['branch_norm']):.3g}) "
            f"broke the bound: after m = {m['m'][k]} blocks the stack's gain was {g['gain'][k]:.4g} > (1 + eps)^m = {bound[k]:.4g}"
        )
    rnd, ali, naive = (m["growth"][k] for k in J2_KINDS)
    i = m_max - 1
    return confirmed(
        f"inserting {len(m['identity_gaps'])} identity-initialised blocks (ReZero, Fixup) changed no logit by more than "
        f"{m['identity_logit_change']:.2g} and left every new layer Jacobian within {gap:.2g} of I; with ||J_F||_2 <= eps = {eps:g} "
        f"the bound allows m_max = floor(log(1+{tol:g})/log(1+{eps:g})) = {m_max} blocks for gain <= 1 + {tol:g}: "
        f"measured gain at m_max {ali['gain'][i]:.4g} (aligned blocks, = the bound {m['bound'][i]:.4g}), {rnd['gain'][i]:.4g} (random); "
        f"one block more and aligned blocks exceed 1 + tol ({ali['gain'][m_max]:.4g}), so the count is tight; "
        f"{m_max} naive He-initialised blocks reach gain {naive['gain'][i]:.3g} (test accuracy {m['base_test_accuracy']:.3f} -> "
        f"{m['accuracy_at_m_max']['naive']:.3f}, vs {m['accuracy_at_m_max']['random']:.3f} with eps-blocks)"
    )


def _plot_j2(m: Mapping[str, Any], setting: Mapping[str, Any]):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.8, 3.8))
    ms = np.asarray(m["m"])
    labels = {"random": "random, ||J_F||₂ ≤ ε", "aligned": "aligned, J_F = εI", "naive": "He init, α = 1"}
    for kind in J2_KINDS:
        ax.plot(ms, m["growth"][kind]["gain"], "o-", ms=3, label=labels[kind])
    ax.plot(ms, m["bound"], "k--", lw=1, label="(1 + ε)^m")
    ax.axhline(1 + setting["tol"], color="grey", lw=0.8, ls=":", label="1 + tol")
    ax.axvline(m["m_max"], color="grey", lw=0.8)
    ax.set_yscale("log")
    ax.set_xlabel("new blocks m")
    ax.set_ylabel("max ||J_stack||₂ at the data")
    ax.legend(fontsize=7)
    return fig


EXPERIMENT = Experiment(
    id="J2",
    statement=(
        "New blocks initialised with ||J_F||_2 ~ 0 have layer Jacobian ~ I (warm start); the Jacobian norm "
        "gives an upper bound on how many blocks can be added safely."
    ),
    source="001",
    expected=(
        "identity-initialised blocks inserted in a trained residual MLP change no logit by more than 1e-6 and have "
        "||J_block - I||_2 <= 1e-6; m blocks with ||J_F||_2 <= eps amplify by at most (1 + eps)^m, so at most "
        "m_max = floor(log(1 + tol) / log(1 + eps)) of them keep the gain within 1 + tol"
    ),
    refuted_if=(
        "an identity-initialised block changes a logit by more than 1e-6 or has ||J - I||_2 > 1e-6, or a stack of m "
        "blocks built with ||J_F||_2 <= eps has, at some test point, ||J_stack||_2 > (1 + eps)^m or "
        "||G(h) - h|| / ||h|| > (1 + eps)^m - 1 (float64, slack 1e-9)"
    ),
    presets={
        "tiny": {
            "base_depth": 2,
            "width": 16,
            "train_steps": 60,
            "n_eval": 32,
            "identity_blocks": 2,
            "eps": 0.1,
            "tol": 0.5,
            "m_factor": 2,
            "branch_norm_factor": 1.0,
        },
        "quick": {
            "base_depth": 4,
            "width": 32,
            "train_steps": 400,
            "n_eval": 128,
            "identity_blocks": 4,
            "eps": 0.05,
            "tol": 0.5,
            "m_factor": 2,
            "branch_norm_factor": 1.0,
        },
        "full": {
            "base_depth": 8,
            "width": 64,
            "train_steps": 2000,
            "n_eval": 449,
            "identity_blocks": 8,
            "eps": 0.02,
            "tol": 0.5,
            "m_factor": 2,
            "branch_norm_factor": 1.0,
        },
    },
    measure=_measure_j2,
    judge=_judge_j2,
    plot=_plot_j2,
    counterexample={"branch_norm_factor": 3.0},
    references=(
        "Bachlechner et al. 2021, ReZero is all you need",
        "Zhang et al. 2019, Fixup initialization",
        "Chen et al. 2016, Net2Net (function-preserving growth)",
    ),
)
