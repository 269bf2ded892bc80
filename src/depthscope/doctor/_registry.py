"""The doctor's registry of treatments: the built-in ones and any registered after them.

The built-in treatments are the one list `depthscope.doctor.treatments.TREATMENTS`, registered here
in one place when this module is imported; no treatment module registers itself.
`register_treatment` adds more, validated the same way.
"""

from __future__ import annotations

import re

from depthscope._errors import InputError
from depthscope.doctor._finding import KINDS
from depthscope.doctor._treatment import Treatment
from depthscope.doctor.treatments import TREATMENTS

# Registry keys are typed by users (``dx.apply(model, "deepnorm")``, ``--apply pre-ln``):
# lower-case words joined by hyphens.
_NAME = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
# The attributes every treatment declares (the contract in `depthscope.doctor._treatment`).
REQUIRED = ("name", "title", "source", "treats", "promise")


class UnknownTreatmentError(InputError, KeyError):
    """No treatment is registered under the requested name."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


_REGISTRY: dict[str, Treatment] = {}


def register_treatment(treatment: Treatment) -> Treatment:
    """Add a `Treatment` instance to the registry under its ``name``; returns it.

    Raises:
        TypeError: ``treatment`` is not a `Treatment` instance.
        ValueError: a required attribute is missing or empty, the name is malformed or taken, or
            ``treats`` names an unknown finding kind.
    """
    if not isinstance(treatment, Treatment):
        raise TypeError(f"register_treatment takes a Treatment instance, got {type(treatment).__name__}")
    cls = type(treatment).__name__
    missing = [a for a in REQUIRED if not getattr(treatment, a, None)]
    if missing:
        raise ValueError(f"treatment {cls} does not declare {', '.join(missing)}")
    if not _NAME.match(treatment.name):
        raise ValueError(f"treatment name must be lower-case words joined by hyphens, got {treatment.name!r}")
    if treatment.name in _REGISTRY:
        raise ValueError(
            f"treatment {treatment.name!r} is already registered ({type(_REGISTRY[treatment.name]).__name__})"
        )
    unknown = [k for k in treatment.treats if k not in KINDS]
    if unknown:
        raise ValueError(
            f"treatment {treatment.name!r} treats unknown finding kinds {unknown}; kinds: {', '.join(KINDS)}"
        )
    _REGISTRY[treatment.name] = treatment
    return treatment


def get_treatment(name: str) -> Treatment:
    """The treatment registered as ``name`` (case and surrounding space ignored).

    Raises:
        UnknownTreatmentError: no such treatment; the message lists the registered names.
    """
    key = name.strip().lower() if isinstance(name, str) else name
    if key not in _REGISTRY:
        raise UnknownTreatmentError(f"unknown treatment {name!r}; registered: {', '.join(_REGISTRY)}")
    return _REGISTRY[key]


def list_treatments() -> list[Treatment]:
    """Every registered treatment, in registration order (the built-in ones first)."""
    return list(_REGISTRY.values())


for _cls in TREATMENTS:
    register_treatment(_cls())
del _cls
