"""Bad input gets a clear error, never a silently wrong report."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from tests.oracles import step_jacobians
from torch import nn

import depthscope as ds


def test_wrong_input_shape_names_the_step() -> None:
    model = ds.create_model("resnet_mlp", depth=3, width=8)
    with pytest.raises(ds.InputError, match=r"step 0 \('stem'\).*shape \(2, 5\)"):
        ds.probe(model, torch.randn(2, 5))


def test_integer_input_without_float_state() -> None:
    chain = ds.Chain([lambda t: t + 1, lambda t: t * 2])
    with pytest.raises(ds.InputError, match="no floating-point state"):
        ds.probe(chain, torch.arange(6).reshape(2, 3))


def test_integer_ids_into_an_embedding_are_fine() -> None:
    emb = nn.Embedding(10, 4)
    chain = ds.Chain([("embed", emb), ("mix", nn.Linear(4, 4))])
    rep = ds.probe(chain, torch.randint(0, 10, (3, 5)), lyapunov=2)
    assert [b.name for b in rep.blocks] == ["mix"]
    assert rep.settings["skipped_prefix"] == ["embed"]


def test_bool_and_complex_inputs_refused() -> None:
    with pytest.raises(ds.InputError, match="dtype"):
        ds.probe(ds.Chain([lambda h: h]), torch.ones(2, 2, dtype=torch.bool))


def test_nan_appearing_at_a_step_is_located() -> None:
    chain = ds.Chain([("ok", lambda h: h * 2), ("log", lambda h: torch.log(h - 10)), ("after", lambda h: h)])
    with pytest.raises(ds.NonFiniteError, match="step 1 \\('log'\\)") as info:
        ds.probe(chain, torch.ones(2, 3))
    assert info.value.step == 1 and info.value.step_name == "log"


def test_nan_input() -> None:
    with pytest.raises(ds.NonFiniteError, match="input"):
        ds.probe(ds.Chain([lambda h: h]), torch.tensor([[float("nan")]]))


def test_non_differentiable_step() -> None:
    chain = ds.Chain([("lin", nn.Linear(3, 3)), ("cut", lambda h: h.detach())])
    with pytest.raises(ds.InputError, match="step 1 \\('cut'\\).*differentiabl"):
        ds.probe(chain, torch.randn(2, 3))


def test_batchnorm_in_train_mode_is_probed_in_eval_and_restored() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Linear(4, 4))
    model.train()
    with pytest.warns(ds.ProbeWarning, match="BatchNorm1d in training mode"):
        rep = ds.probe(model, torch.randn(5, 4), lyapunov=0)
    assert model.training and model[1].training
    assert len(rep) == 3
    model.eval()
    rep_eval = ds.probe(model, torch.randn(5, 4, generator=torch.Generator().manual_seed(0)), lyapunov=0)
    assert rep_eval.blocks[1].local_rms > 0


def test_empty_chain_and_empty_sequential() -> None:
    with pytest.raises(ds.ChainError, match="at least one step"):
        ds.Chain([])
    with pytest.raises(ds.NoBlocksError, match="empty"):
        ds.probe(nn.Sequential(), torch.randn(1, 2))


def test_module_without_blocks() -> None:
    class Flat(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(3, 3)

        def forward(self, x):
            return self.a(x)

    with pytest.raises(ds.NoBlocksError, match="looked for"):
        ds.probe(Flat(), torch.randn(2, 3))


def test_bad_arguments() -> None:
    chain = ds.Chain([nn.Linear(2, 2)])
    with pytest.raises(ds.InputError, match="method"):
        ds.probe(chain, torch.randn(1, 2), method="magic")
    with pytest.raises(ds.InputError, match="probes"):
        ds.probe(chain, torch.randn(1, 2), probes=0)
    with pytest.raises(ds.InputError, match="scalar"):
        ds.probe(chain, torch.randn(1, 2), loss=lambda out: out)
    with pytest.raises(ds.InputError, match="Tensor"):
        ds.probe(chain, [[1.0, 2.0]])


def test_step_that_mixes_the_batch_dimension_away() -> None:
    with pytest.raises(ds.ChainError, match="batch dimension"):
        ds.probe(ds.Chain([lambda h: h.sum(0)]), torch.randn(3, 2))


# -- the bad-input table (one test per row) --------------------------------------------------------


def test_empty_batch_is_refused() -> None:
    with pytest.raises(ds.InputError, match="empty batch"):
        ds.probe(ds.create_model("resnet_mlp", depth=2, width=8), torch.randn(0, 8))


def test_one_dimensional_input_is_refused_with_the_fix() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.Tanh())
    with pytest.raises(ds.InputError, match=r"shape \(4,\).*x\[None\]"):
        ds.probe(model, torch.randn(4))


def test_meta_device_input_is_refused() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.Tanh())
    with pytest.raises(ds.InputError, match="meta device"):
        ds.probe(model, torch.randn(2, 4, device="meta"))


class _NaNBackward(torch.autograd.Function):
    """The identity whose derivative autograd is told is NaN (a broken custom backward)."""

    @staticmethod
    def forward(ctx, h):
        return h.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * float("nan")


@pytest.mark.parametrize("method", ["explicit", "matrix-free"])
def test_nan_only_in_the_jacobian_names_the_step(method: str) -> None:
    chain = ds.Chain([("lin", nn.Linear(4, 4)), ("bad", _NaNBackward.apply), ("out", nn.Linear(4, 4))])
    with pytest.raises(ds.NonFiniteError, match=r"Jacobian of step 1 \('bad'\)") as info:
        ds.probe(chain, torch.randn(3, 4), method=method)
    assert info.value.step == 1 and info.value.step_name == "bad"


def test_nan_gradient_of_an_unselected_branch_names_the_step() -> None:
    # torch.where with a NaN in the branch it does not select: the output is finite, autograd's
    # J^T u is NaN (0 * NaN), the usual "safe sqrt" mistake; J^T u is what the matrix-free route uses.
    chain = ds.Chain([("lin", nn.Linear(4, 4)), ("where", lambda h: torch.where(h > 1e9, torch.sqrt(h - 1e9), h))])
    with pytest.raises(ds.NonFiniteError, match=r"Jacobian of step 1 \('where'\)"):
        ds.probe(chain, torch.randn(3, 4), method="matrix-free")


@pytest.mark.parametrize("method", ["explicit", "matrix-free"])
def test_infinite_derivative_of_a_finite_step_names_the_step(method: str) -> None:
    # sqrt(|x|) is finite at 0, its derivative is not: the docstring promises a NonFiniteError.
    chain = ds.Chain([("lin", nn.Linear(4, 4)), ("sqrt", lambda h: torch.sqrt(h.abs()))])
    x = torch.randn(3, 4)
    with torch.no_grad():  # unit 0 is dead: its pre-activation is exactly 0 for every example
        chain.steps[0].module.weight[0] = 0.0
        chain.steps[0].module.bias[0] = 0.0
    with pytest.raises(ds.NonFiniteError, match=r"step 1 \('sqrt'\)") as info:
        ds.probe(chain, x, method=method)
    assert info.value.step == 1 and info.value.step_name == "sqrt"


@pytest.mark.parametrize(
    "step",
    [lambda h: torch.softmax(h, 0), lambda h: h.flip(0), lambda h: h + 0.5 * h.roll(1, 0)],
    ids=["softmax-dim0", "flip-rows", "roll-rows"],
)
def test_a_step_that_mixes_the_batch_is_named(step) -> None:
    chain = ds.Chain([("lin", nn.Linear(4, 4)), ("mix", step), ("out", nn.Linear(4, 4))])
    with pytest.raises(ds.ChainError, match=r"step 1 \('mix'\) mixes the examples of a batch"):
        ds.probe(chain, torch.randn(4, 4))


def test_per_example_softmax_and_one_example_are_not_coupling() -> None:
    chain = ds.Chain([("lin", nn.Linear(4, 4)), ("softmax", lambda h: torch.softmax(h, -1))])
    ds.probe(chain, torch.randn(8, 4), lyapunov=0)
    ds.probe(ds.Chain([("mix", lambda h: torch.softmax(h, 0))]), torch.randn(1, 4), lyapunov=0)


class _SelfScaling(nn.Module):
    """A block that scales its own input in place before using it (legal inside a model's forward)."""

    def __init__(self, inplace: bool):
        super().__init__()
        self.lin, self.inplace = nn.Linear(4, 4), inplace

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.mul_(0.5) if self.inplace else x * 0.5
        return torch.tanh(self.lin(x)) + x


def _same_reports(a: ds.Report, b: ds.Report) -> None:
    for p, q in zip(a.blocks, b.blocks):
        assert p.local_rms == pytest.approx(q.local_rms, rel=1e-6)
        assert p.cum_log_rms == pytest.approx(q.cum_log_rms, rel=1e-6, abs=1e-9)
        assert p.grad_log_norm == pytest.approx(q.grad_log_norm, rel=1e-6, abs=1e-9)


def test_in_place_operations_on_the_block_input_are_probed_correctly() -> None:
    torch.manual_seed(0)
    inplace = nn.Sequential(nn.Linear(4, 4), _SelfScaling(True), _SelfScaling(True))
    plain = nn.Sequential(nn.Linear(4, 4), _SelfScaling(False), _SelfScaling(False))
    plain.load_state_dict(inplace.state_dict())
    x = torch.randn(3, 4)
    _same_reports(ds.probe(inplace, x, lyapunov=0), ds.probe(plain, x, lyapunov=0))


def test_in_place_activation_as_its_own_step() -> None:
    torch.manual_seed(0)
    inplace = nn.Sequential(nn.Linear(4, 4), nn.ReLU(inplace=True), nn.Linear(4, 4))
    plain = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4))
    plain.load_state_dict(inplace.state_dict())
    x = torch.randn(3, 4)
    rep = ds.probe(inplace, x, lyapunov=0, exact=True)
    _same_reports(rep, ds.probe(plain, x, lyapunov=0, exact=True))
    Js, _ = step_jacobians(ds.Chain.from_module(plain), x)
    assert rep.blocks[1].local_rms == pytest.approx(float((Js[1].flatten(1).norm(dim=1) / 2).mean()), rel=1e-6)


