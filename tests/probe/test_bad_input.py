"""Bad input gets a clear error, never a silently wrong report."""

from __future__ import annotations

import pytest
import torch
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
    assert rep_eval.blocks[1].local_fro > 0


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
