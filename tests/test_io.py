"""Files depthscope writes: the process umask is never touched, pairs of files stay consistent."""

from __future__ import annotations

import os
import signal
import stat
import threading
import time
from pathlib import Path

import pytest

import depthscope as ds
from depthscope._io import atomic_write_bytes, atomic_write_files, read_json_object

# The umask the threaded test runs under: group and others lose write permission.
TEST_UMASK = 0o022
# Reports saved while the other thread creates files.
SAVES = 40
# The scheduler may switch threads right after any umask change; the test makes it certain by
# sleeping (which releases the GIL) this long after each change, so a race shows on every save.
UMASK_YIELD_S = 1e-3


def _tiny_report() -> ds.Report:
    block = ds.BlockStats(
        name="b",
        index=0,
        in_shape=(2,),
        out_shape=(2,),
        local_rms=1.0,
        local_sigma_max=1.0,
        local_sigma_min=1.0,
        identity_gap=0.0,
        cum_log_rms=0.0,
        grad_log_norm=0.0,
        grad_ratio=1.0,
        method="exact",
        sigma_min_kind="exact",
    )
    return ds.Report(
        blocks=[block], lyapunov=[], log_gain=0.0, verdict="stable", depth_scale=float("inf"), input_grad_log_norm=0.0
    )


def test_saving_never_widens_another_threads_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: saving set the umask to 0 for an instant; a file another thread created then was 0666."""
    reports, others = tmp_path / "reports", tmp_path / "others"
    reports.mkdir()
    others.mkdir()
    report = _tiny_report()
    stop = threading.Event()
    created: list[Path] = []
    real_umask = os.umask

    def umask_then_yield(mask: int) -> int:
        old = real_umask(mask)
        time.sleep(UMASK_YIELD_S)
        return old

    def create_files() -> None:
        i = 0
        while not stop.is_set():
            path = others / f"f{i}"
            with open(path, "w"):
                pass
            created.append(path)
            i += 1

    old_mask = real_umask(TEST_UMASK)
    monkeypatch.setattr(os, "umask", umask_then_yield)
    creator = threading.Thread(target=create_files)
    creator.start()
    try:
        for i in range(SAVES):
            report.save(reports / f"r{i % 8}.json")
    finally:
        stop.set()
        creator.join()
        monkeypatch.undo()
        real_umask(old_mask)
    allowed = 0o666 & ~TEST_UMASK
    assert created, "the creating thread never ran"
    too_open = [p.name for p in created if stat.S_IMODE(p.stat().st_mode) & ~allowed]
    assert too_open == [], f"{len(too_open)} of {len(created)} files more permissive than the umask allows"
    # The reports themselves get the usual permissions (not mkstemp's 0600, not 0666).
    assert {stat.S_IMODE(p.stat().st_mode) for p in reports.iterdir()} == {allowed}
    assert sorted(p.name for p in reports.iterdir()) == [f"r{i}.json" for i in range(8)]


def test_atomic_write_never_calls_umask(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Changing the umask is process-wide, so even a momentary change races with other threads."""
    calls = []
    monkeypatch.setattr(os, "umask", lambda mask: calls.append(mask) or 0o022)
    atomic_write_bytes(tmp_path / "a", b"x")
    assert calls == [] and (tmp_path / "a").read_bytes() == b"x"


def test_write_files_replaces_a_set_together(tmp_path: Path) -> None:
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    atomic_write_files({a: b"one-a", b: b"one-b"})
    atomic_write_files({a: b"two-a", b: b"two-b"})
    assert (a.read_bytes(), b.read_bytes()) == (b"two-a", b"two-b")
    assert sorted(os.listdir(tmp_path)) == ["a.txt", "b.txt"]


@pytest.mark.parametrize("failing_call", [1, 2])
def test_write_files_rolls_back_when_interrupted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing_call: int
) -> None:
    """An interruption at either replace leaves the old pair (or no pair), never old with new."""
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    atomic_write_files({a: b"old-a", b: b"old-b"})
    real_replace = os.replace
    calls = []

    def interrupted_replace(src, dst):
        calls.append(dst)
        if len(calls) == failing_call:
            raise KeyboardInterrupt
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", interrupted_replace)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_files({a: b"new-a", b: b"new-b"})
    monkeypatch.undo()
    assert (a.read_bytes(), b.read_bytes()) == (b"old-a", b"old-b")
    assert sorted(os.listdir(tmp_path)) == ["a.txt", "b.txt"]  # no temporary or backup left behind


def test_write_files_interrupted_with_no_old_pair_leaves_neither(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    real_replace = os.replace
    calls = []

    def interrupted_replace(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", interrupted_replace)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_files({a: b"new-a", b: b"new-b"})
    monkeypatch.undo()
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"[1, 2]", "top level is a list, not an object"),
        (b'"text"', "top level is a string, not an object"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "not UTF-8 text"),
        (b"{", "not JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    ],
)
def test_read_json_object_names_the_file_and_the_problem(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "f.json"
    path.write_bytes(content)
    with pytest.raises(ds.DepthscopeError, match=message) as info:
        read_json_object(path, "a test file")
    assert str(path) in str(info.value)


def test_ctrl_c_during_the_renames_is_delivered_after_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real SIGINT between the two renames waits until both are done, then raises as usual."""
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    atomic_write_files({a: b"old-a", b: b"old-b"})
    real_replace = os.replace

    def replace_then_ctrl_c(src, dst):
        real_replace(src, dst)
        if Path(dst) == a:
            signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(os, "replace", replace_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_files({a: b"new-a", b: b"new-b"})
    monkeypatch.undo()
    assert (a.read_bytes(), b.read_bytes()) == (b"new-a", b"new-b")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