def test_in_place_overwrite_autograd_needs_names_the_step() -> None:
    class Overwrites(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 4)

        def forward(self, x):
            o = torch.tanh(self.lin(x))  # tanh's backward needs o ...
            o.mul_(2)  # ... which this overwrites: plain autograd fails too
            return o

    with pytest.raises(ds.InputError, match=r"step 1 \('1'\) cannot be differentiated by autograd.*in-place"):
        ds.probe(nn.Sequential(nn.Linear(4, 4), Overwrites()), torch.randn(3, 4))


def test_torchscript_models_get_a_clear_error() -> None:
    seq = nn.Sequential(nn.Linear(4, 4), nn.Tanh())
    with pytest.raises(ds.ChainError, match="TorchScript"):
        ds.probe(torch.jit.script(seq), torch.randn(2, 4))
    with warnings.catch_warnings():  # torch deprecates trace; the model is still one users hold
        warnings.simplefilter("ignore", FutureWarning)
        traced = torch.jit.trace(seq, torch.randn(2, 4))
    with pytest.raises(ds.ChainError, match="TorchScript"):
        ds.probe(traced, torch.randn(2, 4))


def test_wrapped_models_are_unwrapped() -> None:
    torch.manual_seed(0)
    seq = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 4))
    x = torch.randn(3, 4)
    ref = ds.probe(seq, x, lyapunov=0)
    for wrapped in (nn.DataParallel(seq), torch.compile(seq), torch.compile(nn.DataParallel(seq))):
        rep = ds.probe(wrapped, x, lyapunov=0)
        assert [b.name for b in rep.blocks] == ["0", "1", "2"]
        _same_reports(rep, ref)


