"""`ProbeOptions`: checked once, frozen, the same errors as `depthscope.probe`'s arguments."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from depthscope import InputError
from depthscope.probing import DEFAULT_PROBES, ProbeOptions


def test_defaults_and_normalised_values() -> None:
    opts = ProbeOptions()
    assert (opts.probes, opts.lyapunov, opts.seed, opts.method) == (DEFAULT_PROBES, None, 0, "auto")
    opts = ProbeOptions(probes=np.int64(4), lyapunov=np.int32(2), seed=np.uint64(7))
    assert (type(opts.probes), type(opts.lyapunov), type(opts.seed)) == (int, int, int)
    assert ProbeOptions(exact=True, method="matrix-free").route_method == "explicit"
    assert ProbeOptions(method="matrix-free").route_method == "matrix-free"


def test_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        ProbeOptions().probes = 3


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(method="fast"), "method must be one of auto, explicit, matrix-free"),
        (dict(probes=0), "probes must be >= 1"),
        (dict(probes=2.5), "probes must be an integer"),
        (dict(lyapunov=-1), "lyapunov must be >= 0"),
        (dict(seed=-1), "seed must lie in"),
        (dict(method="fast", probes=0), "method"),  # the first bad argument is named
    ],
)
def test_bad_options(kw: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        ProbeOptions(**kw)
