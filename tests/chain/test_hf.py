"""The Hugging Face adapter on tiny random BERT (Post-LN) and GPT-2 (Pre-LN) models, offline."""

from __future__ import annotations

import warnings

import pytest
import torch
import transformers  # the hf extra, installed by README's test command: a missing one fails
from tests.chain.library_models import HIDDEN, TINY_TEXT, VOCAB
from torch.func import jacrev, jvp

import depthscope
from depthscope import ChainError, InputError
from depthscope.chain import Chain

SEQ = 7
# The hooked chain re-evaluates the same float32 graph; it matches the model to rounding.
F32_TOL = 1e-5


def _bert(layers: int = 3, attn: str = "sdpa") -> torch.nn.Module:
    config = transformers.BertConfig(**{**TINY_TEXT, "num_hidden_layers": layers}, attn_implementation=attn)
    torch.manual_seed(0)
    return transformers.BertModel(config).eval()


def _gpt2(layers: int = 2, attn: str = "sdpa", lm_head: bool = False) -> torch.nn.Module:
    config = transformers.GPT2Config(
        vocab_size=VOCAB,
        n_embd=HIDDEN,
        n_layer=layers,
        n_head=2,
        n_positions=16,
        bos_token_id=0,
        eos_token_id=0,
        attn_implementation=attn,
    )
    torch.manual_seed(0)
    cls = transformers.GPT2LMHeadModel if lm_head else transformers.GPT2Model
    return cls(config).eval()


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Two sequences; the second is padded after 5 tokens."""
    ids = torch.randint(1, VOCAB, (2, SEQ), generator=torch.Generator().manual_seed(1))
    mask = torch.ones(2, SEQ, dtype=torch.long)
    mask[1, 5:] = 0
    return ids, mask


MODELS = {
    "bert": (_bert, "base.encoder.layer.{}"),
    "gpt2": (_gpt2, "base.h.{}"),
}


@pytest.mark.parametrize("kind", MODELS)
@pytest.mark.parametrize("layers", [2, 3])
def test_chain_composes_to_the_model_with_padding(kind, layers):
    build, layer_name = MODELS[kind]
    model = build(layers)
    ids, mask = _batch()
    chain = depthscope.Chain.from_hf(model, ids, mask)  # the public entry point
    assert len(chain) == layers + 2
    assert chain.names == ["stem", *[layer_name.format(i) for i in range(layers)], "head"]
    with torch.no_grad():
        expected = model(input_ids=ids, attention_mask=mask).last_hidden_state
        states = chain.states(ids)
    assert states[1].dtype == torch.float32 and states[1].shape == (2, SEQ, HIDDEN)  # x_0: embeddings
    torch.testing.assert_close(states[-1], expected, rtol=F32_TOL, atol=F32_TOL)


def test_without_a_mask_the_chain_matches_the_unmasked_model():
    model = _bert(2)
    ids, mask = _batch()
    chain = Chain.from_hf(model, ids)
    with torch.no_grad():
        unmasked = model(input_ids=ids).last_hidden_state
        masked = model(input_ids=ids, attention_mask=mask).last_hidden_state
        out = chain(ids)
    torch.testing.assert_close(out, unmasked, rtol=F32_TOL, atol=F32_TOL)
    assert not torch.allclose(out[1], masked[1], rtol=F32_TOL, atol=F32_TOL)


def test_a_task_head_model_is_reduced_to_its_base():
    model = _gpt2(2, lm_head=True)
    ids, mask = _batch()
    chain = Chain.from_hf(model, ids, mask)
    assert len(chain) == 4
    with torch.no_grad():
        expected = model.transformer(input_ids=ids, attention_mask=mask).last_hidden_state
        torch.testing.assert_close(chain(ids), expected, rtol=F32_TOL, atol=F32_TOL)


@pytest.mark.parametrize("kind", MODELS)
def test_layer_steps_carry_the_mask_and_support_torch_func(kind):
    # Eager attention: torch 2.13's CPU SDPA kernel has no forward-mode derivative (jvp raises
    # NotImplementedError); reverse mode works with either.
    model = MODELS[kind][0](2, attn="eager").double()
    ids, mask = _batch()
    chain = Chain.from_hf(model, ids, mask)
    h = chain.states(ids)[1].detach()
    layer = chain[1]
    jac = jacrev(layer)(h).reshape(2, SEQ, HIDDEN, 2, SEQ, HIDDEN)
    # Padded positions of example 1 never reach its real positions; examples never mix.
    assert jac[1, :5, :, 1, 5:, :].abs().max() == 0
    assert jac[0, :, :, 1].abs().max() == 0 and jac[1, :, :, 0].abs().max() == 0
    v = torch.randn(h.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    with warnings.catch_warnings():
        # torch scripts its jvp decompositions on first use and warns that torch.jit.script is deprecated.
        warnings.simplefilter("ignore", DeprecationWarning)
        _, jv = jvp(layer, (h,), (v,))
    dense = jac.reshape(h.numel(), h.numel())
    torch.testing.assert_close(jv.reshape(-1), dense @ v.reshape(-1), rtol=1e-10, atol=1e-10)


def test_training_mode_with_dropout_is_refused():
    model = _bert(2).train()
    ids, mask = _batch()
    with pytest.raises(ChainError, match="eval"):
        Chain.from_hf(model, ids, mask)


def test_bad_inputs_are_refused():
    model = _gpt2(2)
    ids, mask = _batch()
    with pytest.raises(InputError, match="attention_mask"):
        Chain.from_hf(model, ids, mask[:, :3])
    with pytest.raises(InputError, match="long"):
        Chain.from_hf(model, ids.float(), mask)
    with pytest.raises(ChainError, match="PreTrainedModel"):
        Chain.from_hf(torch.nn.Linear(2, 2), ids, mask)


@pytest.mark.parametrize("method", ["explicit", "matrix-free"])
def test_default_fused_attention_probes_like_eager(method):
    """A model built with the default attention (fused SDPA kernels, which have no double backward)
    is probed, and its report equals the eager model's."""
    torch.manual_seed(0)
    fused, eager = _gpt2(2, attn="sdpa"), _gpt2(2, attn="eager")
    eager.load_state_dict(fused.state_dict())
    ids, mask = _batch()
    reports = [depthscope.probe(Chain.from_hf(m, ids, mask), ids, method=method, lyapunov=2) for m in (fused, eager)]
    for a, b in zip(*(r.blocks for r in reports)):
        assert a.local_rms == pytest.approx(b.local_rms, rel=1e-4)
        assert a.cum_log_rms == pytest.approx(b.cum_log_rms, rel=1e-4, abs=1e-5)


