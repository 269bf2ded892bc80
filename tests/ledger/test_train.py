"""The shared training loop: it learns, it is deterministic, and a NaN loss is an error."""

import math

import pytest
import torch
from torch import nn

import depthscope.ledger as ledger
from depthscope import NonFiniteError


def _model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


def test_training_reduces_the_loss_and_is_deterministic():
    data = ledger.digits().subset(400, 200)
    a = ledger.train_classifier(_model(), data, steps=60, lr=0.05, batch=64, seed=1)
    b = ledger.train_classifier(_model(), data, steps=60, lr=0.05, batch=64, seed=1)
    assert a.train_loss == b.train_loss
    assert a.final_train_loss < 0.5 * math.log(10)  # chance level is ln 10
    assert a.test_accuracy > 0.7


def test_nan_loss_is_reported_with_its_step():
    data = ledger.digits().subset(100, 50)
    with pytest.raises(NonFiniteError, match="step 0"):
        ledger.train_classifier(nn.Sequential(nn.Linear(64, 10), _Nan()), data, steps=5, lr=0.1)


def test_unknown_optimizer():
    with pytest.raises(ValueError, match="optimizer"):
        ledger.train_classifier(_model(), ledger.digits().subset(50, 10), steps=1, lr=0.1, optimizer="lbfgs")


class _Nan(nn.Module):
    def forward(self, x):
        return x * float("nan")
