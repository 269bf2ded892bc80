"""The probe's result: per-step `BlockStats` and the chain-level `Report`, with JSON round-trip."""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import MISSING, asdict, dataclass, field, fields, make_dataclass
from pathlib import Path
from typing import Any

from depthscope._errors import DepthscopeError
from depthscope._io import SPECIAL_FLOATS, atomic_write_text, encode_json, read_json_object
from depthscope.probing._figure import report_figure
from depthscope.probing._html import save_report_html
from depthscope.probing._quantities import FORMER_NAMES, QUANTITIES
from depthscope.probing._warning import ProbeWarning

# Bump when fields change name or meaning. 2: local_fro, local_fro_se, cum_log_fro and
# cum_log_fro_se renamed local_rms, ... (they are RMS singular values, not Frobenius norms; format 1
# files load with the old names mapped, `FORMER_NAMES`); local_cond added.
REPORT_FORMAT = 2


def _block_fields() -> list[tuple[str, str, Any]]:
    """`make_dataclass` fields of `BlockStats` from `QUANTITIES`: required ones positional, in
    declaration order, the others keyword-only with their defaults (older reports lack them)."""
    out = []
    for q in QUANTITIES:
        out.append((q.name, q.type) if q.required else (q.name, q.type, field(default=q.default, kw_only=True)))
    return out


def _block_doc() -> str:
    lines = ["Statistics of one step k (all logs natural; averaged over the batch's examples).", "", "Attributes:"]
    lines += [f"    {q.name}: {q.doc}" for q in QUANTITIES]
    lines += ["", "Built from `depthscope.probing._quantities.QUANTITIES`, where each field is declared."]
    return "\n".join(lines)


# One field per declared quantity; a dataclass like any other (equality, repr, asdict, pickling).
BlockStats = make_dataclass("BlockStats", _block_fields())
BlockStats.__module__ = __name__
BlockStats.__doc__ = _block_doc()