@pytest.mark.parametrize("seed", ["abc", 2**70, -1, 1.5, True, None])
def test_bad_seeds(seed) -> None:
    with pytest.raises(ds.InputError, match="seed"):
        ds.probe(ds.Chain([nn.Linear(2, 2)]), torch.randn(1, 2), seed=seed)


def test_largest_seed_is_accepted() -> None:
    ds.probe(ds.Chain([nn.Linear(2, 2)]), torch.randn(1, 2), seed=2**64 - 1, lyapunov=0)


@pytest.mark.parametrize(
    "name, value",
    [("probes", 2.5), ("probes", True), ("probes", "16"), ("lyapunov", 2.5), ("lyapunov", True), ("lyapunov", -1)],
)
def test_non_integer_counts(name: str, value) -> None:
    with pytest.raises(ds.InputError, match=name):
        ds.probe(ds.Chain([nn.Linear(2, 2)]), torch.randn(1, 2), **{name: value})


def test_more_lyapunov_exponents_than_the_width_says_so() -> None:
    chain = ds.Chain([nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 3)])
    with pytest.warns(ds.ProbeWarning, match=r"lyapunov=10 exceeds the narrowest state.*\(3 values"):
        rep = ds.probe(chain, torch.randn(2, 4), lyapunov=10)
    assert rep.settings["lyapunov"] == 3 and len(rep.lyapunov) == 3
    quiet = ds.probe(chain, torch.randn(2, 4))  # the default asks for up to 8, without a warning
    assert quiet.settings["lyapunov"] == 3


def test_lyapunov_takes_a_list_of_steps_like_probe() -> None:
    W = torch.tensor([[0.5, 0.2], [0.0, 0.8]], dtype=torch.float64)
    steps = [lambda h: h @ W.T] * 50
    x = torch.ones(1, 2, dtype=torch.float64)
    from_list = ds.lyapunov(steps, x, k=2)
    assert torch.equal(from_list.exponents, ds.lyapunov(ds.Chain(steps), x, k=2).exponents)
    assert from_list.exponents.tolist() == pytest.approx([math.log(0.8), math.log(0.5)], abs=0.02)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(chain="abc"), "takes a Chain"),
        (dict(x=torch.ones(2)), "x\\[None\\]"),
        (dict(k=1.5), "k must"),
        (dict(seed=2**70), "seed"),
        (dict(transient=-1), "transient"),
    ],
)
def test_lyapunov_bad_arguments(kwargs, match) -> None:
    args = dict(chain=[torch.tanh], x=torch.ones(2, 2)) | kwargs
    with pytest.raises(ds.InputError, match=match):
        ds.lyapunov(args.pop("chain"), args.pop("x"), **args)
