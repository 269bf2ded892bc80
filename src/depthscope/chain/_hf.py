"""Hugging Face adapter: a `transformers` model as a chain (embeddings, one step per layer, head).

    stem:     input_ids (B, T) long -> embeddings output x_0 (B, T, hidden)
    layer i:  (B, T, hidden) -> (B, T, hidden), called with the recorded attention mask
    head:     last layer output -> last_hidden_state (GPT-2: the final LayerNorm ln_f; BERT: nothing)

BERT is a Post-LN encoder, GPT-2 a Pre-LN decoder: the pair behind claims J3 and J4. Models are
built from a config with random weights (``BertModel(BertConfig(...))``); depthscope never
downloads weights. `transformers` is imported only to check the model's type.
"""

from __future__ import annotations

import inspect
import sys

import torch
from torch import nn

from depthscope._errors import ChainError, InputError, NoBlocksError
from depthscope.chain._adapters import Adapter
from depthscope.chain._discover import hooked_steps, longest_module_list
from depthscope.chain._step import Step

# Where each supported architecture keeps its sequence of layers, inside its base model.
# Other architectures fall back to the longest nn.ModuleList (see `Chain.from_module`).
HF_LAYER_LISTS = {
    "bert": "encoder.layer",
    "gpt2": "h",
}


class _LastHiddenState(nn.Module):
    """input -> last_hidden_state (B, T, hidden) of ``base``, with a fixed attention mask and no cache.

    The probe's chain is built from this module so that the mask is part of the model and every
    step takes a single tensor. The input is passed as the first argument: ``input_ids`` (B, T)
    for text models, ``pixel_values`` (B, C, H, W) for ViT. Caches are off for every call (the
    ``use_cache=False`` argument where the forward takes one, and the config's flag for the call's
    duration, restored after): a key/value cache recorded among a layer's arguments grows each
    time the chain calls the layer, and the Jacobians measured were silently wrong.
    """

    def __init__(self, base: nn.Module, attention_mask: torch.Tensor | None):
        super().__init__()
        self.base = base
        self.attention_mask = attention_mask
        self._takes_use_cache = "use_cache" in inspect.signature(base.forward).parameters

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kwargs: dict[str, object] = {}
        if self.attention_mask is not None:
            kwargs["attention_mask"] = self.attention_mask
        if self._takes_use_cache:
            kwargs["use_cache"] = False
        config = getattr(self.base, "config", None)
        cached = getattr(config, "use_cache", None)
        if cached is not None:
            config.use_cache = False
        try:
            return self.base(x, **kwargs).last_hidden_state
        finally:
            if cached is not None:
                config.use_cache = cached


def _check_model(model: nn.Module) -> None:
    try:
        from transformers import PreTrainedModel
    except ImportError as err:  # pragma: no cover - exercised only without the extra
        raise ImportError("Chain.from_hf needs the Hugging Face extra: pip install 'depthscope[hf]'") from err
    if not isinstance(model, PreTrainedModel):
        raise ChainError(f"Chain.from_hf expects a transformers PreTrainedModel, got {type(model).__name__}")
    active_dropout = [n for n, m in model.named_modules() if isinstance(m, nn.Dropout) and m.p > 0 and m.training]
    if active_dropout:
        raise ChainError(
            f"{type(model).__name__} is in training mode with active dropout ({active_dropout[0]!r}, ...): "
            "every pass would differ. Call model.eval() first (models built from a config start in train mode)"
        )


def steps_from_hf(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> list[Step]:
    """The steps of the chain of a Hugging Face BERT or GPT-2 model on ``input_ids``, bound to that input.

    Args:
        model: a ``transformers`` model in eval mode; a model with a task head (``BertForMaskedLM``,
            ``GPT2LMHeadModel``) is reduced to its base model, whose ``last_hidden_state`` is the output.
        input_ids: (B, T) long token ids.
        attention_mask: (B, T) with 1 for real tokens and 0 for padding, or None (all real). It is
            passed to every layer exactly as the model itself passes it.

    Returns:
        A chain of ``n_layers + 2`` steps: ``stem`` (embeddings), one step per layer (named by its
        path, e.g. ``base.encoder.layer.0``), ``head``. Composed, it equals ``last_hidden_state``.
    """
    _check_model(model)
    if input_ids.ndim != 2 or input_ids.dtype != torch.long:
        raise InputError(f"input_ids must be (B, T) long token ids, got {tuple(input_ids.shape)} {input_ids.dtype}")
    if attention_mask is not None and attention_mask.shape != input_ids.shape:
        raise InputError(
            f"attention_mask has shape {tuple(attention_mask.shape)}; it must match input_ids {tuple(input_ids.shape)}"
        )
    wrapper = _LastHiddenState(model.base_model, attention_mask)
    return hooked_steps(wrapper, _layers(wrapper), input_ids)


def _layers(wrapper: _LastHiddenState) -> list[tuple[str, nn.Module]]:
    """The base model's layers, named by their path in ``wrapper`` (``base.h.0``, ...)."""
    base = wrapper.base
    path = HF_LAYER_LISTS.get(base.config.model_type)
    if path is not None:
        return [(f"base.{path}.{i}", layer) for i, layer in enumerate(base.get_submodule(path))]
    found = longest_module_list(wrapper)
    if not found:
        raise NoBlocksError(f"no list of layers found in {type(base).__name__}")
    return found


class HFAdapter(Adapter):
    """Hugging Face ``transformers`` models: the base model's layers, caches off, on any input
    its forward takes first (token ids, pixel values); a task head is left out (the chain ends
    at ``last_hidden_state``)."""

    name = "transformers"

    def recognises(self, model: nn.Module) -> bool:
        transformers = sys.modules.get("transformers")
        return transformers is not None and isinstance(model, transformers.PreTrainedModel)

    def prepare(self, model: nn.Module, example: torch.Tensor) -> nn.Module:
        _check_model(model)
        return _LastHiddenState(model.base_model, None)

    def blocks(self, module: nn.Module) -> list[tuple[str, nn.Module]]:
        return _layers(module)
