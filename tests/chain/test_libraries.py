"""torchvision, timm and Hugging Face models probed with no argument but the model and its input.

Each registered adapter has a conformance case (tests/chain/library_models.py): the adapter
recognises its model, the chain is stem + blocks + head in execution order, and it composes to
the model. Every model is then probed; one model per library is checked against exact ``jacrev``
Jacobians in float64, and every Hugging Face family with its default ``use_cache=True`` (the case
whose growing key/value cache made the Jacobians silently wrong).
"""

from __future__ import annotations

import functools

import pytest
import torch
from tests.chain.library_models import ADAPTER_CASES, CASES
from tests.oracles import cumulative, step_jacobians
from torch import nn
from torch.func import jacrev
from torch.nn.attention import SDPBackend, sdpa_kernel

import depthscope as ds
from depthscope.chain import ADAPTERS, find_adapter

# Float64 oracles against the probe's explicit route: both are exact, so they agree to rounding.
ORACLE_RTOL = 1e-8
ORACLE_ATOL = 1e-8
# A chain re-evaluates the model's own float32 operations; it matches the model to rounding.
F32_TOL = 1e-5
# The smallest model of each library, for the jacrev oracle.
ORACLE_CASES = [
    "tv.vit",
    "timm.resnet18_8px",
    # One reduced model per adapter added after the first set: RegNet, Swin, DenseNet.
    "tv.regnet_tiny",
    "timm.swin_16px",
    "timm.densenet_tiny",
    *[name for name in CASES if name.startswith("hf.")],
]


@functools.cache
def _model(name: str) -> nn.Module:
    return CASES[name].model()


