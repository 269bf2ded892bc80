"""`probe(model, x, attention_mask=...)`: a padding mask reaches every layer of a Hugging Face
model, the per-step numbers are those of the masked model (exact ``jacrev`` oracles in float64),
and a mask that cannot be passed is refused with a message that says why."""

from __future__ import annotations

import pytest
import torch
import torchvision
import transformers
from tests.oracles import cumulative
from torch import nn
from torch.func import jacrev
from torch.nn.attention import SDPBackend, sdpa_kernel

import depthscope as ds

VOCAB, HIDDEN, SEQ, PAD = 50, 16, 32, 8
# Both sides are exact float64 Jacobians of the same graph: they agree to rounding.
ORACLE_RTOL = 1e-8
ORACLE_ATOL = 1e-8
# The masked and unmasked probes must differ by far more than that rounding.
MASK_EFFECT = 1e-6


def _config(cls, **kw):
    return cls(
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=2 * HIDDEN,
        max_position_embeddings=SEQ,
        **kw,
    )


MODELS = {
    "bert": lambda: transformers.BertModel(_config(transformers.BertConfig)),
    "llama": lambda: transformers.LlamaModel(_config(transformers.LlamaConfig, num_key_value_heads=1)),
}


def _model(kind: str) -> nn.Module:
    torch.manual_seed(0)
    return MODELS[kind]().eval().double()


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Two sequences of 32 tokens; the first is padded: its last 8 tokens are masked."""
    ids = torch.randint(1, VOCAB, (2, SEQ), generator=torch.Generator().manual_seed(1))
    mask = torch.ones(2, SEQ, dtype=torch.long)
    mask[0, SEQ - PAD :] = 0
    return ids, mask


def _per_example_jacobians(chain: ds.Chain, h: torch.Tensor) -> list[torch.Tensor]:
    """Each step's Jacobian ``(B, n_out, n_in)``, example b's output against example b's input.

    The steps are bound to the batch's mask, so the whole batch is differentiated at once (a
    per-example vmap would call them on batches of one) and the diagonal blocks kept."""
    out = []
    B = h.shape[0]
    for step in chain:
        J = jacrev(step.fn)(h).detach().reshape(B, -1, B, h[0].numel())
        out.append(torch.stack([J[b, :, b] for b in range(B)]))
        with torch.no_grad():
            h = step.fn(h)
    return out


@pytest.mark.parametrize("kind", MODELS)
def test_a_padding_mask_gives_the_masked_models_numbers(kind):
    model = _model(kind)
    ids, mask = _batch()
    report = ds.probe(model, ids, attention_mask=mask, exact=True, lyapunov=0, sigma_min=False)
    # The oracle differentiates the chain of the masked model (Chain.from_hf, which composes to
    # model(ids, attention_mask=mask): tests/chain/test_hf.py) on SDPA's math kernel.
    chain = ds.Chain.from_hf(model, ids, mask)
    with sdpa_kernel([SDPBackend.MATH]):
        Js = _per_example_jacobians(chain[1:], chain[:1](ids).detach())
    assert [b.name for b in report.blocks] == chain.names[1:]
    for b, J in zip(report.blocks, Js):
        rms = float((J.flatten(1).norm(dim=1) / J.shape[2] ** 0.5).mean())
        assert b.local_rms == pytest.approx(rms, rel=ORACLE_RTOL), b.name
    for b, M in zip(report.blocks, cumulative(Js)):
        expect = float(torch.log(M.flatten(1).norm(dim=1) / M.shape[2] ** 0.5).mean())
        assert b.cum_log_rms == pytest.approx(expect, abs=ORACLE_ATOL), b.name

    unmasked = ds.probe(model, ids, exact=True, lyapunov=0, sigma_min=False)
    layers = [(a.local_rms, b.local_rms) for a, b in zip(report.blocks, unmasked.blocks) if a.name != "head"]
    assert max(abs(a - b) / b for a, b in layers) > MASK_EFFECT


def test_the_end_to_end_gain_is_the_masked_models():
    """Against jacrev of the model itself, from its input embeddings, with no chain involved."""
    model = _model("llama")  # its embeddings are the lookup alone: x_0 is the input embedding
    ids, mask = _batch()
    report = ds.probe(model, ids, attention_mask=mask, exact=True, lyapunov=0, sigma_min=False)
    embeds = model.get_input_embeddings()(ids).detach()
    with sdpa_kernel([SDPBackend.MATH]):
        J = jacrev(lambda e: model(inputs_embeds=e, attention_mask=mask).last_hidden_state)(embeds)
    n = embeds[0].numel()
    J = J.detach().reshape(2, n, 2, n)
    expect = sum(float(torch.log(J[b, :, b].norm() / n**0.5)) for b in range(2)) / 2
    assert report.blocks[-1].cum_log_rms == pytest.approx(expect, abs=ORACLE_ATOL)
    assert report.settings["attention_mask"] is True  # the report says how it was measured
    assert ds.probe(model, ids, lyapunov=0, sigma_min=False).settings["attention_mask"] is False


def test_a_mask_of_the_wrong_shape_names_both_shapes():
    model = _model("bert")
    ids, mask = _batch()
    with pytest.raises(ds.InputError, match=r"\(2, 31\).*\(2, 32\)"):
        ds.probe(model, ids, attention_mask=mask[:, :-1], lyapunov=0)


class _MaskedLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 4)

    def forward(self, x, attention_mask=None):
        x = torch.tanh(self.linear(x))
        return x if attention_mask is None else x * attention_mask


class _MaskedStack(nn.Module):
    """A module of its own whose forward takes an attention_mask and passes it to each layer."""

    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList(_MaskedLayer() for _ in range(3))

    def forward(self, x, attention_mask=None):
        for layer in self.layers:
            x = layer(x, attention_mask=attention_mask)
        return x


def test_a_mask_reaches_a_module_whose_forward_takes_one():
    torch.manual_seed(0)
    model = _MaskedStack().double()
    x = torch.randn(2, 4, dtype=torch.float64)
    mask = torch.tensor([[1.0, 1.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0]], dtype=torch.float64)
    chain = ds.Chain.from_module(model, example=x, attention_mask=mask)
    assert chain.names == ["stem", "layers.0", "layers.1", "layers.2", "head"]  # named in the model
    report = ds.probe(model, x, attention_mask=mask, exact=True, lyapunov=0, sigma_min=False)
    by_hand = ds.Chain([(f"layers.{i}", lambda h, m=m: m(h, mask)) for i, m in enumerate(model.layers)])
    expect = ds.probe(by_hand, x, exact=True, lyapunov=0, sigma_min=False)
    body = [b for b in report.blocks if b.name.startswith("layers.")]
    assert [b.local_rms for b in body] == pytest.approx([b.local_rms for b in expect.blocks], rel=ORACLE_RTOL)
    unmasked = ds.probe(model, x, exact=True, lyapunov=0, sigma_min=False)
    assert unmasked.blocks[1].local_rms != pytest.approx(report.blocks[1].local_rms, rel=MASK_EFFECT)


def _hf_resnet() -> nn.Module:
    config = transformers.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic")
    return transformers.ResNetModel(config).eval()


@pytest.mark.parametrize(
    ("build", "x", "why"),
    [
        (
            lambda: torchvision.models.resnet18(num_classes=4).eval(),
            torch.randn(1, 3, 32, 32),
            "torchvision.resnet adapter",
        ),
        (_hf_resnet, torch.randn(1, 3, 16, 16), r"ResNetModel.forward takes no attention_mask"),
        (lambda: nn.Sequential(nn.Linear(4, 4), nn.Tanh()), torch.randn(1, 4), "nn.Sequential"),
        (lambda: ds.create_model("resnet_mlp", depth=2, width=4), torch.randn(1, 4), "ChainModule"),
    ],
)
def test_a_mask_for_a_model_that_takes_none_is_refused(build, x, why):
    with pytest.raises(ds.InputError, match=why):
        ds.probe(build(), x, attention_mask=torch.ones(1, 4), lyapunov=0)


def test_a_mask_for_a_forward_without_one_names_its_arguments():
    class _Plain(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.ModuleList(nn.Linear(4, 4) for _ in range(3))

        def forward(self, x):
            for layer in self.layers:
                x = layer(x)
            return x

    with pytest.raises(ds.InputError, match=r"_Plain.forward takes no attention_mask argument \(it takes x\)"):
        ds.probe(_Plain(), torch.randn(1, 4), attention_mask=torch.ones(1, 4), lyapunov=0)


def test_a_mask_with_a_chain_is_refused():
    model = _model("bert")
    ids, mask = _batch()
    chain = ds.Chain.from_hf(model, ids, mask)
    with pytest.raises(ds.InputError, match="Chain.from_module"):
        ds.probe(chain, ids, attention_mask=mask)
