"""Report: JSON round trip (non-finite values included), atomic writes, clear errors."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import torch

import depthscope as ds


def _report() -> ds.Report:
    torch.manual_seed(0)
    model = ds.create_model("resnet_mlp", depth=3, width=8)
    return ds.probe(model, model.example_input(2, torch.Generator().manual_seed(0)), lyapunov=2)


def test_json_round_trip(tmp_path: Path) -> None:
    rep = _report()
    path = rep.save(tmp_path / "probe.json")
    back = ds.Report.load(path)
    assert back == rep
    assert [p for p in os.listdir(tmp_path)] == ["probe.json"]  # no temporary file left behind


def test_non_finite_values_survive_as_strict_json(tmp_path: Path) -> None:
    rep = ds.probe(ds.Chain.repeat(lambda h: h, 3), torch.ones(1, 2))
    assert math.isinf(rep.depth_scale)
    path = rep.save(tmp_path / "r.json")
    assert "Infinity" not in path.read_text()
    assert math.isinf(ds.Report.load(path).depth_scale)


def test_unwritable_path_is_a_clear_error(tmp_path: Path) -> None:
    rep = _report()
    with pytest.raises(ds.DepthscopeError, match="does not exist"):
        rep.save(tmp_path / "missing" / "r.json")
    (tmp_path / "dir.json").mkdir()
    with pytest.raises(ds.DepthscopeError, match="cannot write"):
        rep.save(tmp_path / "dir.json")
    assert sorted(os.listdir(tmp_path)) == ["dir.json"]


def test_load_rejects_other_json(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text('{"a": 1}')
    with pytest.raises(ds.DepthscopeError):
        ds.Report.load(tmp_path / "x.json")
    with pytest.raises(ds.DepthscopeError, match="cannot read"):
        ds.Report.load(tmp_path / "none.json")


def test_same_seed_same_report() -> None:
    assert _report() == _report()
