"""`depthscope.sources`: models built with random weights and the input asked for; torchvision and
timm are called with no pretrained weights; the same seed gives the same weights and input."""

from __future__ import annotations

import pytest
import torch

from depthscope import sources
from depthscope._errors import InputError, UnknownModelError


def test_parse_shape() -> None:
    assert sources.parse_shape("1,3,224,224") == (1, 3, 224, 224)
    assert sources.parse_shape(" 2, 8 ") == (2, 8)
    for bad in ("", "1,,2", "a", "1,-3", "0"):
        with pytest.raises(InputError):
            sources.parse_shape(bad)


@pytest.mark.parametrize("family", sources.hf_families())
def test_every_hf_family_builds_tiny_and_runs(family: str) -> None:
    built = sources.from_hf(family, batch=2, seq=8, num_hidden_layers=2)  # a config field of every family
    assert built.model.config.num_hidden_layers == 2
    spec = sources.HF_FAMILIES[family]
    assert type(built.model).__name__ == spec.model and not built.model.training
    if spec.pixels:
        assert built.input.shape[:2] == (2, 3) and built.input.is_floating_point()
    else:
        assert built.input.shape == (2, 8) and built.input.dtype == torch.long
        assert int(built.input.max()) < built.model.config.vocab_size
    if family in ("gpt2", "llama", "mistral", "qwen2"):
        assert built.model.config.use_cache is False
    with torch.no_grad():
        out = built.model(built.input)
    assert torch.isfinite(out.last_hidden_state).all()


def test_hf_overrides_and_seed() -> None:
    a = sources.from_hf("llama", num_hidden_layers=3, seq=4)
    b = sources.from_hf("llama", num_hidden_layers=3, seq=4)
    assert a.model.config.num_hidden_layers == 3 and len(a.model.layers) == 3
    assert torch.equal(a.input, b.input)
    assert all(torch.equal(p, q) for p, q in zip(a.model.parameters(), b.model.parameters()))
    with pytest.raises(UnknownModelError, match="known: bert"):
        sources.from_hf("bart")


def test_bad_settings_say_what_could_not_be_built() -> None:
    """Regression: a config field of the wrong type (a huggingface_hub error, not a ValueError) and a
    negative size (torch's RuntimeError) gave tracebacks."""
    with pytest.raises(InputError, match="cannot build LlamaConfig"):
        sources.from_hf("llama", num_hidden_layers="x")
    with pytest.raises(InputError, match="cannot build LlamaModel"):
        sources.from_hf("llama", vocab_size=-3)
    with pytest.raises(InputError, match="cannot build torchvision resnet18"):
        sources.from_torchvision("resnet18", num_classes=-3)
    with pytest.raises(InputError, match=r"cannot build torch.nn:Linear\(in_features=-1, out_features=2\)"):
        sources.from_factory("torch.nn:Linear", (1, 2), in_features=-1, out_features=2)


def test_torchvision_is_built_without_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision

    calls = []
    real = torchvision.models.get_model

    def spy(name, **kwargs):
        calls.append((name, kwargs))
        return real(name, **kwargs)

    monkeypatch.setattr(torchvision.models, "get_model", spy)
    built = sources.from_torchvision("resnet18", num_classes=10)
    assert calls == [("resnet18", {"weights": None, "num_classes": 10})]
    assert built.input.shape == (1, 3, 224, 224) and not built.model.training
    assert sources.from_torchvision("resnet18", "2,3,32,32").input.shape == (2, 3, 32, 32)


def test_timm_is_built_without_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    import timm

    calls = []
    real = timm.create_model

    def spy(name, **kwargs):
        calls.append((name, kwargs))
        return real(name, **kwargs)

    monkeypatch.setattr(timm, "create_model", spy)
    built = sources.from_timm("convnext_atto", batch=2)
    assert calls == [("convnext_atto", {"pretrained": False})]
    assert built.input.shape == (2, *built.model.pretrained_cfg["input_size"])


def test_factory_must_return_a_module() -> None:
    with pytest.raises(InputError, match="not a torch.nn.Module"):
        sources.from_factory("math:pi.__abs__", (1, 2))
    with pytest.raises(InputError, match="module:callable"):
        sources.from_factory("torch.nn.Identity", (1, 2))
    built = sources.from_factory("torch.nn:Identity", "1,4")
    assert isinstance(built.model, torch.nn.Identity) and built.input.shape == (1, 4)
