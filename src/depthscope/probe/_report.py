"""The probe's result: per-step `BlockStats` and the chain-level `Report`, with JSON round-trip."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from depthscope._errors import DepthscopeError
from depthscope._io import SPECIAL_FLOATS, atomic_write_text, encode_json

REPORT_FORMAT = 1  # bump when fields change meaning


@dataclass
class BlockStats:
    """Statistics of one step k (all logs natural; averaged over the batch's examples).

    Attributes:
        name, index: the step's label and position in the chain.
        in_shape, out_shape: per-example state shapes S_k and S_{k+1}.
        local_fro: RMS singular value of J_k, ||J_k||_F / sqrt(n_in).
        local_sigma_max: largest singular value of J_k.
        local_sigma_min: smallest singular value (square steps; see ``sigma_min_kind``), else None.
        identity_gap: ||J_k - I||_2 (square steps), else None; singular values lie in [1-gap, 1+gap].
        cum_log_fro: log RMS singular value of J(0 -> k+1) = J_k ... J_0 (the product through this step).
        grad_log_norm: log ||dE/dx_k|| at this step's input.
        grad_ratio: ||dE/dx_k|| / ||dE/dx_{k+1}||, the gradient gain across the step.
        method: "exact" (full SVD), "explicit" (explicit J, Lanczos) or "matrix-free".
        sigma_min_kind: "exact", "inverse-lanczos" (estimate) or "weyl-lower-bound" (a bound).
    """

    name: str
    index: int
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    local_fro: float
    local_sigma_max: float
    local_sigma_min: float | None
    identity_gap: float | None
    cum_log_fro: float
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
    """

    blocks: list[BlockStats]
    lyapunov: list[float]
    log_gain: float
    verdict: str
    depth_scale: float
    input_grad_log_norm: float
    settings: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)

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
    def from_dict(cls, d: dict[str, Any]) -> "Report":
        d = _decode(dict(d))
        if d.pop("format", None) != REPORT_FORMAT:
            raise DepthscopeError(f"not a depthscope report of format {REPORT_FORMAT}")
        names = {f.name for f in fields(BlockStats)}
        blocks = []
        for b in d.pop("blocks"):
            b = {k: v for k, v in b.items() if k in names}
            b["in_shape"], b["out_shape"] = tuple(b["in_shape"]), tuple(b["out_shape"])
            blocks.append(BlockStats(**b))
        return cls(blocks=blocks, **d)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Report":
        try:
            text = Path(path).read_text()
        except OSError as err:
            raise DepthscopeError(f"cannot read report {path}: {err.strerror}") from err
        try:
            return cls.from_dict(json.loads(text))
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise DepthscopeError(f"{path} is not a depthscope report: {err}") from err


_FLOAT_FIELDS = {
    "local_fro", "local_sigma_max", "local_sigma_min", "identity_gap", "cum_log_fro", "grad_log_norm",
    "grad_ratio", "log_gain", "depth_scale", "input_grad_log_norm",
}


def _decode(obj: Any, key: str | None = None) -> Any:
    if isinstance(obj, str) and obj in SPECIAL_FLOATS and (key in _FLOAT_FIELDS or key == "lyapunov"):
        return SPECIAL_FLOATS[obj]
    if isinstance(obj, dict):
        return {k: _decode(v, k) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decode(v, key) for v in obj]
    return obj
