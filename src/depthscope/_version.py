"""depthscope's version, and the versions of what produced a result (recorded in reports and ledgers)."""

from __future__ import annotations

import platform

import numpy as np
import torch

__version__ = "0.1.0"


def runtime_versions(*, numpy: bool = True) -> dict[str, str]:
    """The versions of depthscope, torch, numpy (unless ``numpy=False``) and python, in that order.

    Probe reports record depthscope, torch and python (their numbers come from torch alone); claim
    results add numpy, which their experiments also compute with.
    """
    found = {"depthscope": __version__, "torch": torch.__version__}
    if numpy:
        found["numpy"] = np.__version__
    found["python"] = platform.python_version()
    return found
