"""`ProbeOptions`: how a probe measures, one frozen object checked once and passed whole."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from depthscope._errors import InputError, check_count, check_seed

DEFAULT_PROBES = 16
DEFAULT_LYAPUNOV = 8
METHODS = ("auto", "explicit", "matrix-free")


@dataclass(frozen=True)
class ProbeOptions:
    """The settings of one probe (the keyword arguments of `depthscope.probe`, which documents them).

    Attributes:
        probes: least number of Hutchinson probes and least size of the random frame (>= 1).
        lyapunov: number of Lyapunov exponents (>= 0); None asks for the default, which
            the probe fixes once the chain's narrowest state is known (at most its width).
        seed: seeds every random choice, in [0, 2**64).
        exact: build every Jacobian, full SVDs and basis pushes (the oracle).
        method: route of the local statistics, one of `METHODS`.
        sigma_min: also sigma_min and ||J - I||_2 of square steps.
        loss: ``loss(output) -> scalar`` for the gradient quantities; None: a random projection.

    Raises (on construction):
        InputError: an unknown method, a count that is not an integer >= its least value, a seed
            outside [0, 2**64). Checked in that order, so the first bad argument is named.
    """

    probes: int = DEFAULT_PROBES
    lyapunov: int | None = None
    seed: int = 0
    exact: bool = False
    method: str = "auto"
    sigma_min: bool = True
    loss: Callable[[torch.Tensor], torch.Tensor] | None = None

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise InputError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        # Frozen: the checked values (numpy integers become ints) are set through object.__setattr__.
        object.__setattr__(self, "probes", check_count("probes", self.probes, 1))
        if self.lyapunov is not None:
            object.__setattr__(self, "lyapunov", check_count("lyapunov", self.lyapunov, 0))
        object.__setattr__(self, "seed", check_seed(self.seed))

    @property
    def route_method(self) -> str:
        """The local route asked for: "explicit" when ``exact``, else ``method``."""
        return "explicit" if self.exact else self.method