# -- models whose output has no last_hidden_state, or not under that name --------------------------


def _clip() -> torch.nn.Module:
    text = dict(TINY_TEXT, bos_token_id=0, eos_token_id=1, pad_token_id=1)
    vision = dict(
        image_size=16,
        patch_size=8,
        hidden_size=HIDDEN,
        num_hidden_layers=3,
        num_attention_heads=2,
        intermediate_size=32,
    )
    torch.manual_seed(0)
    return transformers.CLIPModel(
        transformers.CLIPConfig(text_config=text, vision_config=vision, projection_dim=8)
    ).eval()


def _composes(model: torch.nn.Module, x: torch.Tensor, steps: int) -> None:
    chain = depthscope.Chain.from_module(model, example=x)
    assert len(chain) == steps
    with torch.no_grad():
        torch.testing.assert_close(chain(x), model(x).last_hidden_state, rtol=F32_TOL, atol=F32_TOL)


def test_a_two_tower_model_names_its_towers():
    """CLIPModel needs both token ids and pixels and returns embeddings and logits, no hidden
    state: refused before it runs (it used to fail inside its forward with an AttributeError)."""
    model = _clip()
    ids, _ = _batch()
    for x in (ids, torch.randn(1, 3, 16, 16)):
        with pytest.raises(ChainError, match=r"CLIPModel returns a CLIPOutput .*no last_hidden_state") as err:
            depthscope.probe(model, x, lyapunov=0)
        assert "model.text_model (CLIPTextModel, on input_ids)" in str(err.value)
        assert "model.vision_model (CLIPVisionModel, on pixel_values)" in str(err.value)
    _composes(model.text_model, ids, 2 + 2)  # the towers it names are probed
    _composes(model.vision_model, torch.randn(1, 3, 16, 16), 3 + 2)


