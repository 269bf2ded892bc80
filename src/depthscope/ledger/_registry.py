"""The ledger's registry of experiments: the built-in claims and any registered after them.

The built-in claims are the one list `depthscope.ledger.claims.EXPERIMENTS`, registered here in
one place (`_register_builtins`) before the registry is first read or extended; no claim module
registers itself as a side effect of being imported. `register_experiment` adds more, validated
the same way.
"""

from __future__ import annotations

import re

from depthscope._errors import DepthscopeError
from depthscope.ledger._experiment import PRESETS, SOURCES, Experiment

_ID = re.compile(r"^[A-Z]+[0-9]+$")
# Claim families in CLAIMS.md order: residual, engineering (J), norm (N), vanishing (V).
_FAMILY_ORDER = "RJNV"


class UnknownClaimError(DepthscopeError, KeyError):
    """No experiment is registered under the requested claim id."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


_REGISTRY: dict[str, Experiment] = {}
_builtins_registered = False


def _register_builtins() -> None:
    """Register the built-in claims, once.

    On first use rather than at import: the claims import the zoo, the solvers and the training
    code (about 0.1 s), which ``import depthscope`` should not pay for a probe. The claims import
    only `_experiment`, `_data` and `_train`, never this module, so there is no circle.
    """
    global _builtins_registered
    if _builtins_registered:
        return
    from depthscope.ledger.claims import EXPERIMENTS

    for experiment in EXPERIMENTS:
        _add(experiment)
    _builtins_registered = True


def register_experiment(experiment: Experiment) -> Experiment:
    """Add ``experiment`` to the ledger (ids are unique, the built-in claims' included)."""
    _register_builtins()
    return _add(experiment)


def _add(experiment: Experiment) -> Experiment:
    """Validate ``experiment`` and add it to the registry."""
    if not _ID.match(experiment.id):
        raise ValueError(f"claim id must look like 'R7', got {experiment.id!r}")
    if experiment.id in _REGISTRY:
        raise ValueError(f"claim {experiment.id} is already registered")
    if experiment.source not in SOURCES:
        raise ValueError(f"{experiment.id}: unknown source {experiment.source!r}")
    missing = [p for p in PRESETS if p not in experiment.presets]
    if missing:
        raise ValueError(f"{experiment.id}: missing preset(s) {missing}")
    keys = set(experiment.presets["tiny"])
    for name, preset in experiment.presets.items():
        if set(preset) != keys:
            raise ValueError(f"{experiment.id}: preset {name!r} keys differ from 'tiny'")
    unknown = set(experiment.counterexample) - keys
    if unknown or not experiment.counterexample:
        raise ValueError(f"{experiment.id}: counterexample must override known settings, got {sorted(unknown)}")
    _REGISTRY[experiment.id] = experiment
    return experiment


def _order(claim_id: str) -> tuple[int, int]:
    family = _FAMILY_ORDER.find(claim_id[0])
    return (family if family >= 0 else len(_FAMILY_ORDER), int(re.sub(r"\D", "", claim_id)))


def list_experiments() -> list[str]:
    """Registered claim ids in CLAIMS.md order (R, J, N, V; numeric within each)."""
    _register_builtins()
    return sorted(_REGISTRY, key=_order)


def get_experiment(claim_id: str) -> Experiment:
    """The experiment registered for ``claim_id`` (case-insensitive)."""
    _register_builtins()
    key = claim_id.strip().upper()
    if key not in _REGISTRY:
        raise UnknownClaimError(f"no experiment for claim {claim_id!r}; known: {', '.join(list_experiments())}")
    return _REGISTRY[key]
