"""What every source returns, the errors sources raise, and the input helpers they share."""

from __future__ import annotations

import difflib
import importlib
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from depthscope._errors import DepthscopeError, InputError, UnknownModelError

# Pixel input of the image libraries when no shape is given: their common ImageNet resolution.
DEFAULT_IMAGE_SHAPE = (3, 224, 224)
# Close names suggested for a misspelt one (difflib's ratio cut-off and count).
SUGGESTIONS = 3
SUGGESTION_CUTOFF = 0.6
# A list of known names this short is printed whole in an unknown-name error.
LIST_KNOWN_UP_TO = 12


class MissingLibraryError(DepthscopeError, ImportError):
    """An optional library a source needs is not installed; the message names what to install."""


class Built(NamedTuple):
    """A model built with random weights and an input batch for it.

    Attributes:
        model: the ``nn.Module``, in eval mode.
        input: the example batch ``(B, *S_0)`` (float pixels or long token ids).
        label: a short name for titles, e.g. ``"torchvision resnet18"``.
    """

    model: nn.Module
    input: torch.Tensor
    label: str


def require(module: str, install: str):
    """Import the optional library ``module``, or raise `MissingLibraryError` saying ``install``."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingLibraryError(f"{module} is not installed: {install}") from err


def unknown_name(kind: str, name: str, known: list[str]) -> UnknownModelError:
    close = difflib.get_close_matches(name, known, n=SUGGESTIONS, cutoff=SUGGESTION_CUTOFF)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    if len(known) <= LIST_KNOWN_UP_TO:
        hint += f" (known: {', '.join(known)})"
    return UnknownModelError(f"unknown {kind} {name!r}{hint}")


def parse_shape(text: str) -> tuple[int, ...]:
    """``"1,3,224,224"`` -> ``(1, 3, 224, 224)``: comma-separated positive integers, batch first."""
    parts = [p.strip() for p in text.replace("x", ",").split(",")]
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        raise InputError(f"expected a shape such as 1,3,224,224, got {text!r}") from None
    if not shape or any(n < 1 for n in shape):
        raise InputError(f"a shape needs positive sizes, got {text!r}")
    return shape


def as_shape(input_shape: tuple[int, ...] | str) -> tuple[int, ...]:
    """A shape given as text (`parse_shape`) or as a sequence of sizes, as a tuple."""
    return parse_shape(input_shape) if isinstance(input_shape, str) else tuple(input_shape)


def random_input(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """A standard normal batch of ``shape`` (float32), drawn from its own generator seeded ``seed``."""
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def load_input(path: str | Path) -> torch.Tensor:
    """A tensor saved with ``torch.save`` (loaded with ``weights_only=True``: no code runs)."""
    target = Path(path)
    if not target.is_file():
        raise InputError(f"cannot read input {target}: no such file")
    try:
        value = torch.load(target, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a file that is not a tensor file
        raise InputError(f"cannot read input {target}: {err}") from err
    if not isinstance(value, torch.Tensor):
        raise InputError(f"input {target} holds a {type(value).__name__}, not a tensor")
    return value


def seeded_build(seed: int, build, what: str):
    """``build()`` with torch's global generator seeded ``seed`` and restored afterwards, so the
    random weights depend on ``seed`` alone and the caller's random state is untouched.

    The builder's own checks of its arguments (a TypeError for an unknown keyword, a ValueError or
    torch's RuntimeError for a bad size) become an `InputError` "cannot build ``what``: ..."."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            model = build()
        except (TypeError, ValueError, RuntimeError) as err:
            raise InputError(f"cannot build {what}: {err}") from err
    if not isinstance(model, nn.Module):
        raise InputError(f"the model builder returned a {type(model).__name__}, not a torch.nn.Module")
    return model.eval()
