"""Small torchvision, timm and Hugging Face models with random weights (nothing downloaded), each
with an input and the number of steps its chain must have: stem + real blocks (+ the modules
between stages: downsampling, transitions, patch merging) + head."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import timm
import torch
import torchvision.models as tv
import transformers
from timm.models.densenet import DenseNet
from torch import nn
from torchvision.models.regnet import BlockParams, RegNet

HIDDEN, SEQ, VOCAB = 32, 8, 50
STEM_AND_HEAD = 2


@dataclass(frozen=True)
class Case:
    """A model builder, its input shape or token count, and the steps its chain must have."""

    build: Callable[[], nn.Module]
    shape: tuple[int, ...]
    steps: int
    tokens: bool = False

    def model(self) -> nn.Module:
        torch.manual_seed(0)
        return self.build().eval()

    def input(self) -> torch.Tensor:
        gen = torch.Generator().manual_seed(1)
        if self.tokens:
            return torch.randint(1, VOCAB, self.shape, generator=gen)
        return torch.randn(self.shape, generator=gen)


def _image(size: int) -> tuple[int, ...]:
    return (1, 3, size, size)


# A tiny Hugging Face text config: two layers of width HIDDEN, two heads, 16 positions.
TINY_TEXT = dict(
    vocab_size=VOCAB,
    hidden_size=HIDDEN,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=2 * HIDDEN,
    max_position_embeddings=16,
)


def _text_config(cls, **kw):
    return cls(**TINY_TEXT, **kw)


def _decoder(model_cls, config_cls) -> Callable[[], nn.Module]:
    # One key/value head shared by two query heads (grouped-query attention), the default cache.
    return lambda: model_cls(_text_config(config_cls, num_key_value_heads=1))


TEXT = (1, SEQ)
# name -> case; the block counts are those of the architectures (resnet18: 2+2+2+2 BasicBlocks).
CASES: dict[str, Case] = {
    "tv.resnet18": Case(lambda: tv.resnet18(), _image(32), 8 + STEM_AND_HEAD),
    "tv.resnet50": Case(lambda: tv.resnet50(), _image(64), 16 + STEM_AND_HEAD),
    "tv.mobilenet_v3_small": Case(lambda: tv.mobilenet_v3_small(), _image(32), 11 + STEM_AND_HEAD),
    "tv.efficientnet_b0": Case(lambda: tv.efficientnet_b0(), _image(32), 16 + STEM_AND_HEAD),
    # 3+3+9+3 blocks and 3 downsampling layers between the stages.
    "tv.convnext_tiny": Case(lambda: tv.convnext_tiny(), _image(32), 18 + 3 + STEM_AND_HEAD),
    # 2+2+6+2 blocks and 3 patch mergings.
    "tv.swin_t": Case(lambda: tv.swin_t(), _image(32), 12 + 3 + STEM_AND_HEAD),
    # 4 dense blocks (their layers are called with lists of features: each block is one step) and
    # 3 transitions.
    "tv.densenet121": Case(lambda: tv.densenet121(), _image(32), 4 + 3 + STEM_AND_HEAD),
    # 1+3+6+6 ResBottleneckBlocks in trunk_output.block1..4.
    "tv.regnet_y_400mf": Case(lambda: tv.regnet_y_400mf(), _image(32), 16 + STEM_AND_HEAD),
    # For the jacrev oracle: 1+1+2 blocks, 8 channels at 8 px (every state at most 192 wide).
    "tv.regnet_tiny": Case(
        lambda: RegNet(
            BlockParams.from_init_params(depth=4, w_0=8, w_a=8.0, w_m=2.0, group_width=8, se_ratio=0.25),
            stem_width=8,
            num_classes=10,
        ),
        _image(8),
        4 + STEM_AND_HEAD,
    ),
    "tv.vit": Case(
        lambda: tv.VisionTransformer(
            image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=HIDDEN, mlp_dim=2 * HIDDEN
        ),
        _image(32),
        2 + STEM_AND_HEAD,
    ),
    "timm.resnet18": Case(lambda: timm.create_model("resnet18", pretrained=False), _image(32), 8 + STEM_AND_HEAD),
    # For the jacrev oracle: 8 px keeps every state at most 256 wide (2x2 after the stem).
    "timm.resnet18_8px": Case(lambda: timm.create_model("resnet18", pretrained=False), _image(8), 8 + STEM_AND_HEAD),
    "timm.vit_tiny": Case(
        lambda: timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=64), _image(64), 12 + STEM_AND_HEAD
    ),
    # 2+2+6+2 blocks; stage 0 has no downsampling (an nn.Identity, skipped), stages 1-3 do.
    "timm.convnext_atto": Case(
        lambda: timm.create_model("convnext_atto", pretrained=False), _image(32), 12 + 3 + STEM_AND_HEAD
    ),
    "timm.efficientnet_b0": Case(
        lambda: timm.create_model("efficientnet_b0", pretrained=False), _image(32), 16 + STEM_AND_HEAD
    ),
    "timm.regnetx_002": Case(
        lambda: timm.create_model("regnetx_002", pretrained=False), _image(32), 13 + STEM_AND_HEAD
    ),
    # swin_tiny with 2 blocks per stage, shrunk to 16 px (states at most 512 wide, for the jacrev oracle):
    # 8 blocks and the 3 PatchMergings that open stages 1-3 (stage 0's downsample is an nn.Identity).
    "timm.swin_16px": Case(
        lambda: timm.create_model(
            "swin_tiny_patch4_window7_224",
            pretrained=False,
            img_size=16,
            patch_size=2,
            window_size=2,
            embed_dim=8,
            depths=(2, 2, 2, 2),
            num_heads=(1, 1, 1, 1),
        ),
        _image(16),
        8 + 3 + STEM_AND_HEAD,
    ),
    # 4 dense blocks and 3 transitions, as torchvision's.
    "timm.densenet121": Case(
        lambda: timm.create_model("densenet121", pretrained=False), _image(32), 4 + 3 + STEM_AND_HEAD
    ),
    # For the jacrev oracle: growth 4, two layers per dense block (states at most 1024 wide).
    "timm.densenet_tiny": Case(
        lambda: DenseNet(growth_rate=4, block_config=(2, 2, 2, 2), num_classes=10), _image(32), 4 + 3 + STEM_AND_HEAD
    ),
    "timm.mixer_s16": Case(
        lambda: timm.create_model("mixer_s16_224", pretrained=False, img_size=32), _image(32), 8 + STEM_AND_HEAD
    ),
    "hf.bert": Case(lambda: transformers.BertModel(_text_config(transformers.BertConfig)), TEXT, 4, tokens=True),
    "hf.gpt2": Case(
        lambda: transformers.GPT2Model(
            transformers.GPT2Config(
                vocab_size=VOCAB, n_embd=HIDDEN, n_layer=2, n_head=2, n_positions=16, bos_token_id=0, eos_token_id=0
            )
        ),
        TEXT,
        4,
        tokens=True,
    ),
    "hf.llama": Case(_decoder(transformers.LlamaModel, transformers.LlamaConfig), TEXT, 4, tokens=True),
    "hf.mistral": Case(_decoder(transformers.MistralModel, transformers.MistralConfig), TEXT, 4, tokens=True),
    "hf.qwen2": Case(_decoder(transformers.Qwen2Model, transformers.Qwen2Config), TEXT, 4, tokens=True),
    "hf.t5_encoder": Case(
        lambda: transformers.T5EncoderModel(
            transformers.T5Config(vocab_size=VOCAB, d_model=HIDDEN, d_kv=16, d_ff=2 * HIDDEN, num_layers=2, num_heads=2)
        ),
        TEXT,
        4,
        tokens=True,
    ),
    "hf.vit": Case(
        lambda: transformers.ViTModel(
            transformers.ViTConfig(
                image_size=32,
                patch_size=8,
                hidden_size=HIDDEN,
                num_hidden_layers=2,
                num_attention_heads=2,
                intermediate_size=2 * HIDDEN,
            )
        ),
        _image(32),
        4,
    ),
}

# One model of each registered adapter (conformance tests iterate over the registry).
ADAPTER_CASES: dict[str, str] = {
    "transformers": "hf.llama",
    "torchvision.resnet": "tv.resnet18",
    "torchvision.mobilenet": "tv.mobilenet_v3_small",
    "torchvision.efficientnet": "tv.efficientnet_b0",
    "torchvision.convnext": "tv.convnext_tiny",
    "torchvision.swin": "tv.swin_t",
    "torchvision.densenet": "tv.densenet121",
    "torchvision.regnet": "tv.regnet_y_400mf",
    "torchvision.vit": "tv.vit",
    "timm.resnet": "timm.resnet18",
    "timm.vit": "timm.vit_tiny",
    "timm.mixer": "timm.mixer_s16",
    "timm.convnext": "timm.convnext_atto",
    "timm.efficientnet": "timm.efficientnet_b0",
    "timm.regnet": "timm.regnetx_002",
    "timm.swin": "timm.swin_16px",
    "timm.densenet": "timm.densenet121",
}
