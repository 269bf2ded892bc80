"""Hugging Face adapter: a `transformers` model as a chain (embeddings, one step per layer, head).

    stem:     input_ids (B, T) long -> embeddings output x_0 (B, T, hidden)
    layer i:  (B, T, hidden) -> (B, T, hidden), called with the recorded attention mask
    head:     last layer output -> last_hidden_state (GPT-2: the final LayerNorm ln_f; BERT: nothing)

BERT is a Post-LN encoder, GPT-2 a Pre-LN decoder: the pair behind claims J3 and J4. Models are
built from a config with random weights (``BertModel(BertConfig(...))``); depthscope never
downloads weights. `transformers` is imported only to check the model's type.

The chain ends at the base model's ``last_hidden_state``. Models without one are refused before
they run, with the submodels to probe instead: an encoder-decoder (T5Model, BartModel: probe
``model.get_encoder()``) and a model of two towers (CLIPModel, SiglipModel: probe
``model.text_model`` or ``model.vision_model``).
"""

from __future__ import annotations

import dataclasses
import inspect
import sys
import typing
from typing import Any

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
# Config flags switched for each call of the base model (and restored after): no key/value cache
# (recorded among a layer's arguments it grows each time the chain calls the layer, and the
# Jacobians measured were silently wrong), and a ModelOutput rather than a tuple (a config with
# return_dict=False), so that last_hidden_state is found by name.
CALL_FLAGS = {"use_cache": False, "return_dict": True}
# The field the chain ends at.
HIDDEN_STATE = "last_hidden_state"


class _LastHiddenState(nn.Module):
    """input -> last_hidden_state (B, T, hidden) of ``base``, with a fixed attention mask and no cache.

    The probe's chain is built from this module so that the mask is part of the model and every
    step takes a single tensor. The input is passed as the first argument: ``input_ids`` (B, T)
    for text models, ``pixel_values`` (B, C, H, W) for ViT. ``CALL_FLAGS`` are set on the config
    for the call's duration (and ``use_cache=False`` passed where the forward takes it).
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
        saved = {k: getattr(config, k) for k in CALL_FLAGS if getattr(config, k, None) is not None}
        for k in saved:
            setattr(config, k, CALL_FLAGS[k])
        try:
            out = self.base(x, **kwargs)
        except AttributeError as err:  # a forward that needs another input reads an attribute of None
            raise InputError(
                f"{type(self.base).__name__} failed on an input of shape {tuple(x.shape)} passed as its first "
                f"argument ({_first_input(self.base)}): {err}"
            ) from err
        finally:
            for k, v in saved.items():
                setattr(config, k, v)
        return _hidden_state(out, self.base)


def _first_input(model: nn.Module) -> str:
    return next(iter(inspect.signature(model.forward).parameters), "?")


def _hidden_state(out: Any, model: nn.Module) -> torch.Tensor:
    """``last_hidden_state`` of a forward's output, or its only tensor; anything else is refused."""
    if isinstance(out, torch.Tensor):
        return out
    state = getattr(out, HIDDEN_STATE, None)
    if isinstance(state, torch.Tensor):
        return state
    items = out.items() if hasattr(out, "items") else enumerate(out) if isinstance(out, (tuple, list)) else []
    tensors = [(str(k), v) for k, v in items if isinstance(v, torch.Tensor)]
    if len(tensors) == 1:
        return tensors[0][1]
    raise ChainError(
        f"{type(model).__name__} returned a {type(out).__name__} holding {len(tensors)} tensors "
        f"({', '.join(k for k, _ in tensors)}) and no {HIDDEN_STATE}, where the chain of a Hugging Face "
        f"model ends: it cannot tell which to probe. {_what_to_probe(model)}"
    )


def _what_to_probe(model: nn.Module) -> str:
    """What a user can probe instead of ``model``: its submodels that hold a list of layers."""
    # A bare ModuleList has no forward of its own to probe.
    subs = [(n, c) for n, c in model.named_children() if not isinstance(c, nn.ModuleList) and longest_module_list(c)]
    if not subs:
        return "Wrap the model in a module whose forward returns the tensor to probe, and pass blocks=[its layers]"
    named = " or ".join(f"model.{n} ({type(c).__name__}, on {_first_input(c)})" for n, c in subs)
    return f"Probe one of its submodels with layers instead: {named}"


