"""Tiny models and helpers shared by the design tests."""

from __future__ import annotations

import torch
from torch import nn

import depthscope as ds


def tiny(name: str, **kw) -> nn.Module:
    """A registered model at its tiny size (``kw`` overrides), seeded, in eval mode."""
    torch.manual_seed(0)
    return ds.create_model(name, **{**ds.model_spec(name).tiny, **kw}).eval()


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter and buffer, cloned, to compare bit for bit later."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def unchanged(model: nn.Module, snap: dict[str, torch.Tensor]) -> bool:
    state = model.state_dict()
    return state.keys() == snap.keys() and all(torch.equal(state[k], snap[k]) for k in snap)
