"""Running experiments: one claim to a typed `ClaimResult`, many claims to a results file."""

from __future__ import annotations

import io
import json
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import torch

from depthscope._errors import DepthscopeError
from depthscope._io import atomic_write_text, encode_json
from depthscope._version import __version__
from depthscope.ledger._experiment import Experiment, get_experiment, list_experiments

RESULTS_FORMAT = 1  # bump when fields change meaning
RESULTS_FILE = "results.json"
FIGURE_DPI = 90


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
        figure_png: the atlas figure as PNG bytes (not written to results.json).
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

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("figure_png")
        return encode_json(d)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ClaimResult":
        names = {f for f in cls.__dataclass_fields__ if f != "figure_png"}
        return cls(**{k: v for k, v in d.items() if k in names})


def versions() -> dict[str, str]:
    return {
        "depthscope": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def _render_png(figure: Any) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    try:
        figure.savefig(buf, format="png", dpi=FIGURE_DPI, bbox_inches="tight")
    finally:
        plt.close(figure)
    return buf.getvalue()


def run_experiment(
    experiment: Experiment,
    setting: Mapping[str, Any],
    *,
    preset: str = "custom",
    seed: int = 0,
    figure: bool = True,
) -> ClaimResult:
    """Measure, judge and (optionally) plot ``experiment`` at ``setting``."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    setting = dict(setting)
    torch.manual_seed(seed)
    start = time.perf_counter()
    measured = experiment.measure(setting, seed)
    judgement = experiment.judge(measured, setting)
    runtime = time.perf_counter() - start
    png = None
    if figure and experiment.plot is not None:
        png = _render_png(experiment.plot(measured, setting))
    return ClaimResult(
        id=experiment.id,
        statement=experiment.statement,
        source=experiment.source,
        expected=experiment.expected,
        refuted_if=experiment.refuted_if,
        preset=preset,
        setting=encode_json(setting),
        seed=seed,
        measured=encode_json(measured),
        verdict=judgement.verdict,
        reason=judgement.reason,
        runtime_s=runtime,
        versions=versions(),
        references=list(experiment.references),
        figure_png=png,
    )


def run(claim_id: str, preset: str = "quick", *, seed: int = 0, figure: bool = True, **overrides: Any) -> ClaimResult:
    """Run one claim's experiment: ``ds.ledger.run("J3", preset="quick")``.

    ``overrides`` change individual settings of the preset (e.g. ``depth=24``).
    """
    experiment = get_experiment(claim_id)
    return run_experiment(experiment, experiment.setting(preset, **overrides), preset=preset, seed=seed, figure=figure)


def resolve_ids(ids: Iterable[str] | None) -> list[str]:
    """Claim ids to run: all when ``ids`` is empty; a family letter ("R") selects its claims."""
    known = list_experiments()
    if not ids:
        return known
    chosen: list[str] = []
    for raw in ids:
        key = raw.strip().upper()
        matches = [k for k in known if k == key or (key.isalpha() and k.rstrip("0123456789") == key)]
        if not matches:
            get_experiment(key)  # raises UnknownClaimError with the known ids
        chosen.extend(m for m in matches if m not in chosen)
    return chosen


def run_many(
    ids: Iterable[str] | None = None,
    preset: str = "quick",
    *,
    seed: int = 0,
    out: str | Path | None = None,
    on_start: Callable[[str], None] | None = None,
    on_done: Callable[[ClaimResult], None] | None = None,
) -> list[ClaimResult]:
    """Run several claims (all by default); with ``out``, write ``results.json`` and ``atlas.html`` there.

    An experiment that raises is a bug, not a verdict: the error propagates, naming the claim.
    """
    chosen = resolve_ids(ids)
    out_dir = None
    if out is not None:
        out_dir = Path(out)
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise DepthscopeError(f"cannot create {out_dir}: {err.strerror}") from err
    results = []
    for claim_id in chosen:
        if on_start is not None:
            on_start(claim_id)
        try:
            result = run(claim_id, preset, seed=seed)
        except DepthscopeError:
            raise
        except Exception as err:
            raise DepthscopeError(f"experiment {claim_id} failed: {type(err).__name__}: {err}") from err
        results.append(result)
        if on_done is not None:
            on_done(result)
    if out_dir is not None:
        from depthscope.ledger._atlas import write_atlas

        save_results(results, out_dir / RESULTS_FILE)
        write_atlas(results, out_dir / "atlas.html")
    return results


def save_results(results: list[ClaimResult], path: str | Path) -> Path:
    """Write ``results`` as strict JSON, atomically."""
    payload = {"format": RESULTS_FORMAT, "versions": versions(), "results": [r.to_dict() for r in results]}
    target = Path(path)
    atomic_write_text(target, json.dumps(payload, indent=1, allow_nan=False))
    return target


def load_results(path: str | Path) -> list[ClaimResult]:
    """Read a results file written by `save_results` (figures are not stored there)."""
    try:
        payload = json.loads(Path(path).read_text())
    except OSError as err:
        raise DepthscopeError(f"cannot read {path}: {err.strerror}") from err
    except json.JSONDecodeError as err:
        raise DepthscopeError(f"{path} is not JSON: {err}") from err
    if not isinstance(payload, dict) or payload.get("format") != RESULTS_FORMAT:
        raise DepthscopeError(f"{path} is not a depthscope ledger results file of format {RESULTS_FORMAT}")
    return [ClaimResult.from_dict(r) for r in payload["results"]]
