"""Chain construction: lists of callables, Sequential, ModuleList models via hooks, explicit blocks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import depthscope as ds


class Masked(nn.Module):
    """A model whose blocks take an extra argument (like a transformer's attention mask)."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(3, 4)
        self.layers = nn.ModuleList(MaskedLayer() for _ in range(3))
        self.out = nn.Linear(4, 2)

    def forward(self, x):
        mask = (x[:, :1] > 0).float()
        h = self.embed(x)
        for layer in self.layers:
            h = layer(h, mask)
        return self.out(torch.tanh(h))


class MaskedLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, h, mask):
        return h + mask * torch.tanh(self.lin(h))


class OuterSkip(Masked):
    def forward(self, x):
        mask = torch.ones(x.shape[0], 1)
        h = self.embed(x)
        for layer in self.layers:
            h = h + layer(h, mask)  # the model, not the block, adds the skip
        return self.out(h)


def test_chain_from_callables_and_pairs() -> None:
    chain = ds.Chain([("double", lambda h: 2 * h), nn.Linear(2, 2), ds.Step("neg", lambda h: -h)])
    assert chain.names[0] == "double" and chain.names[2] == "neg"
    assert chain.names[1].endswith("Linear")
    x = torch.randn(3, 2)
    assert torch.allclose(chain(x), -chain.steps[1].fn(2 * x))
    with pytest.raises(ds.ChainError, match="callable"):
        ds.Chain([3])


def test_from_module_with_extra_block_arguments() -> None:
    torch.manual_seed(0)
    model = Masked()
    x = torch.randn(5, 3)
    chain = ds.Chain.from_module(model, example=x)
    assert chain.names == ["stem", "layers.0", "layers.1", "layers.2", "head"]
    assert torch.allclose(chain(x), model(x), atol=1e-6)
    rep = ds.probe(model, x, lyapunov=0)
    assert len(rep) == 5


def test_from_module_needs_the_example() -> None:
    with pytest.raises(ds.ChainError, match="example=x"):
        ds.Chain.from_module(Masked())


def test_outer_skip_is_detected() -> None:
    with pytest.raises(ds.ChainError, match="does not receive what block"):
        ds.Chain.from_module(OuterSkip(), example=torch.randn(2, 3))


def test_explicit_blocks_by_glob_match_one_nesting_depth() -> None:
    model = Masked()
    chain = ds.Chain.from_module(model, blocks=["layers.*"], example=torch.randn(2, 3))
    assert chain.names == ["stem", "layers.0", "layers.1", "layers.2", "head"]
    with pytest.raises(ds.NoBlocksError, match="matches no submodule"):
        ds.Chain.from_module(model, blocks=["nothing.*"], example=torch.randn(2, 3))


def test_sequential_children_are_steps() -> None:
    seq = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    chain = ds.Chain.from_module(seq)
    assert len(chain) == 3 and chain.modules() == list(seq)


class Stack(nn.Module):
    """Blocks in a ModuleList, called in the model's own forward (found through hooks)."""

    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList(nn.Sequential(nn.Linear(4, 4), nn.Tanh()) for _ in range(3))

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


def _wrappers(model: nn.Module) -> list[nn.Module]:
    return [nn.DataParallel(model), torch.compile(model), torch.compile(nn.DataParallel(model))]


@pytest.mark.parametrize("kind", ["sequential", "module-list"])
def test_compile_and_data_parallel_are_unwrapped(kind: str) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.Tanh()) if kind == "sequential" else Stack()
    x = torch.randn(3, 4)
    ref = ds.Chain.from_module(model, example=x)
    for wrapped in _wrappers(model):
        chain = ds.Chain.from_module(wrapped, example=x)
        assert chain.names == ref.names
        assert torch.equal(chain(x), ref(x))


def test_distributed_data_parallel_is_unwrapped(tmp_path) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        model = Stack()
        ddp = nn.parallel.DistributedDataParallel(model)
        chain = ds.Chain.from_module(ddp, example=torch.randn(2, 4))
        assert chain.names == ["stem", "layers.0", "layers.1", "layers.2", "head"]
        assert chain.steps[0].module is model and chain.steps[-1].module is model  # not the wrapper
    finally:
        dist.destroy_process_group()


def test_torchscript_is_refused_by_name() -> None:
    scripted = torch.jit.script(Stack())
    with pytest.raises(ds.ChainError, match="Stack is a TorchScript module"):
        ds.Chain.from_module(scripted, example=torch.randn(2, 4))
