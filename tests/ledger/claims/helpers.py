"""Helpers shared by the claim tests: the tiny preset's settings and runs, and float64 zoo MLPs."""

from __future__ import annotations

from torch import nn

import depthscope.ledger as ledger
from depthscope.ledger.claims._vanishing_common import _build

SEED = 0


def tiny_setting(claim_id: str, **overrides) -> dict:
    """The tiny preset of ``claim_id``'s experiment, with ``overrides`` applied."""
    return ledger.get_experiment(claim_id).setting("tiny", **overrides)


def run_tiny(claim_id: str, seed: int = 0, **overrides) -> ledger.ClaimResult:
    """``claim_id`` run at its tiny size without a figure."""
    return ledger.run(claim_id, preset="tiny", seed=seed, figure=False, **overrides)


def plain_mlp(seed: int = 0, **kwargs) -> nn.Module:
    """A zoo ``plain_mlp`` in float64 initialised from ``seed``, as the V experiments build it."""
    return _build("plain_mlp", seed, **kwargs)
