"""The command line: the main job runs and prints a verdict; JSON round-trips; bad options fail."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import depthscope as ds
from depthscope.cli import main


def test_probe_prints_a_verdict(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rc = main(["probe", "resnet_mlp", "--depth", "6", "--width", "16", "--batch", "2", "--json", str(tmp_path / "r.json")])
    out = capsys.readouterr().out
    assert rc == 0
    assert "verdict:" in out and "per-step Jacobians" in out
    rep = ds.Report.load(tmp_path / "r.json")
    assert rep.verdict in out and len(rep) == 8


def test_set_passes_model_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["probe", "plain_mlp", "--depth", "30", "--width", "16", "--set", "activation=sigmoid", "--lyapunov", "0"]) == 0
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
    res = subprocess.run([sys.executable, "-m", "depthscope.cli", "models", "plain*"], capture_output=True, text=True, timeout=120)
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
    assert main(["ledger", "run", "R7", "--preset", "tiny", "--threads", "0", "--out", str(tmp_path)]) == 1
    assert "--threads must be at least 1" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["ledger", "run", "R7", "--preset", "tiny", "--out", str(blocker / "sub"), "--quiet"]) == 1
    assert "cannot create" in capsys.readouterr().err
