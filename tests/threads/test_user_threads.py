"""The smoke subset at the thread counts users run: torch's default and 2, against 1 thread.

The rest of the suite pins one thread (tests/conftest.py); a user who never calls
``torch.set_num_threads`` gets torch's default, and batched CPU LU at several threads is where torch
2.13-2.14 returns wrong results or hangs (depthscope._linalg routes around it). Each setting runs
`smoke.py` in a fresh interpreter, so torch's default thread count is really the default.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

SMOKE = Path(__file__).with_name("smoke.py")
# Runs at different thread counts sum in different orders; everything else is the same computation,
# so the numbers agree to a few thousand ulps (measured: 1e-13 at most on the README example).
THREAD_RTOL = 1e-9
THREAD_ATOL = 1e-12
SMOKE_TIMEOUT_S = 600  # a hang (as batched LU at 2 threads did) fails the test instead of the run


def _run(threads: str, tmp_path: Path) -> dict:
    out = tmp_path / f"smoke-{threads}.json"
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    proc = subprocess.run(
        [sys.executable, "-W", "ignore", str(SMOKE), threads, str(out)],
        capture_output=True,
        text=True,
        timeout=SMOKE_TIMEOUT_S,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, f"smoke run at {threads} threads failed:\n{proc.stderr[-4000:]}"
    return json.loads(out.read_text(encoding="utf-8"))


def _differences(a, b, path: str = "") -> list[str]:
    """Every place where two smoke results differ beyond rounding, as readable lines."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        return [d for k in a for d in _differences(a[k], b[k], f"{path}/{k}")]
    if isinstance(a, list):
        assert len(a) == len(b), path
        return [d for i, (u, v) in enumerate(zip(a, b)) for d in _differences(u, v, f"{path}[{i}]")]
    if isinstance(a, float) and isinstance(b, float):
        same = (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=THREAD_RTOL, abs_tol=THREAD_ATOL)
        return [] if same else [f"{path}: {a!r} vs {b!r}"]
    return [] if a == b else [f"{path}: {a!r} vs {b!r}"]


@pytest.fixture(scope="module")
def one_thread(tmp_path_factory) -> dict:
    return _run("1", tmp_path_factory.mktemp("smoke1"))


@pytest.mark.parametrize("threads", ["default", "2"])
def test_smoke_subset_agrees_with_one_thread(threads: str, one_thread: dict, tmp_path: Path) -> None:
    result = _run(threads, tmp_path)
    if threads == "2":
        assert result["threads"] == 2
    assert result["models"], "no registered model was probed"
    diffs = _differences(one_thread["models"], result["models"], "models")
    diffs += _differences(one_thread["readme"], result["readme"], "readme")
    diffs += _differences(one_thread["solver"], result["solver"], "solver")
    assert not diffs, f"{len(diffs)} numbers differ at {result['threads']} threads:\n" + "\n".join(diffs[:20])
