"""`depthscope probe` beyond the zoo: a factory path, --hf, --torchvision, --timm, --blocks, and the
--html/--plot outputs. The sources' mistakes are usage errors (exit 2) naming what is wrong."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import torch

import depthscope as ds
from depthscope.cli import main

RESNET_BLOCKS = "layer1.*,layer2.*,layer3.*,layer4.*"
FAST = ["--lyapunov", "0", "--probes", "4"]


@pytest.fixture
def factory_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A user's package in the current folder: my_models.build(depth=3, width=8) -> nn.Sequential."""
    (tmp_path / "my_models.py").write_text(
        textwrap.dedent(
            """
            import torch
            from torch import nn

            def build(depth=3, width=8):
                layers = [nn.Linear(width, width) for _ in range(depth)]
                return nn.Sequential(*[m for layer in layers for m in (layer, nn.Tanh())])

            not_callable = 3
            """
        )
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "my_models:build"


def usage_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    return capsys.readouterr().err


def test_zoo_model_writes_html_and_plot(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    html, png, svg = tmp_path / "r.html", tmp_path / "r.png", tmp_path / "r.svg"
    argv = ["probe", "resnet_mlp", "--depth", "4", "--width", "8", "--batch", "2", *FAST]
    assert main([*argv, "--html", str(html), "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "page written to" in out and "figure written to" in out
    assert html.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert main([*argv, "--plot", str(svg), "--quiet"]) == 0
    assert b"<svg" in svg.read_bytes() and capsys.readouterr().out == ""


def test_plot_needs_a_known_format(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    err = usage_error(capsys, ["probe", "resnet_mlp", "--plot", str(tmp_path / "r.gif")])
    assert ".png, .svg, .pdf" in err
    assert not (tmp_path / "r.gif").exists()


def test_factory_with_shape_and_set(capsys: pytest.CaptureFixture[str], factory_module: str, tmp_path: Path) -> None:
    argv = ["probe", factory_module, "--input", "2,8", "--set", "depth=5", *FAST, "--json", str(tmp_path / "r.json")]
    assert main(argv) == 0
    assert "my_models:build" in capsys.readouterr().out
    rep = ds.Report.load(tmp_path / "r.json")
    assert len(rep) == 10  # five Linear + Tanh pairs, each module a step of the Sequential
    assert rep.settings.get("batch", 2) == 2


def test_factory_with_input_file(capsys: pytest.CaptureFixture[str], factory_module: str, tmp_path: Path) -> None:
    torch.save(torch.randn(3, 8), tmp_path / "x.pt")
    assert main(["probe", factory_module, "--input-file", str(tmp_path / "x.pt"), *FAST, "--quiet"]) == 0
    torch.save({"x": 1}, tmp_path / "d.pt")
    assert "not a tensor" in usage_error(capsys, ["probe", factory_module, "--input-file", str(tmp_path / "d.pt")])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["probe", "no_such_module_13:build", "--input", "1,8"], "cannot import 'no_such_module_13'"),
        (["probe", "my_models:missing", "--input", "1,8"], "has no 'missing'"),
        (["probe", "my_models:not_callable", "--input", "1,8"], "not callable"),
        (["probe", "my_models:build"], "--input 1,3,224,224"),
        (["probe", "my_models:build", "--input", "1,x"], "expected a shape"),
        (["probe", "my_models:build", "--input", "1,0"], "positive sizes"),
        (["probe", "my_models:build", "--input", "1,8", "--set", "colour=3"], "unexpected keyword"),
        (["probe", "--hf", "llamma"], "did you mean llama"),
        (["probe", "--torchvision", "resnet181"], "unknown torchvision model"),
        (["probe", "--timm", "resnet181"], "unknown timm model"),
        (["probe", "--torchvision", "resnet18", "--input", "1;3"], "expected a shape"),
        (["probe"], "give one model"),
        (["probe", "resnet_mlp", "--hf", "bert"], "give one model"),
        (["probe", "resnet_mlp", "--input", "1,8"], "--input applies to"),
        (["probe", "--hf", "bert", "--depth", "3"], "--depth and --width apply"),
        (["probe", "--timm", "resnet18", "--seq", "8"], "--seq applies to --hf"),
        (["probe", "--torchvision", "resnet18", "--input", "1,3,32,32", "--batch", "2"], "--batch does not apply"),
        (["probe", "my_models:build", "--input", "1,8", "--batch", "2"], "--batch does not apply"),
        (["probe", "--hf", "bert", "--set", "num_hidden_layers='x'"], "cannot build BertConfig"),
        (["probe", "--hf", "bert", "--set", "vocab_size=-3"], "cannot build BertModel"),
        (["probe", "--torchvision", "resnet18", "--set", "num_classes=-3"], "cannot build torchvision resnet18"),
    ],
)
def test_bad_sources_are_usage_errors(
    capsys: pytest.CaptureFixture[str], factory_module: str, argv: list[str], message: str
) -> None:
    assert message in usage_error(capsys, argv)


def test_missing_library_names_the_extra(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(__import__("sys").modules, "timm", None)  # import timm now raises ImportError
    assert "pip install timm" in usage_error(capsys, ["probe", "--timm", "resnet18"])
    monkeypatch.setitem(__import__("sys").modules, "transformers", None)
    assert "depthscope[hf]" in usage_error(capsys, ["probe", "--hf", "bert"])


def test_hf_family_with_config_override(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    argv = ["probe", "--hf", "llama", "--set", "num_hidden_layers=3", "--seq", "8", *FAST]
    assert main([*argv, "--json", str(tmp_path / "r.json"), "--html", str(tmp_path / "r.html")]) == 0
    assert "LlamaModel" in capsys.readouterr().out
    rep = ds.Report.load(tmp_path / "r.json")
    assert sum(name.startswith("base.layers.") for name in rep.column("name")) == 3
    assert (tmp_path / "r.html").stat().st_size > 0


def test_torchvision_with_blocks(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    png = tmp_path / "tv.png"
    argv = ["probe", "--torchvision", "resnet18", "--input", "1,3,32,32", "--blocks", RESNET_BLOCKS, *FAST]
    assert main([*argv, "--plot", str(png), "--json", str(tmp_path / "r.json")]) == 0
    assert "torchvision resnet18" in capsys.readouterr().out
    rep = ds.Report.load(tmp_path / "r.json")
    assert sum(name.startswith("layer") for name in rep.column("name")) == 8  # 4 stages x 2 BasicBlocks
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_timm_with_blocks(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    argv = ["probe", "--timm", "resnet18", "--input", "1,3,32,32", "--blocks", RESNET_BLOCKS, *FAST]
    assert main([*argv, "--json", str(tmp_path / "r.json")]) == 0
    assert "timm resnet18" in capsys.readouterr().out
    assert sum(name.startswith("layer") for name in ds.Report.load(tmp_path / "r.json").column("name")) == 8


def test_help_says_nothing_is_downloaded(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["probe", "--help"])
    assert info.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "Nothing is downloaded" in out and "pretrained weights are not offered" in out
