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


class CountingLayer(MaskedLayer):
    def __init__(self):
        super().__init__()
        self.runs = 0

    def forward(self, h, mask):
        self.runs += 1
        return super().forward(h, mask)


def test_the_head_replays_the_blocks_instead_of_running_them() -> None:
    torch.manual_seed(0)
    model, x = Masked(), torch.randn(5, 3)
    model.layers = nn.ModuleList(CountingLayer() for _ in range(3))
    seen = []
    model.layers[0].register_forward_hook(lambda *_: seen.append(1))
    chain = ds.Chain.from_module(model, example=x)
    h = torch.randn(5, 4)
    before, hooked = [layer.runs for layer in model.layers], len(seen)
    with torch.no_grad():
        out = chain.steps[-1].fn(h)
    assert [layer.runs for layer in model.layers] == before  # their forwards did not run
    assert len(seen) == hooked + 1  # their hooks did
    assert torch.allclose(out, model.out(torch.tanh(h)))
    assert "forward" not in vars(model.layers[2])


def test_the_head_restores_a_forward_set_on_the_instance() -> None:
    torch.manual_seed(0)
    model, x = Masked(), torch.randn(5, 3)
    wrapped = model.layers[1].forward
    model.layers[1].forward = lambda *a, **k: wrapped(*a, **k)  # as accelerate's hooks do
    own = model.layers[1].forward
    chain = ds.Chain.from_module(model, example=x)
    chain(x)
    assert vars(model.layers[1])["forward"] is own
    assert torch.allclose(chain(x), model(x))


class Noting(nn.Linear):
    """A layer whose forward writes in a log its model reads."""

    def __init__(self, log: list[int]):
        super().__init__(4, 4)
        self.log = log

    def forward(self, x):
        self.log.append(1)
        return torch.tanh(super().forward(x))


class Tally(nn.Module):
    """Its output counts the layers that ran in the same forward: replaying the layers in the head
    (their forwards do not run) does not reproduce it, so the head must run them."""

    def __init__(self):
        super().__init__()
        self.log: list[int] = []
        self.layers = nn.ModuleList(Noting(self.log) for _ in range(3))

    def forward(self, x):
        self.log.clear()
        for layer in self.layers:
            x = layer(x)
        return x * len(self.log)


def test_a_head_that_replay_cannot_reproduce_runs_the_blocks() -> None:
    torch.manual_seed(0)
    model, x = Tally(), torch.randn(2, 4)
    chain = ds.Chain.from_module(model, example=x)
    assert torch.allclose(chain(x), model(x))
    report = ds.probe(model, x, lyapunov=0)
    assert len(report) == 5


class HalvesItsInput(nn.Module):
    """A block that scales its input in place first: the state the previous block returned changes
    after that block has run."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, h, mask):
        h.mul_(0.5)
        return h + mask * torch.tanh(self.lin(h))


def test_blocks_that_update_their_input_in_place_are_checked_on_the_states_they_saw() -> None:
    torch.manual_seed(0)
    model, x = Masked(), torch.randn(3, 3)
    model.layers = nn.ModuleList(HalvesItsInput() for _ in range(3))
    chain = ds.Chain.from_module(model, example=x)
    with torch.no_grad():
        assert torch.allclose(chain(x), model(x))
    # The probe's end-to-end gain is exact here (3 inputs): it matches the Jacobian of the model.
    report = ds.probe(model, x[:1], lyapunov=0)
    J = torch.func.jacrev(model)(x[:1]).detach().reshape(2, 3)
    exact = float(torch.log(torch.linalg.matrix_norm(J) / 2**0.5))
    assert len(report) == 5 and abs(report.log_gain - exact) < 1e-4
