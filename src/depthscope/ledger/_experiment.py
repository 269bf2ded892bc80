"""A claim of the theory as an experiment that can fail: its definition and its registry.

An `Experiment` splits into three pure parts, so that computing stays separate from judging and
from displaying:

* ``measure(setting, seed) -> dict``: runs the experiment at the sizes in ``setting`` and returns
  the measured figures (plain numbers, lists, nested dicts; numpy/torch values are converted when
  written);
* ``judge(measured, setting) -> Judgement``: the verdict, decided by the refutation condition that
  the experiment states up front in ``refuted_if``;
* ``plot(measured, setting) -> matplotlib Figure`` (optional): the atlas figure.

Every experiment carries a ``counterexample``: setting overrides (applied on top of the ``tiny``
preset) under which the same ``measure`` and ``judge`` code must reach ``refuted``. The
conformance test runs it, which shows that the refutation branch is real and reachable.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from depthscope._errors import DepthscopeError

CONFIRMED, QUALIFIED, REFUTED = "confirmed", "qualified", "refuted"
VERDICTS = (CONFIRMED, QUALIFIED, REFUTED)
PRESETS = ("tiny", "quick", "full")
SOURCES = {
    "000": "Residual learning",
    "001": "The Jacobian as an engineering tool",
    "002": "Fibonacci and norm preservation",
    "003": "Vanishing and exploding gradients",
}
_ID = re.compile(r"^[A-Z]+[0-9]+$")


class UnknownClaimError(DepthscopeError, KeyError):
    """No experiment is registered under the requested claim id."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


@dataclass(frozen=True)
class Judgement:
    """A verdict and the sentence that explains it with the measured numbers."""

    verdict: str
    reason: str

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")


def confirmed(reason: str) -> Judgement:
    return Judgement(CONFIRMED, reason)


def qualified(reason: str) -> Judgement:
    return Judgement(QUALIFIED, reason)


def refuted(reason: str) -> Judgement:
    return Judgement(REFUTED, reason)


@dataclass(frozen=True)
class Experiment:
    """One claim and the experiment that tests it.

    Attributes:
        id: the claim's stable id from CLAIMS.md ("R7", "J3", ...).
        statement: the claim as the text states it.
        source: the seed text it comes from ("000" ... "003").
        expected: what the claim predicts, in measurable terms.
        refuted_if: the outcome that would refute it, fixed before running.
        presets: settings per preset name ("tiny", "quick", "full"); "tiny" runs in CI.
        measure, judge, plot: see the module docstring.
        counterexample: overrides of the tiny setting under which the verdict must be "refuted".
        references: published results the experiment is compared with (shown in the atlas).
    """

    id: str
    statement: str
    source: str
    expected: str
    refuted_if: str
    presets: Mapping[str, Mapping[str, Any]]
    measure: Callable[[Mapping[str, Any], int], dict]
    judge: Callable[[Mapping[str, Any], Mapping[str, Any]], Judgement]
    counterexample: Mapping[str, Any]
    plot: Callable[[Mapping[str, Any], Mapping[str, Any]], Any] | None = None
    references: tuple[str, ...] = field(default_factory=tuple)

    def setting(self, preset: str = "quick", **overrides: Any) -> dict[str, Any]:
        """The preset's setting with ``overrides`` applied (unknown keys are an error)."""
        if preset not in self.presets:
            raise DepthscopeError(f"{self.id} has no preset {preset!r}; it has {sorted(self.presets)}")
        setting = dict(self.presets[preset])
        unknown = set(overrides) - set(setting)
        if unknown:
            raise DepthscopeError(f"{self.id}: unknown setting(s) {sorted(unknown)}; known: {sorted(setting)}")
        setting.update(overrides)
        return setting


_REGISTRY: dict[str, Experiment] = {}


def register_experiment(experiment: Experiment) -> Experiment:
    """Add ``experiment`` to the ledger (ids are unique)."""
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


def _load_claims() -> None:
    import depthscope.ledger.claims  # noqa: F401  (registers every experiment on import)


def _order(claim_id: str) -> tuple[int, int]:
    family = "RJNV".find(claim_id[0])
    return (family if family >= 0 else len("RJNV"), int(re.sub(r"\D", "", claim_id)))


def list_experiments() -> list[str]:
    """Registered claim ids in CLAIMS.md order (R, J, N, V; numeric within each)."""
    _load_claims()
    return sorted(_REGISTRY, key=_order)


def get_experiment(claim_id: str) -> Experiment:
    """The experiment registered for ``claim_id`` (case-insensitive)."""
    _load_claims()
    key = claim_id.strip().upper()
    if key not in _REGISTRY:
        raise UnknownClaimError(f"no experiment for claim {claim_id!r}; known: {', '.join(list_experiments())}")
    return _REGISTRY[key]
