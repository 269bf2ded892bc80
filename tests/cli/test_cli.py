"""The command line: the main job runs and prints a verdict; JSON round-trips; bad options are usage
errors naming the option; bad files are one-line errors naming the file."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

import depthscope as ds
from depthscope.cli import main
from depthscope.ledger import _runner


def test_probe_prints_a_verdict(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rc = main(
        ["probe", "resnet_mlp", "--depth", "6", "--width", "16", "--batch", "2", "--json", str(tmp_path / "r.json")]
    )
    out = capsys.readouterr().out
    assert rc == 0
    assert "verdict:" in out and "per-step Jacobians" in out
    rep = ds.Report.load(tmp_path / "r.json")
    assert rep.verdict in out and len(rep) == 8


def test_set_passes_model_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["probe", "plain_mlp", "--depth", "30", "--width", "16", "--set", "activation=sigmoid", "--lyapunov", "0"])
        == 0
    )
    assert "vanishing" in capsys.readouterr().out


def test_models_lists_the_registry(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "resnet_mlp" in out and "plain_mlp" in out


def test_unknown_option_and_unknown_model(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["probe", "resnet_mlp", "--no-such-option"])
    assert info.value.code == 2
    assert "unrecognized arguments" in capsys.readouterr().err
    assert main(["probe", "resnet_mpl"]) == 1
    assert "did you mean resnet_mlp" in capsys.readouterr().err


def test_console_script_runs() -> None:
    res = subprocess.run(
        [sys.executable, "-m", "depthscope.cli", "models", "plain*"], capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0 and "plain_mlp" in res.stdout


def test_ledger_run_writes_results_and_atlas(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = tmp_path / "led"
    assert main(["ledger", "run", "R7", "--preset", "tiny", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "R7" in printed and "1 claims" in printed
    assert (out / "results.json").is_file() and (out / "atlas.html").is_file()
    assert main(["ledger", "list", "--results", str(out / "results.json")]) == 0
    listed = capsys.readouterr().out
    assert "R7" in listed and ds.ledger.load_results(out / "results.json")[0].verdict in listed


def test_ledger_list_without_results(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["ledger", "list", "--results", str(tmp_path / "none.json")]) == 0
    assert "not run" in capsys.readouterr().out


def test_ledger_unknown_claim_and_preset(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["ledger", "run", "Q42", "--out", str(tmp_path)]) == 1
    assert "no experiment for claim" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["ledger", "run", "R7", "--preset", "huge"])
    assert exc.value.code == 2


def test_ledger_bad_threads_and_unwritable_out(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as info:
        main(["ledger", "run", "R7", "--preset", "tiny", "--threads", "0", "--out", str(tmp_path)])
    assert info.value.code == 2
    assert "argument --threads: must be at least 1, got 0" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["ledger", "run", "R7", "--preset", "tiny", "--out", str(blocker / "sub"), "--quiet"]) == 1
    assert "cannot create" in capsys.readouterr().err


def _usage_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """The error line of an argparse usage error (exit status 2)."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["probe", "resnet_mlp", "--seed", str(2**64)], f"argument --seed: must be from 0 to {2**64 - 1}, got {2**64}"),
        (["probe", "resnet_mlp", "--seed", "-1"], "argument --seed: must be from 0 to"),
        (["probe", "resnet_mlp", "--batch", "0"], "argument --batch: must be at least 1, got 0"),
        (["probe", "resnet_mlp", "--batch", "-1"], "argument --batch: must be at least 1, got -1"),
        (["probe", "resnet_mlp", "--probes", "2.5"], "argument --probes: expected an integer, got '2.5'"),
        (["probe", "resnet_mlp", "--lyapunov", "-2"], "argument --lyapunov: must be at least 0, got -2"),
        (["probe", "resnet_mlp", "--depth", "0"], "argument --depth: must be at least 1, got 0"),
        (["probe", "resnet_mlp", "--set", "width"], "argument --set: expected KEY=VALUE, got 'width'"),
        (["ledger", "run", "R7", "--seed", str(2**70)], "argument --seed: must be from 0 to"),
        (["ledger", "run", "R7", "--seed", str(2**32)], f"argument --seed: must be from 0 to {2**32 - 1}, got {2**32}"),
        (
            ["ledger", "run", "R7", "--seed", "9" * 5000],
            f"argument --seed: must be from 0 to {2**32 - 1}, got a 5000-digit",
        ),
    ],
)
def test_bad_numbers_are_usage_errors_naming_the_option(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    """Regression: --seed beyond 64 bits ("Overflow when unpacking long long") and --batch 0/-1 gave tracebacks."""
    line = _usage_error(capsys, argv)
    assert message in line and line.startswith("depthscope ")


def test_largest_seeds_are_accepted(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    argv = ["probe", "resnet_mlp", "--depth", "2", "--width", "4", "--batch", "1", "--lyapunov", "0"]
    assert main([*argv, "--seed", str(2**64 - 1), "--quiet"]) == 0
    assert (
        main(["ledger", "run", "R7", "--preset", "tiny", "--seed", str(2**32 - 1), "--quiet", "--out", str(tmp_path)])
        == 0
    )
    assert ds.ledger.load_results(tmp_path / "results.json")[0].seed == 2**32 - 1


def test_report_path_is_checked_before_probing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    probed = []
    monkeypatch.setattr(ds, "probe", lambda *a, **k: probed.append(1))
    assert main(["probe", "resnet_mlp", "--json", str(tmp_path / "missing" / "r.json")]) == 1
    assert f"directory {tmp_path / 'missing'} does not exist" in capsys.readouterr().err
    assert main(["probe", "resnet_mlp", "--json", str(tmp_path)]) == 1
    assert "it is a directory" in capsys.readouterr().err
    assert probed == []


def test_model_arguments_of_the_wrong_type_name_the_call(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["probe", "resnet_mlp", "--set", "width=abc"]) == 1
    assert "cannot build resnet_mlp(width='abc')" in capsys.readouterr().err


def test_models_with_no_match(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "zzz*"]) == 1
    assert "no registered model matches 'zzz*'" in capsys.readouterr().err


def test_markup_in_descriptions_is_shown_as_text(capsys: pytest.CaptureFixture[str]) -> None:
    """A description with [x_0, ...] lost the bracketed text to rich's markup parser."""
    assert main(["models", "densenet_mlp"]) == 0
    assert "[x_0, out_1" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ('{"format": 1}', "it has no 'results' list"),
        ('{"format": 1, "results": [3]}', "results[0]: a claim result must be a JSON object, got int"),
        ('{"format": 1, "results": "R7"}', "has 'results' of type str, not a list"),
    ],
)
def test_ledger_list_of_a_broken_results_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, payload: str, message: str
) -> None:
    """Regression: a file without results gave a raw KeyError, a non-object entry a raw AttributeError."""
    path = tmp_path / "results.json"
    path.write_text(payload)
    assert main(["ledger", "list", "--results", str(path)]) == 1
    err = capsys.readouterr().err
    assert message in err and str(path) in err and "Traceback" not in err


