"""A claim's result (`ClaimResult`) and the results file that stores many of them (strict JSON)."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from depthscope._errors import DepthscopeError
from depthscope._io import atomic_write_text, encode_json, read_json_object
from depthscope._version import runtime_versions

RESULTS_FORMAT = 1  # bump when fields change meaning (new fields with defaults do not)


@dataclass
class ClaimResult:
    """What one experiment measured and concluded.

    Attributes:
        id, statement, source, expected, refuted_if: copied from the `Experiment`.
        preset, setting, seed: how it was run.
        measured: the measured figures (JSON-safe).
        verdict: "confirmed" | "qualified" | "refuted"; reason: why, with numbers.
        runtime_s: wall time of measure + judge.
        versions: depthscope, torch, numpy, python.
        references: published results compared with.
        figure_png: the atlas figure as PNG bytes (in results.json as base64, key ``figure_png_base64``,
            so that the atlas can be rebuilt from the results file alone).
        finished_at: when the run finished, UTC, ISO 8601 ("" in files from before it was recorded).
    """

    id: str
    statement: str
    source: str
    expected: str
    refuted_if: str
    preset: str
    setting: dict[str, Any]
    seed: int
    measured: dict[str, Any]
    verdict: str
    reason: str
    runtime_s: float
    versions: dict[str, str]
    references: list[str] = field(default_factory=list)
    figure_png: bytes | None = field(default=None, repr=False)
    finished_at: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        png = d.pop("figure_png")
        d["figure_png_base64"] = None if png is None else base64.b64encode(png).decode("ascii")
        return encode_json(d)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ClaimResult:
        """The result stored as ``d`` by `to_dict`; fields unknown to this version are ignored."""
        if not isinstance(d, Mapping):
            raise DepthscopeError(f"a claim result must be a JSON object, got {type(d).__name__}")
        known = {f.name: f for f in fields(cls) if f.name != "figure_png"}
        required = [n for n, f in known.items() if f.default is MISSING and f.default_factory is MISSING]
        missing = [n for n in required if n not in d]
        if missing:
            raise DepthscopeError(f"claim result {d.get('id', '?')!s} lacks the fields {', '.join(missing)}")
        kw = {k: v for k, v in d.items() if k in known}
        encoded = d.get("figure_png_base64")
        if encoded is not None:
            try:
                kw["figure_png"] = base64.b64decode(encoded, validate=True)
            except (binascii.Error, TypeError, ValueError) as err:
                raise DepthscopeError(f"claim result {d['id']!s}: figure_png_base64 is not base64 ({err})") from err
        return cls(**kw)


def results_json(results: list[ClaimResult]) -> str:
    payload = {"format": RESULTS_FORMAT, "versions": runtime_versions(), "results": [r.to_dict() for r in results]}
    return json.dumps(payload, indent=1, allow_nan=False)


def save_results(results: list[ClaimResult], path: str | Path) -> Path:
    """Write ``results`` as strict JSON, atomically."""
    target = Path(path)
    atomic_write_text(target, results_json(results))
    return target


def load_results(path: str | Path) -> list[ClaimResult]:
    """Read a results file written by `save_results` or `write_ledger`."""
    what = f"a depthscope ledger results file of format {RESULTS_FORMAT}"
    payload = read_json_object(path, what)
    if payload.get("format") != RESULTS_FORMAT:
        raise DepthscopeError(f"{path} is not {what} (format {payload.get('format')!r})")
    entries = payload.get("results")
    if not isinstance(entries, list):
        problem = (
            "has no 'results' list"
            if entries is None
            else f"has 'results' of type {type(entries).__name__}, not a list"
        )
        raise DepthscopeError(f"{path} is not {what}: it {problem}")
    results = []
    for i, entry in enumerate(entries):
        try:
            results.append(ClaimResult.from_dict(entry))
        except DepthscopeError as err:
            raise DepthscopeError(f"{path}: results[{i}]: {err}") from err
    return results
