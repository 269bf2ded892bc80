"""Report: JSON round trip (non-finite values included), atomic writes, clear errors."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
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


def _saved(tmp_path: Path) -> tuple[ds.Report, dict]:
    rep = _report()
    return rep, json.loads(rep.save(tmp_path / "r.json").read_text())


def _write(tmp_path: Path, payload) -> Path:
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(payload))
    return path


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"[1, 2, 3]", "its top level is a list, not an object"),
        (b"3.5", "its top level is a number, not an object"),
        (b"null", "its top level is null, not an object"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff", "not UTF-8 text"),
        (b"[" * 50_000 + b"]" * 50_000, "nested too deeply"),
        (b'{"format": 1, "blocks": ' + b"[" * 200 + b"]" * 200 + b"}", "nested too deeply"),
    ],
)
def test_load_of_what_is_no_report_names_the_file_and_the_problem(tmp_path: Path, content: bytes, problem: str) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(ds.DepthscopeError, match=re.escape(problem)) as info:
        ds.Report.load(path)
    assert str(path) in str(info.value)


def test_unknown_fields_load_with_one_warning_naming_them(tmp_path: Path) -> None:
    """One rule for the top level and the blocks: a newer writer's fields are dropped, with a warning."""
    rep, payload = _saved(tmp_path)
    payload["from_the_future"] = 1
    payload["blocks"][0]["block_novelty"] = 2.0
    path = _write(tmp_path, payload)
    with pytest.warns(ds.ProbeWarning, match=r"top level: from_the_future; blocks: block_novelty") as info:
        back = ds.Report.load(path)
    assert len(info) == 1 and str(path) in str(info[0].message)
    assert back == rep


def test_fields_with_defaults_may_be_absent(tmp_path: Path) -> None:
    """A report written before a field existed loads, the field taking its default, without a warning."""
    rep, payload = _saved(tmp_path)
    optional_top = [
        f.name
        for f in dataclasses.fields(ds.Report)
        if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
    ]
    optional_block = [
        f.name
        for f in dataclasses.fields(ds.BlockStats)
        if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
    ]
    for name in optional_top:
        payload.pop(name)
    for block in payload["blocks"]:
        for name in optional_block:
            block.pop(name)
    back = ds.Report.load(_write(tmp_path, payload))  # warnings are errors here
    assert [b.local_fro for b in back.blocks] == [b.local_fro for b in rep.blocks]
    assert back.settings == {} and back.versions == {}


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda p: p.pop("verdict"), "lacks the required fields verdict"),
        (lambda p: p.pop("blocks"), "'blocks' should be a list, got NoneType"),
        (lambda p: p["blocks"][1].pop("local_fro"), "blocks[1] lacks the required fields local_fro"),
        (lambda p: p["blocks"].__setitem__(0, "b0"), "blocks[0] should be an object, got str"),
        (lambda p: p["blocks"][0].__setitem__("local_fro", "large"), "blocks[0]: local_fro should be float"),
        (lambda p: p["blocks"][0].__setitem__("in_shape", "8"), "in_shape should be a list of integers"),
        (lambda p: p.__setitem__("log_gain", None), "log_gain should be float, got None"),
        (lambda p: p.__setitem__("lyapunov", [1.0, "x"]), "lyapunov should be a list of numbers"),
        (lambda p: p.pop("format"), "no format number"),
        (lambda p: p.__setitem__("format", 99), "format 99, written by a newer depthscope"),
    ],
)
def test_incomplete_or_mistyped_reports_are_clear_errors(tmp_path: Path, edit, problem: str) -> None:
    _, payload = _saved(tmp_path)
    edit(payload)
    path = _write(tmp_path, payload)
    with pytest.raises(ds.DepthscopeError, match=re.escape(problem)) as info:
        ds.Report.load(path)
    assert str(path) in str(info.value)


def test_from_dict_refuses_a_non_object() -> None:
    with pytest.raises(ds.DepthscopeError, match="expected a JSON object, got list"):
        ds.Report.from_dict([1, 2])  # type: ignore[arg-type]
