"""Hugging Face models by family name, from tiny configs with random weights (nothing downloaded).

Each family is registered once with its config and model classes (names inside `transformers`),
its tiny defaults and its input: token ids ``(batch, seq)`` or pixels ``(batch, 3, H, W)``.
``overrides`` replace config fields (``num_hidden_layers=8``). Decoders get ``use_cache=False``:
a key-value cache grows each time a layer is called, which a probe does many times.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from depthscope._errors import InputError
from depthscope.sources._built import Built, random_input, require, seeded_build, unknown_name

HF_INSTALL = "pip install 'depthscope[hf]' (transformers)"
# Token ids are drawn below this vocabulary size: the tiny configs' vocabularies (embedding tables
# of vocab x hidden floats; a real 32k-50k vocabulary would dominate a tiny model's memory).
TINY_VOCAB = 1024
# Tiny widths: 64 wide, 4 heads of 16, 4 layers, feed-forward 4x wide (the usual transformer ratio).
TINY_HIDDEN = 64
TINY_HEADS = 4
TINY_LAYERS = 4
TINY_FFN = 4 * TINY_HIDDEN
# Longest sequence the tiny position tables hold; --seq beyond it needs --set of the position field.
TINY_POSITIONS = 512
# Sequence length and image side when none is given.
DEFAULT_SEQ = 32
TINY_IMAGE = 32
TINY_PATCH = 8

_DECODER = {"use_cache": False}
_LLAMA_LIKE = {
    "vocab_size": TINY_VOCAB,
    "hidden_size": TINY_HIDDEN,
    "intermediate_size": TINY_FFN,
    "num_hidden_layers": TINY_LAYERS,
    "num_attention_heads": TINY_HEADS,
    "num_key_value_heads": TINY_HEADS,
    "max_position_embeddings": TINY_POSITIONS,
    **_DECODER,
}
_BERT_LIKE = {
    "hidden_size": TINY_HIDDEN,
    "intermediate_size": TINY_FFN,
    "num_hidden_layers": TINY_LAYERS,
    "num_attention_heads": TINY_HEADS,
}


@dataclass(frozen=True)
class HFFamily:
    """One registered family: ``transformers.<config>(**defaults)`` built into ``transformers.<model>``.

    ``pixels``: the input is an image batch ``(B, 3, image_size, image_size)``, else token ids.
    """

    config: str
    model: str
    defaults: dict[str, Any] = field(default_factory=dict)
    pixels: bool = False


HF_FAMILIES: dict[str, HFFamily] = {
    "bert": HFFamily(
        "BertConfig", "BertModel", {**_BERT_LIKE, "vocab_size": TINY_VOCAB, "max_position_embeddings": TINY_POSITIONS}
    ),
    "gpt2": HFFamily(
        "GPT2Config",
        "GPT2Model",
        {"vocab_size": TINY_VOCAB, "n_embd": TINY_HIDDEN, "n_layer": TINY_LAYERS, "n_head": TINY_HEADS}
        | {"n_positions": TINY_POSITIONS, **_DECODER},
    ),
    "llama": HFFamily("LlamaConfig", "LlamaModel", dict(_LLAMA_LIKE)),
    "mistral": HFFamily("MistralConfig", "MistralModel", dict(_LLAMA_LIKE)),
    "qwen2": HFFamily("Qwen2Config", "Qwen2Model", dict(_LLAMA_LIKE)),
    "t5": HFFamily(
        "T5Config",
        "T5EncoderModel",
        {"vocab_size": TINY_VOCAB, "d_model": TINY_HIDDEN, "d_ff": TINY_FFN, "d_kv": TINY_HIDDEN // TINY_HEADS}
        | {"num_layers": TINY_LAYERS, "num_heads": TINY_HEADS, **_DECODER},
    ),
    "vit": HFFamily(
        "ViTConfig", "ViTModel", {**_BERT_LIKE, "image_size": TINY_IMAGE, "patch_size": TINY_PATCH}, pixels=True
    ),
}


def hf_families() -> list[str]:
    """The family names `from_hf` knows, sorted."""
    return sorted(HF_FAMILIES)


def from_hf(family: str, *, batch: int = 1, seq: int = DEFAULT_SEQ, seed: int = 0, **overrides: Any) -> Built:
    """A tiny ``family`` model with random weights and its input.

    Args:
        family: one of `hf_families()` (bert, gpt2, llama, mistral, qwen2, t5 (encoder), vit).
        batch: examples in the input.
        seq: token ids per example ``(batch, seq)``, drawn uniformly below the vocabulary size;
            ignored for vit, whose input is ``(batch, 3, image_size, image_size)`` pixels.
        seed: seeds the weights and the input.
        overrides: config fields replacing the tiny defaults (``num_hidden_layers=8``).
    """
    spec = HF_FAMILIES.get(family)
    if spec is None:
        raise unknown_name("Hugging Face family", family, hf_families()) from None
    transformers = require("transformers", HF_INSTALL)
    settings = {**spec.defaults, **overrides}
    try:
        config = getattr(transformers, spec.config)(**settings)
    except Exception as err:  # the configs' checks raise their own types (huggingface_hub's StrictDataclassError)
        raise InputError(f"cannot build {spec.config}: {err}") from err
    model = seeded_build(seed, lambda: getattr(transformers, spec.model)(config), spec.model)
    if spec.pixels:
        x = random_input((batch, config.num_channels, config.image_size, config.image_size), seed)
    else:
        gen = torch.Generator().manual_seed(seed)
        x = torch.randint(config.vocab_size, (batch, seq), generator=gen)
    return Built(model, x, f"{spec.model} (tiny {family})")
