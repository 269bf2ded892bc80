"""Building the `Case` a treatment reads, from a model, an input and findings given by hand (so the
treatment tests do not depend on the doctor's finder), and the small models and state snapshots the
doctor's tests share."""

from __future__ import annotations

import torch
from torch import nn

import depthscope as ds
from depthscope.chain import Chain
from depthscope.doctor import Case, Finding

SEED = 0
BATCH = 2


def zoo(name: str, batch: int = BATCH, **kwargs) -> tuple[nn.Module, torch.Tensor]:
    """A registered zoo model (eval mode, seeded) and an example batch of ``batch`` examples."""
    torch.manual_seed(SEED)
    model = ds.create_model(name, **kwargs).eval()
    return model, model.example_input(batch, torch.Generator().manual_seed(SEED))


def tiny_bert(layers: int = 2) -> tuple[nn.Module, torch.Tensor]:
    """A Hugging Face BERT from a tiny config, random weights, eval mode; token ids (B, 8)."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(SEED)
    config = BertConfig(
        vocab_size=50,
        hidden_size=16,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=16,
    )
    return BertModel(config).eval(), torch.randint(0, 50, (BATCH, 8), generator=torch.Generator().manual_seed(SEED))


def case_for(model: nn.Module, x: torch.Tensor, kinds: tuple[str, ...] = (), steps: tuple[str, ...] = ()) -> Case:
    """The probe report of ``model`` at ``x``, one finding per kind (all naming ``steps``), its chain."""
    report = ds.probe(model, x)
    findings = tuple(Finding(k, tuple(steps)) for k in kinds)
    return Case(report, findings, Chain.from_module(model, None, example=x), x)


def state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Copies of every parameter and buffer, to compare bit for bit later."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def unchanged(model: nn.Module, saved: dict[str, torch.Tensor]) -> bool:
    """Whether ``model`` still has exactly the parameters and buffers of ``saved``."""
    now = model.state_dict()
    return now.keys() == saved.keys() and all(torch.equal(now[k], saved[k]) for k in saved)
