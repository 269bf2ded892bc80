"""The probe's result: per-step `BlockStats` and the chain-level `Report`, with JSON round-trip."""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from depthscope._errors import DepthscopeError
from depthscope._io import SPECIAL_FLOATS, atomic_write_text, encode_json, read_json_object

REPORT_FORMAT = 1  # bump when fields change meaning


@dataclass
class BlockStats:
    """Statistics of one step k (all logs natural; averaged over the batch's examples).

    Attributes:
        name, index: the step's label and position in the chain.
        in_shape, out_shape: per-example state shapes S_k and S_{k+1}.
        local_fro: RMS singular value of J_k, ||J_k||_F / sqrt(n_in).
        local_fro_se: estimated standard error of ``local_fro`` (same units): 0 on explicit steps
            (exact), the Hutchinson probes' spread on matrix-free ones.
        local_sigma_max: largest singular value of J_k.
        local_sigma_min: smallest singular value (square steps; see ``sigma_min_kind``), else None.
        identity_gap: ||J_k - I||_2 (square steps), else None; singular values lie in [1-gap, 1+gap].
        cum_log_fro: log RMS singular value of J(0 -> k+1) = J_k ... J_0 (the product through this step).
        cum_log_fro_se: estimated standard error of ``cum_log_fro`` (natural log, so about the
            relative error of the gain): 0 where it is exact, the random frame's spread otherwise.
        grad_log_norm: log ||dE/dx_k|| at this step's input.
        grad_ratio: ||dE/dx_k|| / ||dE/dx_{k+1}||, the gradient gain across the step (below a
            step of `Report.zero_steps`, for a random projection placed at that step's input).
        method: "exact" (full SVD), "explicit" (explicit J, Lanczos) or "matrix-free".
        sigma_min_kind: "exact", "inverse-lanczos" (estimate) or "weyl-lower-bound" (a bound).
    """

    name: str
    index: int
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    local_fro: float
    # Keyword-only with a default, so reports written before the field existed still load.
    local_fro_se: float = field(default=0.0, kw_only=True)
    local_sigma_max: float
    local_sigma_min: float | None
    identity_gap: float | None
    cum_log_fro: float
    cum_log_fro_se: float = field(default=0.0, kw_only=True)
    grad_log_norm: float
    grad_ratio: float
    method: str
    sigma_min_kind: str | None


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
        from depthscope.probing._probe import ProbeWarning  # imported here: _probe imports this module

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


_FLOAT_FIELDS = {
    "local_fro",
    "local_fro_se",
    "cum_log_fro_se",
    "local_sigma_max",
    "local_sigma_min",
    "identity_gap",
    "cum_log_fro",
    "grad_log_norm",
    "grad_ratio",
    "log_gain",
    "depth_scale",
    "input_grad_log_norm",
    "body_log_gain",
    "body_depth_scale",
    "dominant_share",
}


def _decode(obj: Any, key: str | None = None) -> Any:
    if isinstance(obj, str) and obj in SPECIAL_FLOATS and (key in _FLOAT_FIELDS or key == "lyapunov"):
        return SPECIAL_FLOATS[obj]
    if isinstance(obj, dict):
        return {k: _decode(v, k) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decode(v, key) for v in obj]
    return obj