@dataclass
class Report:
    """What `depthscope.probe` measured.

    Attributes:
        blocks: one `BlockStats` per differentiated step.
        lyapunov: top Lyapunov exponents per step, descending (empty if not asked for).
        log_gain: end-to-end log RMS gain over the nonzero singular values of J(0 -> L).
        verdict: "vanishing" | "exploding" | "stable".
        depth_scale: steps over which the gain changes by a factor e (inf when it does not change).
        input_grad_log_norm: log ||dE/dx|| at the first differentiated state.
        settings: how it was measured (probes, seed, methods, thresholds).
        versions: depthscope, torch, python.
        body_span: chain indices [first, last] of the body, the differentiated steps apart from a
            stem and a head (rule: `depthscope.probing._verdict.body_span`); None when none is left.
        body_log_gain: log RMS gain across the body (natural log); None when not measurable.
        body_verdict, body_depth_scale: verdict and depth scale of the body alone.
        dominant_step, dominant_share: the step whose jump in cumulative log gain is the largest
            share of the end-to-end log change, and that share in [0, 1] (None: no step changes it).
        zero_steps: names of the steps whose Jacobian is exactly zero (a zero-initialised head).
        notes: one sentence per finding on what drives the verdict.
    """

    blocks: list[BlockStats]
    lyapunov: list[float]
    log_gain: float
    verdict: str
    depth_scale: float
    input_grad_log_norm: float
    settings: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    # What drives the verdict; defaults so that reports written before these fields still load.
    body_span: list[int] | None = None
    body_log_gain: float | None = None
    body_verdict: str | None = None
    body_depth_scale: float | None = None
    dominant_step: str | None = None
    dominant_share: float | None = None
    zero_steps: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.blocks)

    def column(self, name: str) -> list[Any]:
        """One field across all blocks, e.g. ``report.column("grad_ratio")``."""
        return [getattr(b, name) for b in self.blocks]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["format"] = REPORT_FORMAT
        return encode_json(d)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the report as JSON atomically (a temporary file renamed over the target)."""
        target = Path(path)
        text = json.dumps(self.to_dict(), indent=1, allow_nan=False)
        atomic_write_text(target, text)
        return target

    def plot(self):
        """A matplotlib ``Figure`` of the report (`depthscope.probing._figure`): local gain with its
        sigma band, cumulative log gain, gradient log-norm, Lyapunov spectrum; no pyplot state."""
        return report_figure(self)

    def save_html(self, path: str | os.PathLike, title: str = "depthscope report") -> Path:
        """Write one self-contained HTML page (figure, verdict, per-step table, settings) atomically."""
        return save_report_html(self, path, title)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Report:
        """The report stored as ``d`` by `to_dict` (see `load` for what is accepted)."""
        return _report_from_dict(d, "report", stacklevel=3)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Report:
        """Read a report written by `save`.

        Reports of formats ``OLDEST_READABLE_FORMAT`` to ``REPORT_FORMAT`` load; a field absent from
        the file takes its default (the file predates the field), a required field absent is an
        error, and fields this version does not know (a newer writer), at the top level or in a
        block, are dropped with one `ProbeWarning` naming them. Anything else that is not a report
        raises `DepthscopeError` naming the file and what is wrong.
        """
        payload = read_json_object(path, "a depthscope report")
        return _report_from_dict(payload, str(path), stacklevel=3)


# Oldest report format this version reads; raise it when a bump changes what an old field means.
OLDEST_READABLE_FORMAT = 1
# Reports of formats before this one name some block fields by their former names (`FORMER_NAMES`).
RENAMED_IN_FORMAT = 2
# Value types a field's annotation allows (bool is excluded from the numbers: JSON true is no 1.0).
_ANNOTATION_TYPES = {"float": (int, float), "int": (int,), "str": (str,)}


def _value_ok(value: Any, annotation: str) -> bool:
    """Whether ``value`` fits a simple annotation ("float", "int | None", ...); others are not checked."""
    parts = [a.strip() for a in str(annotation).split("|")]
    if value is None:
        return "None" in parts or not all(p in _ANNOTATION_TYPES or p == "None" for p in parts)
    allowed = [_ANNOTATION_TYPES[p] for p in parts if p in _ANNOTATION_TYPES]
    if len(allowed) < len([p for p in parts if p != "None"]):
        return True  # a container or other annotation: not checked here
    return not isinstance(value, bool) and any(isinstance(value, t) for t in allowed)


def _dataclass_kwargs(cls: type, d: dict[str, Any], where: str, unknown: set[str]) -> dict[str, Any]:
    """Keyword arguments of ``cls`` from ``d``: required fields present, simple types checked."""
    known = {f.name: f for f in fields(cls)}
    unknown.update(k for k in d if k not in known)
    missing = [n for n, f in known.items() if n not in d and f.default is MISSING and f.default_factory is MISSING]
    if missing:
        raise DepthscopeError(f"{where} lacks the required fields {', '.join(missing)}")
    kw = {k: v for k, v in d.items() if k in known}
    for name, value in kw.items():
        if not _value_ok(value, known[name].type):
            raise DepthscopeError(f"{where}: {name} should be {known[name].type}, got {value!r}")
    return kw


def _report_from_dict(d: Any, source: str, stacklevel: int) -> Report:
    """`Report` from a decoded JSON object; ``source`` names it (a path) in errors and warnings."""
    prefix = f"{source} is not a depthscope report"
    if not isinstance(d, dict):
        raise DepthscopeError(f"{prefix}: expected a JSON object, got {type(d).__name__}")
    d = _decode(dict(d))
    fmt = d.pop("format", None)
    if not isinstance(fmt, int) or isinstance(fmt, bool):
        raise DepthscopeError(f"{prefix}: no format number (got {fmt!r})")
    if fmt > REPORT_FORMAT:
        raise DepthscopeError(
            f"{source} is a report of format {fmt}, written by a newer depthscope; "
            f"this version reads formats {OLDEST_READABLE_FORMAT} to {REPORT_FORMAT}"
        )
    if fmt < OLDEST_READABLE_FORMAT:
        raise DepthscopeError(
            f"{source} is a report of format {fmt}, too old for this version "
            f"(it reads formats {OLDEST_READABLE_FORMAT} to {REPORT_FORMAT})"
        )
    raw_blocks = d.pop("blocks", None)
    if not isinstance(raw_blocks, list):
        raise DepthscopeError(f"{prefix}: 'blocks' should be a list, got {type(raw_blocks).__name__}")
    unknown_top: set[str] = set()
    unknown_block: set[str] = set()
    blocks = []
    for i, b in enumerate(raw_blocks):
        if not isinstance(b, dict):
            raise DepthscopeError(f"{prefix}: blocks[{i}] should be an object, got {type(b).__name__}")
        if fmt < RENAMED_IN_FORMAT:
            b = _current_names(b)
        kw = _dataclass_kwargs(BlockStats, b, f"{source}: blocks[{i}]", unknown_block)
        for shape in ("in_shape", "out_shape"):
            value = kw[shape]
            if not isinstance(value, list) or not all(isinstance(n, int) and not isinstance(n, bool) for n in value):
                raise DepthscopeError(f"{source}: blocks[{i}]: {shape} should be a list of integers, got {value!r}")
            kw[shape] = tuple(value)
        blocks.append(BlockStats(**kw))
    kw = _dataclass_kwargs(Report, {"blocks": blocks, **d}, source, unknown_top)
    lyapunov = kw.get("lyapunov")
    if not isinstance(lyapunov, list) or not all(_value_ok(v, "float") for v in lyapunov):
        raise DepthscopeError(f"{source}: lyapunov should be a list of numbers, got {lyapunov!r}")
    if unknown_top or unknown_block:
        parts = [
            f"{where} {', '.join(sorted(names))}"
            for where, names in (("top level:", unknown_top), ("blocks:", unknown_block))
            if names
        ]
        warnings.warn(
            f"{source}: fields unknown to this version ignored ({'; '.join(parts)})",
            ProbeWarning,
            stacklevel=stacklevel,
        )
    return Report(**kw)


# Fields whose values may be the strings "inf", "-inf", "nan" in JSON: the float fields of the report
# and of the blocks (under their current and former names), and lyapunov's list of floats.
_FLOAT_FIELDS = frozenset(
    {f.name for f in fields(Report) if "float" in str(f.type)}
    | {name for q in QUANTITIES if q.is_float for name in (q.name, *q.formerly)}
)


def _current_names(block: dict[str, Any]) -> dict[str, Any]:
    """A block of an older format with its fields under their current names (a field already
    present under its current name keeps that value, and the old one is left as unknown)."""
    out = dict(block)
    for old, new in FORMER_NAMES.items():
        if old in out and new not in out:
            out[new] = out.pop(old)
    return out


def _decode(obj: Any, key: str | None = None) -> Any:
    if isinstance(obj, str) and obj in SPECIAL_FLOATS and key in _FLOAT_FIELDS:
        return SPECIAL_FLOATS[obj]
    if isinstance(obj, dict):
        return {k: _decode(v, k) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decode(v, key) for v in obj]
    return obj