def test_an_encoder_decoder_names_its_encoder():
    config = transformers.T5Config(
        vocab_size=VOCAB, d_model=HIDDEN, d_kv=16, d_ff=2 * HIDDEN, num_layers=2, num_heads=2
    )
    torch.manual_seed(0)
    model = transformers.T5Model(config).eval()
    ids, _ = _batch()
    with pytest.raises(ChainError, match=r"T5Model is an encoder-decoder.*model.get_encoder\(\) \(T5Stack\)"):
        depthscope.probe(model, ids, lyapunov=0)
    _composes(model.get_encoder(), ids, 2 + 2)


def test_a_config_that_returns_tuples_is_probed():
    config = transformers.BertConfig(**TINY_TEXT, return_dict=False)
    torch.manual_seed(0)
    model = transformers.BertModel(config).eval()
    ids, mask = _batch()
    chain = Chain.from_hf(model, ids, mask)
    with torch.no_grad():
        out = model(ids, attention_mask=mask)
    assert isinstance(out, tuple) and model.config.return_dict is False  # the flag is restored
    torch.testing.assert_close(chain(ids), out[0], rtol=F32_TOL, atol=F32_TOL)


class _TinyConfig(transformers.PretrainedConfig):
    model_type = "depthscope-tiny"

    def __init__(self, outputs: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.outputs = outputs


class _Tiny(transformers.PreTrainedModel):
    """A Hugging Face model of its own that returns a tuple of ``outputs`` tensors, undeclared."""

    config_class = _TinyConfig

    def __init__(self, config: _TinyConfig):
        super().__init__(config)
        self.layers = torch.nn.ModuleList(torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Tanh()) for _ in range(3))
        self.post_init()

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return (x, x.sum(-1))[: self.config.outputs]


def test_one_tensor_output_is_the_state_and_two_are_refused():
    torch.manual_seed(0)
    x = torch.randn(2, 4)
    one = _Tiny(_TinyConfig(outputs=1)).eval()
    chain = Chain.from_module(one, example=x)
    assert chain.names == ["stem", "base.layers.0", "base.layers.1", "base.layers.2", "head"]
    torch.testing.assert_close(chain(x), one(x)[0], rtol=F32_TOL, atol=F32_TOL)
    with pytest.raises(ChainError, match=r"_Tiny returned a tuple holding 2 tensors .*cannot tell which"):
        Chain.from_module(_Tiny(_TinyConfig(outputs=2)).eval(), example=x)


class _TwoInputs(_Tiny):
    """A forward that needs a second input and, without it, reads an attribute of None."""

    def forward(self, x, scale=None):
        return super().forward(x * scale.mean())


def test_a_forward_that_needs_another_input_is_an_input_error():
    with pytest.raises(
        InputError, match=r"_TwoInputs failed on an input of shape \(2, 4\) passed as its first argument \(x\)"
    ):
        Chain.from_module(_TwoInputs(_TinyConfig()).eval(), example=torch.randn(2, 4))


def test_blocks_given_for_a_decoder_still_switch_its_cache_off():
    # The adapter prepares the model even when the blocks are named: with the config default
    # use_cache=True the layers would otherwise be stateful (a ChainError from the repeat check).
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=64,
    )
    model = transformers.LlamaModel(cfg).eval()
    assert model.config.use_cache
    ids = torch.randint(0, 100, (1, 8), generator=torch.Generator().manual_seed(0))
    auto, named = depthscope.probe(model, ids), depthscope.probe(model, ids, blocks=["layers.*"])
    assert [b.local_rms for b in named.blocks] == pytest.approx([b.local_rms for b in auto.blocks], rel=1e-6)
    assert model.config.use_cache  # restored
