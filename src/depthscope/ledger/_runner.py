"""Running experiments: one claim to a typed `ClaimResult`, many claims to a results file and its atlas."""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from depthscope._errors import DepthscopeError
from depthscope._io import atomic_write_files, check_writable_dir, encode_json
from depthscope._version import runtime_versions
from depthscope.ledger import _atlas
from depthscope.ledger._experiment import Experiment
from depthscope.ledger._registry import get_experiment, list_experiments
from depthscope.ledger._result import ClaimResult, load_results, results_json

RESULTS_FILE = "results.json"
ATLAS_FILE = "atlas.html"
FIGURE_DPI = 90


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
    finished_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
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
        versions=runtime_versions(),
        references=list(experiment.references),
        figure_png=png,
        finished_at=finished_at,
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
    """Run several claims (all by default) and return their results.

    With ``out``, ``results.json`` and ``atlas.html`` in that folder are updated together (see
    `write_ledger`): the claims run now replace their earlier results, the other claims' results
    from earlier runs stay, each with its own preset, seed and time (so a quick run of everything
    followed by a full run of a few claims leaves all of them). That the folder can be written and
    that an earlier results file there can be read is checked before any experiment runs.

    An experiment that raises is a bug, not a verdict: the error propagates, naming the claim.
    """
    chosen = resolve_ids(ids)
    out_dir = None
    earlier: list[ClaimResult] = []
    if out is not None:
        out_dir = Path(out)
        check_writable_dir(out_dir)
        for name in (RESULTS_FILE, ATLAS_FILE):
            if (out_dir / name).is_dir():
                raise DepthscopeError(f"cannot write {out_dir / name}: it is a directory")
        if (out_dir / RESULTS_FILE).exists():
            try:
                earlier = load_results(out_dir / RESULTS_FILE)
            except DepthscopeError as err:
                raise DepthscopeError(
                    f"{err}; the results there would be merged with this run: "
                    "move the file away or choose another folder"
                ) from err
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
        write_ledger(merge_results(earlier, results), out_dir)
    return results


def merge_results(earlier: Iterable[ClaimResult], newer: Iterable[ClaimResult]) -> list[ClaimResult]:
    """``earlier`` with the claims in ``newer`` replaced or added, in registry order.

    Claims no longer registered keep their place after the registered ones.
    """
    by_id = {r.id: r for r in earlier}
    by_id.update((r.id, r) for r in newer)
    order = {claim_id: i for i, claim_id in enumerate(list_experiments())}
    return sorted(by_id.values(), key=lambda r: order.get(r.id, len(order)))


def write_ledger(results: list[ClaimResult], folder: str | Path) -> tuple[Path, Path]:
    """Write ``results.json`` and ``atlas.html`` in ``folder`` as one consistent pair.

    Both are replaced together (`depthscope._io.atomic_write_files`): an error or Ctrl-C at any
    point leaves the old pair or the new pair, never one of each. The atlas records the SHA-256 of
    the results file it was made from (``<meta name="depthscope-results-sha256">``), so a pair can
    also be checked after the fact (`atlas_matches_results`).
    """
    folder = Path(folder)
    results_bytes = results_json(results).encode("utf-8")
    digest = hashlib.sha256(results_bytes).hexdigest()
    atlas_bytes = _atlas.render_atlas(results, results_sha256=digest).encode("utf-8")
    results_path, atlas_path = folder / RESULTS_FILE, folder / ATLAS_FILE
    atomic_write_files({results_path: results_bytes, atlas_path: atlas_bytes})
    return results_path, atlas_path


def atlas_matches_results(folder: str | Path) -> bool:
    """Whether ``folder``'s atlas.html was made from the results.json beside it (by digest)."""
    folder = Path(folder)
    try:
        digest = hashlib.sha256((folder / RESULTS_FILE).read_bytes()).hexdigest()
        return _atlas.atlas_results_sha256((folder / ATLAS_FILE).read_text(encoding="utf-8")) == digest
    except (OSError, UnicodeDecodeError):
        return False