def test_ledger_runs_merge_in_one_folder(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """The quick-then-full sequence: a second run of other claims keeps the first run's results."""
    out = tmp_path / "led"
    assert main(["ledger", "run", "R7", "--preset", "tiny", "--out", str(out), "--quiet"]) == 0
    assert main(["ledger", "run", "R8", "--preset", "quick", "--out", str(out)]) == 0
    assert "2 claims: 1 kept from earlier runs" in capsys.readouterr().out
    results = {r.id: r.preset for r in ds.ledger.load_results(out / "results.json")}
    assert results == {"R7": "tiny", "R8": "quick"}
    assert main(["ledger", "list", "--results", str(out / "results.json")]) == 0
    listed = capsys.readouterr().out
    assert "(tiny)" in listed and "(quick)" in listed


def test_ledger_unwritable_out_fails_before_running(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An existing folder that refuses new files (simulated: the tests may run as root, whom a
    read-only mode does not stop) is reported before any experiment runs, with no output before it."""
    out = tmp_path / "locked"
    out.mkdir()
    real_open = os.open
    ran = []

    def refusing_open(path, flags, *args, **kwargs):
        if Path(path).parent == out and flags & os.O_CREAT:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", refusing_open)
    monkeypatch.setattr(_runner, "run", lambda *a, **k: ran.append(a))
    assert main(["ledger", "run", "R7", "--preset", "tiny", "--out", str(out)]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and f"cannot write in {out}: Permission denied" in captured.err
    assert ran == []


def test_ctrl_c_is_one_line_and_status_130(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(_runner, "run", interrupted)
    assert main(["ledger", "run", "R7", "--preset", "tiny", "--out", str(tmp_path / "led")]) == 130
    assert capsys.readouterr().err.strip() == "depthscope: interrupted"
    assert not (tmp_path / "led" / "results.json").exists()
