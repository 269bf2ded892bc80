"""The batch contract: what a batch is, and the check that steps keep its examples apart."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import depthscope as ds
from depthscope.chain import check_batch, check_examples_independent


@pytest.mark.parametrize(
    "x, match",
    [
        ([[1.0]], "torch.Tensor"),
        (torch.tensor(1.0), "scalar"),
        (torch.ones(3), r"x\[None\]"),
        (torch.ones(0, 3), "empty batch"),
        (torch.ones(2, 3, device="meta"), "meta device"),
        (torch.ones(2, 3, dtype=torch.bool), "dtype"),
        (torch.ones(2, 3, dtype=torch.complex64), "dtype"),
    ],
)
def test_check_batch_refuses(x, match) -> None:
    with pytest.raises(ds.InputError, match=match):
        check_batch(x)


def test_check_batch_accepts_floats_and_ids() -> None:
    check_batch(torch.ones(1, 3))
    check_batch(torch.zeros(2, 5, dtype=torch.long))


def _check(fn, x: torch.Tensor) -> None:
    step = ds.Step("s", fn)
    check_examples_independent(step, 4, x, fn(x))


@pytest.mark.parametrize("batch", [2, 3, 32, 1024])
@pytest.mark.parametrize(
    "fn",
    [
        lambda h: torch.softmax(h, 0),
        lambda h: h.flip(0),
        lambda h: h.roll(1, 0),
        lambda h: (h - h.mean(0)) / (h.std(0) + 1),
    ],
    ids=["softmax-dim0", "flip", "roll", "batch-norm"],
)
def test_coupling_is_found_at_every_batch_size(fn, batch: int) -> None:
    x = torch.randn(batch, 16, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ds.ChainError, match=r"step 4 \('s'\) mixes the examples"):
        _check(fn, x)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_per_example_steps_pass(dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    lin = nn.Linear(16, 16).to(dtype)
    x = torch.randn(32, 4, 16, dtype=dtype)
    _check(lambda h: torch.softmax(lin(h), -1) * h.mean(1, keepdim=True), x)
    _check(lambda h: torch.zeros_like(h), x)  # constant steps: nothing moves at all
    _check(lambda h: torch.softmax(h, 0), x[:1])  # one example: nothing to mix


def test_randomness_in_a_step_is_reported() -> None:
    with pytest.raises(ds.ChainError, match="randomness"):
        _check(lambda h: h + torch.randn_like(h), torch.randn(4, 3))


def test_the_check_leaves_its_arguments_alone() -> None:
    x = torch.randn(4, 3)
    x_before = x.clone()

    def scale_in_place(h: torch.Tensor) -> torch.Tensor:
        return h.mul_(2)

    y = scale_in_place(x.clone())
    y_before = y.clone()
    check_examples_independent(ds.Step("s", scale_in_place), 0, x, y)
    assert torch.equal(x, x_before) and torch.equal(y, y_before)
