"""`depthscope grow`, `prune` and `rank`: readable tables, the numbers they promise, clear errors."""

from __future__ import annotations

import pytest

from depthscope.cli import main

SMALL = ["--depth", "4", "--width", "8"]


def test_grow_keeps_the_output_and_marks_the_new_blocks(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["grow", "resnet_mlp", "--blocks", "2", "--after", "blocks.1", *SMALL]) == 0
    out = capsys.readouterr().out
    assert "grown model: steps" in out and out.count("│ new │") == 2
    assert "2 new blocks; largest output change 0" in out


def test_grow_with_noise_and_the_bound(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["grow", "resnet_mlp", "--blocks", "1", "--init", "noise", "--eps", "0.01", "--tol", "0.05", *SMALL]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "4 ← bound" in out and "at most 4 blocks" in out
    assert "out" in out.split("4 ← bound")[1].splitlines()[1]  # aligned blocks leave the band one block later


def test_grow_at_an_unknown_block_lists_the_blocks(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["grow", "resnet_mlp", "--blocks", "1", "--after", "blocks.7", *SMALL]) == 1
    err = capsys.readouterr().err
    assert "no block named 'blocks.7'" in err and "blocks.0, blocks.1, blocks.2, blocks.3" in err


def test_prune_ranks_and_removes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prune", "resnet_mlp", "--keep", "0.5", *SMALL]) == 0
    out = capsys.readouterr().out
    assert "lesion ranking (output change)" in out
    assert out.count("removed") == 3  # two table rows and the summary line
    assert "effective depth" in out


def test_prune_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prune", "resnet_mlp", "--keep", "1.5", *SMALL]) == 1
    assert "keep must lie in (0, 1]" in capsys.readouterr().err
    assert main(["prune", "plain_mlp", *SMALL]) == 1
    assert "no residual" in capsys.readouterr().err


def test_prune_train_steps_builds_a_registered_mlp_for_digits(capsys: pytest.CaptureFixture[str]) -> None:
    """Regression: without --set in_dim=64 the digits training failed with a shape traceback."""
    assert main(["prune", "resnet_mlp", "--train-steps", "2", *SMALL]) == 0
    assert "lesion ranking (accuracy)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["grow", "resnet_mlp", "--blocks", "1", "--input", "1,8"], "--input applies to module:callable"),
        (["prune", "torch.nn:Identity", "--input", "1,8", "--depth", "3"], "--depth and --width apply"),
    ],
)
def test_options_the_source_does_not_take_are_usage_errors(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    """Regression: they were ignored without a word."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2 and message in capsys.readouterr().err


def test_rank_prints_candidates_best_first(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["rank", "rezero_mlp,depth=4", "plain_mlp,depth=12,activation=tanh", "--set", "width=8", "--batch", "8"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "best first" in out
    assert out.index("rezero_mlp") < out.index("plain_mlp")  # ReZero is an isometry at init
    assert "no nn.ReLU module" in out


def test_rank_unknown_model(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rank", "resnet_mlp", "nosuchnet"]) == 1
    assert "nosuchnet" in capsys.readouterr().err
