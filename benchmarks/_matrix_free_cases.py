"""The models the matrix-free benchmarks share, linearised, and the steps the probe sends there.

CIFAR-style zoo ResNets and a deep MLP, torchvision ResNets and MobileNet, timm's ViT and a
Hugging Face BERT, all with random weights at small sizes (nothing downloaded); the real models
are skipped, with a line saying so, where their libraries are missing.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

import depthscope as ds
from depthscope.estimators import LinearizedChain
from depthscope.probing import _routes


def _builders(batch8: bool, mlp: bool):
    yield "resnet56", lambda: (ds.create_model("resnet56"), torch.randn(1, 3, 32, 32))
    if batch8:
        yield "resnet56 (batch 8)", lambda: (ds.create_model("resnet56"), torch.randn(8, 3, 32, 32))
    else:
        yield "plain56", lambda: (ds.create_model("plain56"), torch.randn(1, 3, 32, 32))
    if mlp:
        yield (
            "resnet_mlp depth 64 width 256",
            lambda: (ds.create_model("resnet_mlp", depth=64, width=256), torch.randn(1, 256)),
        )
    try:
        import timm
        import torchvision
        import transformers as tf
    except ImportError as err:
        print(f"real models skipped: {err}")
        return
    yield "tv resnet18 (112 px)", lambda: (torchvision.models.resnet18(weights=None), torch.randn(1, 3, 112, 112))
    yield "tv resnet50 (64 px)", lambda: (torchvision.models.resnet50(weights=None), torch.randn(1, 3, 64, 64))
    yield (
        "tv mobilenet_v3_small (112 px)",
        lambda: (torchvision.models.mobilenet_v3_small(weights=None), torch.randn(1, 3, 112, 112)),
    )
    yield (
        "timm vit_tiny (64 px)",
        lambda: (timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=64), torch.randn(1, 3, 64, 64)),
    )
    small = dict(hidden_size=128, num_hidden_layers=4, num_attention_heads=4, intermediate_size=256)
    yield "hf bert", lambda: (tf.BertModel(tf.BertConfig(vocab_size=1000, **small)), torch.randint(0, 1000, (1, 32)))


def linearized_cases(
    only: list[str] | None, batch8: bool = False, mlp: bool = False
) -> Iterator[tuple[str, LinearizedChain]]:
    """``(name, LinearizedChain)`` for each case whose name contains a word of ``only`` (all where
    None); ``batch8`` puts resnet56 at batch 8 in place of plain56, ``mlp`` adds the deep MLP."""
    for name, build in _builders(batch8, mlp):
        if only and not any(w in name for w in only):
            continue
        torch.manual_seed(0)
        model, x = build()
        yield name, LinearizedChain(ds.Chain.from_module(model.eval(), example=x), x)


def matrix_free_steps(lin: LinearizedChain, with_min: bool) -> list[int]:
    """The steps the probe's route model sends to the matrix-free route at its defaults."""
    routes = _routes.plan(lin, "auto", 16, with_min)
    return [k for k, (route, _) in routes.items() if route == _routes.ROUTE_MATRIX_FREE]