def _declared_outputs(model: nn.Module) -> list[type]:
    """The output dataclasses (ModelOutput) that ``model.forward`` declares it returns, if any."""
    annotation = inspect.signature(type(model).forward).return_annotation
    options = typing.get_args(annotation) or (annotation,)
    return [c for c in options if isinstance(c, type) and dataclasses.is_dataclass(c)]


def _check_output(base: nn.Module) -> None:
    """Refuse, before running it, a base model whose output has no ``last_hidden_state``.

    Raises:
        ChainError: an encoder-decoder (its forward takes ``decoder_input_ids``), or a model that
            declares only outputs without ``last_hidden_state`` (CLIP's two towers); the message
            names the submodels to probe instead.
    """
    name = type(base).__name__
    if "decoder_input_ids" in inspect.signature(base.forward).parameters:
        encoder = base.get_encoder() if hasattr(base, "get_encoder") else None
        what = f" ({type(encoder).__name__})" if isinstance(encoder, nn.Module) else ""
        raise ChainError(
            f"{name} is an encoder-decoder model: its decoder reads the encoder's output through "
            "cross-attention in every layer, so its layers do not form one chain from input_ids to the "
            f"decoder's {HIDDEN_STATE}. Probe its encoder, model.get_encoder(){what}, on input_ids"
        )
    declared = _declared_outputs(base)
    if declared and not any(HIDDEN_STATE in {f.name for f in dataclasses.fields(c)} for c in declared):
        fields = ", ".join(f.name for f in dataclasses.fields(declared[0]))
        raise ChainError(
            f"{name} returns a {declared[0].__name__} ({fields}): no {HIDDEN_STATE}, where the chain of a "
            f"Hugging Face model ends. {_what_to_probe(base)}"
        )


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


def _check_mask(base: nn.Module, x: torch.Tensor, attention_mask: torch.Tensor) -> None:
    if "attention_mask" not in inspect.signature(base.forward).parameters:
        raise InputError(f"{type(base).__name__}.forward takes no attention_mask; probe it without one")
    # Token ids (B, T) (or audio samples) fix the mask's shape; for other inputs (pixels) only
    # its batch is known here, and the model itself checks the rest.
    if x.ndim == 2 and attention_mask.shape != x.shape:
        raise InputError(
            f"attention_mask has shape {tuple(attention_mask.shape)}; it must be (B, T) = {tuple(x.shape)}, "
            "the shape of the input"
        )
    if attention_mask.ndim == 0 or attention_mask.shape[0] != x.shape[0]:
        raise InputError(
            f"attention_mask has shape {tuple(attention_mask.shape)}; its first dimension must be the batch of "
            f"the input {tuple(x.shape)}"
        )


def _wrap_base(model: nn.Module, x: torch.Tensor, attention_mask: torch.Tensor | None) -> _LastHiddenState:
    """The module ``x -> last_hidden_state`` of ``model``'s base model, caches off, ``attention_mask``
    (B, T) bound, after the checks (`_check_model`, `_check_output`, the mask's shape)."""
    _check_model(model)
    base = model.base_model
    _check_output(base)
    if attention_mask is not None:
        _check_mask(base, x, attention_mask)
    return _LastHiddenState(base, attention_mask)


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

    Raises:
        ChainError: not a ``PreTrainedModel``, dropout active, no ``last_hidden_state`` (an
            encoder-decoder, a two-tower model: the message names what to probe instead).
        InputError: ``input_ids`` not (B, T) long, a mask of another shape than ``input_ids``.
    """
    if input_ids.ndim != 2 or input_ids.dtype != torch.long:
        raise InputError(f"input_ids must be (B, T) long token ids, got {tuple(input_ids.shape)} {input_ids.dtype}")
    wrapper = _wrap_base(model, input_ids, attention_mask)
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
    its forward takes first (token ids, pixel values), with an optional attention mask (B, T); a
    task head is left out (the chain ends at ``last_hidden_state``)."""

    name = "transformers"

    def recognises(self, model: nn.Module) -> bool:
        transformers = sys.modules.get("transformers")
        return transformers is not None and isinstance(model, transformers.PreTrainedModel)

    def prepare(self, model: nn.Module, example: torch.Tensor, attention_mask: torch.Tensor | None = None) -> nn.Module:
        return _wrap_base(model, example, attention_mask)

    def blocks(self, module: nn.Module) -> list[tuple[str, nn.Module]]:
        return _layers(module)
