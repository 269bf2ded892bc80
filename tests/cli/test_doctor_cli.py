"""`depthscope doctor`: prints findings and prescriptions, applies one, trains, writes JSON atomically;
usage errors name what is wrong."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from depthscope.cli import main

LINEAR_SLOPE = [
    "--depth",
    "12",
    "--width",
    "16",
    "--set",
    "activation=linear",
    "--set",
    "slope=1.5",
    "--set",
    "sigma_w=1.0",
]


def test_doctor_prints_findings_and_prescriptions(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", "plain_mlp", *LINEAR_SLOPE]) == 0
    out = capsys.readouterr().out
    assert "exploding" in out and "Findings" in out and "criticality" in out


def test_doctor_healthy_model(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", "rezero_mlp", "--depth", "6", "--width", "16", "--apply", "best"]) == 0
    out = capsys.readouterr().out
    assert "healthy" in out and "nothing to apply" in out


def test_doctor_apply_train_and_json(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "dx.json"
    args = ["doctor", "plain_mlp", *LINEAR_SLOPE, "--set", "in_dim=64", "--apply", "best", "--train-steps", "5"]
    assert main([*args, "--json", str(path)]) == 0
    out = capsys.readouterr().out
    assert "Before and after" in out and "final train loss" in out and "stable" in out
    data = json.loads(path.read_text())
    assert data["applied"] == "criticality"
    assert data["diagnosis"]["findings"][0]["kind"] == "exploding"
    assert data["verification"]["after"]["verdict"] == "stable"
    assert [p.name for p in tmp_path.iterdir()] == ["dx.json"]  # no temporary file left behind


def test_doctor_apply_by_name(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", "plain_mlp", *LINEAR_SLOPE, "--apply", "rezero"]) == 0
    assert "rezero applied" in capsys.readouterr().out


def test_doctor_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["doctor", "plain_mlp", *LINEAR_SLOPE, "--apply", "no-such"]) == 1
    err = capsys.readouterr().err
    assert "unknown treatment 'no-such'" in err and "criticality" in err
    with pytest.raises(SystemExit) as info:
        main(["doctor", "plain_mlp", "--train-steps", "5"])
    assert info.value.code == 2 and "--train-steps needs --apply" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["doctor", "plain_mlp", "--input", "1,8"])  # regression: it was ignored without a word
    assert info.value.code == 2 and "--input applies to module:callable" in capsys.readouterr().err
    assert main(["doctor", "resnet_mpl"]) == 1
    assert "did you mean resnet_mlp" in capsys.readouterr().err
    assert main(["doctor", "plain_mlp", *LINEAR_SLOPE, "--json", str(tmp_path / "missing" / "x.json")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_train_steps_builds_a_registered_mlp_for_digits(tmp_path) -> None:
    out = tmp_path / "dx.json"
    args = ["doctor", "plain_mlp", "--depth", "12", "--width", "16", "--set", "activation=sigmoid"]
    assert main([*args, "--apply", "rezero", "--train-steps", "5", "--quiet", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["applied"] == "rezero" and result["verification"]["trained_after"] is not None
