"""Running experiments: typed results, JSON round-trip, atomic files, failures that name the claim."""

import dataclasses
import json
import math

import pytest

import depthscope.ledger as ledger
from depthscope import DepthscopeError
from depthscope.ledger._experiment import _REGISTRY, Experiment

PRESETS = {"tiny": {"x": 1.0}, "quick": {"x": 2.0}, "full": {"x": 3.0}}


def _judge(m, s):
    return ledger.confirmed("fine") if m["value"] > 0 else ledger.refuted(f"value {m['value']} <= 0")


def _toy(**kw):
    base = dict(
        id="Z9", statement="x is positive", source="003", expected="x > 0", refuted_if="x <= 0", presets=PRESETS,
        measure=lambda s, seed: {"value": s["x"], "inf": math.inf, "series": [1.0, math.nan]},
        judge=_judge, counterexample={"x": -1.0},
    )
    base.update(kw)
    return Experiment(**base)


def test_run_experiment_returns_a_typed_result():
    r = ledger.run_experiment(_toy(), {"x": 2.0}, preset="quick", seed=3)
    assert (r.id, r.verdict, r.preset, r.seed) == ("Z9", "confirmed", "quick", 3)
    assert r.measured["value"] == 2.0 and r.measured["inf"] == "inf" and r.measured["series"][1] == "nan"
    assert set(r.versions) == {"depthscope", "torch", "numpy", "python"}
    assert r.figure_png is None  # no plot given


def test_counterexample_path_is_the_same_code():
    r = ledger.run_experiment(_toy(), {"x": -1.0})
    assert r.verdict == "refuted" and "-1.0" in r.reason


def test_results_round_trip_as_strict_json(tmp_path):
    results = [ledger.run_experiment(_toy(), {"x": 1.0}), ledger.run("R7", preset="tiny")]
    path = ledger.save_results(results, tmp_path / "results.json")
    payload = json.loads(path.read_text())  # strict: no NaN literals
    assert payload["format"] == 1 and len(payload["results"]) == 2
    for key in ("id", "statement", "setting", "measured", "expected", "verdict", "reason", "runtime_s", "seed", "versions"):
        assert key in payload["results"][1]
    back = ledger.load_results(path)
    assert [r.id for r in back] == ["Z9", "R7"] and back[1].measured == results[1].measured


def test_load_results_rejects_other_files(tmp_path):
    (tmp_path / "x.json").write_text('{"format": 99}')
    with pytest.raises(DepthscopeError, match="not a depthscope ledger results file"):
        ledger.load_results(tmp_path / "x.json")
    (tmp_path / "y.json").write_text("{")
    with pytest.raises(DepthscopeError, match="not JSON"):
        ledger.load_results(tmp_path / "y.json")
    with pytest.raises(DepthscopeError, match="cannot read"):
        ledger.load_results(tmp_path / "missing.json")


def test_run_many_writes_results_and_atlas(tmp_path):
    seen = []
    results = ledger.run_many(["R7"], "tiny", out=tmp_path / "out", on_done=lambda r: seen.append(r.id))
    assert seen == ["R7"] and results[0].figure_png is not None
    assert (tmp_path / "out" / "results.json").is_file()
    html = (tmp_path / "out" / "atlas.html").read_text()
    assert 'id="R7"' in html and "data:image/png;base64," in html


def test_run_overrides_are_checked():
    with pytest.raises(DepthscopeError, match="unknown setting"):
        ledger.run("R7", preset="tiny", not_a_setting=1)


def test_experiment_crash_names_the_claim(monkeypatch):
    def boom(setting, seed):
        raise RuntimeError("kaput")

    broken = dataclasses.replace(ledger.get_experiment("R7"), measure=boom)
    monkeypatch.setitem(_REGISTRY, "R7", broken)
    with pytest.raises(DepthscopeError, match="experiment R7 failed: RuntimeError: kaput"):
        ledger.run_many(["R7"], "tiny")


def test_same_seed_same_result():
    a = ledger.run("R7", preset="tiny", seed=5, figure=False)
    b = ledger.run("R7", preset="tiny", seed=5, figure=False)
    assert a.measured == b.measured
