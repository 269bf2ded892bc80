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
from depthscope.probing import REPORT_FORMAT


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
    assert [b.local_rms for b in back.blocks] == [b.local_rms for b in rep.blocks]
    assert back.settings == {} and back.versions == {}


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda p: p.pop("verdict"), "lacks the required fields verdict"),
        (lambda p: p.pop("blocks"), "'blocks' should be a list, got NoneType"),
        (lambda p: p["blocks"][1].pop("local_rms"), "blocks[1] lacks the required fields local_rms"),
        (lambda p: p["blocks"].__setitem__(0, "b0"), "blocks[0] should be an object, got str"),
        (lambda p: p["blocks"][0].__setitem__("local_rms", "large"), "blocks[0]: local_rms should be float"),
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


# A report saved by the last version of format 1 (fields local_fro, local_fro_se, cum_log_fro,
# cum_log_fro_se; no local_cond): resnet_mlp depth 3 width 8, batch 2, default settings.
FORMAT_1_REPORT = Path(__file__).parent / "data" / "report_format_before_rms.json"
RENAMED_IN_2 = {
    "local_fro": "local_rms",
    "local_fro_se": "local_rms_se",
    "cum_log_fro": "cum_log_rms",
    "cum_log_fro_se": "cum_log_rms_se",
}


def test_a_format_1_report_loads_with_its_fields_under_the_new_names(recwarn) -> None:
    raw = json.loads(FORMAT_1_REPORT.read_text())
    assert raw["format"] == 1
    rep = ds.Report.load(FORMAT_1_REPORT)
    assert not recwarn.list  # every old field is known under its new name
    assert len(rep) == len(raw["blocks"]) == 5
    for b, old in zip(rep.blocks, raw["blocks"]):
        for old_name, new_name in RENAMED_IN_2.items():
            assert getattr(b, new_name) == old[old_name]
        for name in ("local_sigma_max", "local_sigma_min", "identity_gap", "grad_log_norm", "grad_ratio"):
            assert getattr(b, name) == old[name]
        assert b.local_cond is None  # the file predates the field
    assert rep.log_gain == raw["log_gain"] and rep.blocks[-1].cum_log_rms == raw["log_gain"]
    # Saved again, it is a report of the current format with the new names only.
    d = rep.to_dict()
    assert d["format"] == REPORT_FORMAT >= 2
    assert not set(RENAMED_IN_2) & set(d["blocks"][0])


def test_old_names_in_a_current_format_report_are_unknown_fields(tmp_path: Path) -> None:
    d = _report().to_dict()
    d["blocks"][0]["local_fro"] = 1.0
    with pytest.warns(ds.ProbeWarning, match="blocks: local_fro"):
        ds.Report.from_dict(d)