def _output(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        out = model(x)
    return out if isinstance(out, torch.Tensor) else out.last_hidden_state


@pytest.mark.parametrize("adapter", [a.name for a in ADAPTERS])
def test_every_registered_adapter_cuts_its_model(adapter):
    name = ADAPTER_CASES[adapter]  # a KeyError: a registered adapter without a conformance case
    case, model = CASES[name], _model(name)
    x = case.input()
    assert find_adapter(model).name == adapter
    chain = ds.Chain.from_module(model, example=x)
    assert chain.names[0] == "stem" and chain.names[-1] == "head"
    assert len(chain) == case.steps
    torch.testing.assert_close(chain(x), _output(model, x), rtol=F32_TOL, atol=F32_TOL)


# The autograd route pushes tangents with vmap, which has no batching rule for the in-place
# as_strided_ in adaptive average pooling (ConvNeXt's head): torch warns that it loops instead.
@pytest.mark.filterwarnings("ignore:There is a performance drop:UserWarning")
@pytest.mark.parametrize("name", CASES)
def test_probe_with_no_arguments(name):
    case, model = CASES[name], _model(name)
    report = ds.probe(model, case.input(), lyapunov=0, sigma_min=False)
    # The stem of a text model turns token ids into floats: it is run, not differentiated or reported.
    reported = case.steps - 1 if case.tokens else case.steps
    assert len(report) == reported
    assert report.blocks[-1].name == "head"
    assert (report.blocks[0].name == "stem") != case.tokens


@pytest.mark.parametrize("name", ORACLE_CASES)
def test_per_step_numbers_match_jacrev(name):
    case = CASES[name]
    model = case.model().double()
    x = case.input()
    x = x if case.tokens else x.double()
    chain = ds.Chain.from_module(model, example=x)
    report = ds.probe(model, x, exact=True, lyapunov=0, sigma_min=False)
    start = 1 if case.tokens else 0  # token ids are not differentiated: the stem is the first step
    # vmap has no batching rule for the fused attention kernels (it warns and loops): the oracle
    # runs attention on SDPA's math kernel, as the probe records it.
    with sdpa_kernel([SDPBackend.MATH]):
        Js, _ = step_jacobians(chain[start:], chain[:start](x) if start else x)
    assert len(report.blocks) == len(Js)
    for b, J in zip(report.blocks, Js):
        n_in = J.shape[2]
        rms = float((J.flatten(1).norm(dim=1) / n_in**0.5).mean())
        assert b.local_rms == pytest.approx(rms, rel=ORACLE_RTOL), b.name
    for b, M in zip(report.blocks, cumulative(Js)):
        expect = float(torch.log(M.flatten(1).norm(dim=1) / M.shape[2] ** 0.5).mean())
        assert b.cum_log_rms == pytest.approx(expect, abs=ORACLE_ATOL), b.name


@pytest.mark.parametrize("name", ["hf.llama", "hf.mistral", "hf.qwen2"])
def test_decoder_with_its_default_cache_matches_the_model_jacobian(name):
    """The end-to-end gain, against jacrev of the model itself from its input embeddings (no
    chain involved): with the cache recorded among the layers' arguments it was 3.31 for 3.93."""
    case = CASES[name]
    model = case.model().double()
    assert model.config.use_cache  # the default, kept after the probe
    ids = case.input()
    report = ds.probe(model, ids, exact=True, lyapunov=0, sigma_min=False)
    assert model.config.use_cache
    embeds = model.get_input_embeddings()(ids).detach()
    with sdpa_kernel([SDPBackend.MATH]):  # vmap has no batching rule for the fused kernels
        J = jacrev(lambda e: model(inputs_embeds=e, use_cache=False).last_hidden_state)(embeds)
    n = embeds[0].numel()
    expect = float(torch.log(J.detach().reshape(n, n).norm() / n**0.5))
    assert report.blocks[-1].cum_log_rms == pytest.approx(expect, abs=ORACLE_ATOL)


class _CachingCaller(nn.Module):
    """A user's module that calls a decoder with its cache on: no adapter recognises it."""

    def __init__(self, decoder: nn.Module):
        super().__init__()
        self.decoder = decoder

    def forward(self, ids):
        return self.decoder(ids, use_cache=True).last_hidden_state


def test_a_stateful_block_is_named():
    """Cutting a decoder at its layers without switching its cache off records the cache among
    the layers' arguments: the repeat check names the first layer."""
    model = _CachingCaller(_model("hf.llama"))
    ids = CASES["hf.llama"].input()
    with pytest.raises(ds.ChainError, match=r"step 1 \('decoder.layers.0'\) is stateful"):
        ds.Chain.from_module(model, blocks=["decoder.layers.*"], example=ids)


class _Counter(nn.Module):
    """A block that changes each time it is called."""

    def __init__(self):
        super().__init__()
        self.register_buffer("calls", torch.zeros(()))

    def forward(self, h):
        self.calls += 1
        return h * self.calls


class _Nested(nn.Module):
    """Blocks nested in stages of a plain Sequential, with a stem and a head around them."""

    def __init__(self, block=None):
        super().__init__()
        self.stem = nn.Linear(3, 4)
        stage = lambda: nn.Sequential(*(nn.Sequential(nn.Linear(4, 4), nn.Tanh()) for _ in range(2)))  # noqa: E731
        self.stages = nn.Sequential(stage(), stage())
        self.extra = block
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        h = self.stages(self.stem(x))
        if self.extra is not None:
            h = self.extra(h)
        return self.head(h)


def test_generic_search_opens_nested_stages():
    chain = ds.Chain.from_module(_Nested(), example=torch.randn(2, 3))
    assert chain.names == ["stem", "stages.0.0", "stages.0.1", "stages.1.0", "stages.1.1", "head"]


def test_a_step_that_changes_between_calls_is_named():
    with pytest.raises(ds.ChainError, match=r"step 3 \('extra'\) is stateful"):
        ds.Chain.from_module(_Nested(_Counter()), blocks=["stages.*", "extra"], example=torch.randn(2, 3))


class _Reversed(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList(nn.Sequential(nn.Linear(4, 4), nn.Tanh()) for _ in range(3))

    def forward(self, x):
        for layer in reversed(self.layers):
            x = layer(x)
        return x


def test_steps_follow_execution_order_not_pattern_order():
    model = _Reversed()
    x = torch.randn(2, 4)
    chain = ds.Chain.from_module(model, blocks=["layers.*"], example=x)
    assert chain.names == ["stem", "layers.2", "layers.1", "layers.0", "head"]


class _TwoLists(nn.Module):
    """Two candidate block lists, neither of which the forward passes the state through."""

    def __init__(self):
        super().__init__()
        self.a = nn.ModuleList(nn.Linear(4, 4) for _ in range(3))
        self.b = nn.ModuleList(nn.Linear(4, 4) for _ in range(2))

    def forward(self, x):
        for layer in [*self.a, *self.b]:
            x = x + layer(x)  # the skip is the model's, not the block's
        return x


def test_undecidable_blocks_name_the_candidates():
    with pytest.raises(ds.NoBlocksError, match=r"cannot decide(.|\n)*'a' \(3 blocks\)(.|\n)*'b' \(2 blocks\)"):
        ds.Chain.from_module(_TwoLists(), example=torch.randn(2, 4))


def test_an_in_place_activation_between_blocks_is_a_step():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(inplace=True), nn.Linear(4, 4), nn.ReLU(inplace=True))
    report = ds.probe(model, torch.randn(2, 4), lyapunov=0, sigma_min=False)
    assert len(report) == 4


def test_a_block_called_with_a_list_is_named():
    model = _model("tv.densenet121")
    with pytest.raises(ds.ChainError, match=r"block 'features.denseblock1.denselayer1'"):
        ds.Chain.from_module(model, blocks=["features.denseblock1.*"], example=CASES["tv.densenet121"].input())


def test_a_nan_input_is_named_as_non_finite_not_as_state() -> None:
    """NaN != NaN made the repeat check call a NaN-propagating stem 'stateful'."""
    import torchvision

    model = torchvision.models.resnet18(num_classes=10).eval()
    with pytest.raises(ds.NonFiniteError):
        ds.probe(model, torch.full((1, 3, 32, 32), float("nan")), lyapunov=0, sigma_min=False)
