"""What the monitor records: typed records per step, per probe and per alert, and the history that
holds them (arrays for analysis, JSON and CSV files written atomically).

Missing values are nan, never None, so that every per-block quantity reads as one float array
``(steps, blocks)``: a block that got no gradient on a step, the ratio after the last block, an
update ratio not measured. In JSON, nan travels as the string "nan" (`depthscope._io`).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np

from depthscope._errors import DepthscopeError
from depthscope._io import SPECIAL_FLOATS, atomic_write_text, encode_json, read_json_object

# Version of the history file format; `History.load` refuses other versions.
HISTORY_FORMAT = 1
# Quantities with one value per block, in the order of the CSV columns.
BLOCK_QUANTITIES = (
    "grad_norm",
    "grad_ratio",
    "param_grad_norm",
    "update_ratio",
    "act_mean_sq",
    "act_var",
    "branch_var",
)


@dataclass(frozen=True)
class StepRecord:
    """One measured training step. Per-block tuples have one float per block (K), in depth order.

    Attributes:
        step: the training step (0-based count of `Monitor.step` calls).
        loss: the loss passed to `Monitor.step` (mean over ranks under DDP); nan when none.
        grad_norm: ||dL/dx_k||, the gradient at block k's output, unscaled (AMP) and for the
            whole global batch (DDP).
        grad_ratio: ||dL/dx_k|| / ||dL/dx_{k+1}||, the factor by which block k+1's backward
            scales the gradient (the seeds' delta_k); nan for the last block.
        param_grad_norm: ||dL/dtheta_k|| over block k's parameters (unscaled; after DDP's
            averaging).
        update_ratio: ||theta_k' - theta_k|| / ||theta_k||, the relative change that the optimiser
            step following this one made (measured at the next `Monitor.step`); nan until then.
        act_mean_sq: average over channels of the squared channel mean of x_k (Brock et al. 2021).
        act_var: average over channels of the channel variance of x_k.
        branch_var: the same variance for x_k - x_{k-1} (the residual branch when the skip is the
            identity); nan where the block changes the shape.
        end_to_end: ||dL/dx_0|| / ||dL/dx_{K-1}||, the product of the ratios: the gain of the
            gradient from the top block's output down to the first block's output.
        grad_scale: the AMP scale the norms were divided by (1.0 without a scaler).
    """

    step: int
    loss: float
    grad_norm: tuple[float, ...]
    grad_ratio: tuple[float, ...]
    param_grad_norm: tuple[float, ...]
    update_ratio: tuple[float, ...]
    act_mean_sq: tuple[float, ...]
    act_var: tuple[float, ...]
    branch_var: tuple[float, ...]
    end_to_end: float
    grad_scale: float = 1.0


@dataclass(frozen=True)
class ProbeRecord:
    """A scheduled `depthscope.probe` of the fixed probe batch (eval mode).

    Attributes:
        step: the training step it ran after.
        verdict, log_gain, depth_scale: the report's verdict, end-to-end log gain (natural log)
            and depth scale.
        lyapunov: the report's Lyapunov exponents, descending (may be empty).
        steps: names of the probed chain steps; local_rms: each one's RMS local gain.
    """

    step: int
    verdict: str
    log_gain: float
    depth_scale: float
    lyapunov: tuple[float, ...]
    steps: tuple[str, ...]
    local_rms: tuple[float, ...]


@dataclass(frozen=True)
class Alert:
    """An event the monitor reported once (printed and recorded) when it began.

    Attributes:
        step: the training step where it began.
        kind: "vanishing", "exploding", "gain_low", "gain_high" or "nonfinite".
        blocks: the blocks concerned (for "nonfinite": the first block where it appeared).
        phase: "forward" or "backward" for "nonfinite", "" otherwise.
        message: the sentence that was printed.
    """

    step: int
    kind: str
    blocks: tuple[str, ...]
    phase: str
    message: str


def _float(value) -> float:
    """A float read back from JSON, where nan and inf travel as strings."""
    return SPECIAL_FLOATS[value] if isinstance(value, str) else float(value)


def _floats(values) -> tuple[float, ...]:
    return tuple(map(_float, values))


@dataclass
class History:
    """Everything a `Monitor` recorded, in order.

    Attributes:
        blocks: the K block names, in depth order.
        records: one `StepRecord` per measured step.
        probes: one `ProbeRecord` per scheduled probe.
        alerts: one `Alert` per reported event.
    """

    blocks: tuple[str, ...]
    records: list[StepRecord] = field(default_factory=list)
    probes: list[ProbeRecord] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)

    # -- analysis ------------------------------------------------------------------------------------
    @property
    def steps(self) -> np.ndarray:
        """(N,) the measured training steps."""
        return np.array([r.step for r in self.records], dtype=np.int64)

    def array(self, quantity: str) -> np.ndarray:
        """One quantity over the measured steps: ``(N, K)`` for per-block ones (`BLOCK_QUANTITIES`),
        ``(N,)`` for "loss", "end_to_end" and "grad_scale"."""
        names = {f.name for f in fields(StepRecord)} - {"step"}
        if quantity not in names:
            raise DepthscopeError(f"unknown history quantity {quantity!r}; known: {', '.join(sorted(names))}")
        values = [getattr(r, quantity) for r in self.records]
        if quantity in BLOCK_QUANTITIES:
            return np.array(values, dtype=np.float64).reshape(len(values), len(self.blocks))
        return np.array(values, dtype=np.float64)

    def set_update_ratio(self, step: int, ratios: tuple[float, ...]) -> None:
        """Fill the update ratio of the record of ``step`` (known only after the optimiser ran)."""
        for i in range(len(self.records) - 1, -1, -1):
            if self.records[i].step == step:
                self.records[i] = replace(self.records[i], update_ratio=ratios)
                return

    # -- files -----------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """Plain JSON-ready data (nan and inf as strings)."""
        return encode_json(
            {
                "format": HISTORY_FORMAT,
                "blocks": list(self.blocks),
                "records": [asdict(r) for r in self.records],
                "probes": [asdict(p) for p in self.probes],
                "alerts": [asdict(a) for a in self.alerts],
            }
        )

    def to_json(self, path: str | os.PathLike) -> Path:
        """Write the history as JSON, atomically; returns the path."""
        path = Path(path)
        atomic_write_text(path, json.dumps(self.to_dict(), allow_nan=False) + "\n")
        return path

    def to_csv(self, path: str | os.PathLike) -> Path:
        """Write one row per measured step and block (long format), atomically; returns the path.

        Columns: step, block, the `BLOCK_QUANTITIES`, then loss, end_to_end and grad_scale
        (repeated on the step's rows).
        """
        path = Path(path)
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["step", "block", *BLOCK_QUANTITIES, "loss", "end_to_end", "grad_scale"])
        for r in self.records:
            for k, name in enumerate(self.blocks):
                row = [getattr(r, q)[k] for q in BLOCK_QUANTITIES]
                writer.writerow([r.step, name, *map(repr, row), repr(r.loss), repr(r.end_to_end), repr(r.grad_scale)])
        atomic_write_text(path, buf.getvalue())
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> History:
        """Read a history written by `to_json`.

        Raises:
            DepthscopeError: not such a file, or another format version; names the file.
        """
        data = read_json_object(path, "a depthscope monitor history")
        if data.get("format") != HISTORY_FORMAT:
            raise DepthscopeError(f"{path}: history format {data.get('format')!r}, expected {HISTORY_FORMAT}")
        try:
            records = [
                StepRecord(
                    **{k: v if k == "step" else _floats(v) if isinstance(v, list) else _float(v) for k, v in r.items()}
                )
                for r in data["records"]
            ]
            probes = [
                ProbeRecord(
                    step=p["step"],
                    verdict=p["verdict"],
                    log_gain=_float(p["log_gain"]),
                    depth_scale=_float(p["depth_scale"]),
                    lyapunov=_floats(p["lyapunov"]),
                    steps=tuple(p["steps"]),
                    local_rms=_floats(p["local_rms"]),
                )
                for p in data["probes"]
            ]
            alerts = [Alert(a["step"], a["kind"], tuple(a["blocks"]), a["phase"], a["message"]) for a in data["alerts"]]
        except (KeyError, TypeError, ValueError) as err:
            raise DepthscopeError(f"{path} is not a depthscope monitor history: {err!r}") from err
        return cls(tuple(data["blocks"]), records, probes, alerts)


def nan_tuple(k: int) -> tuple[float, ...]:
    """K nans: a per-block quantity not measured."""
    return (math.nan,) * k
