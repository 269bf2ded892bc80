"""A claim of the theory as an experiment that can fail: its definition (the registry is `_registry`).

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
