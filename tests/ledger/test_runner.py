"""Running experiments: typed results, JSON round-trip, results merged across runs, a results/atlas
pair that stays consistent, failures that name the claim or the file."""

import dataclasses
import errno
import json
import math
import os
import re
from datetime import datetime, timedelta
from pathlib import Path

import pytest

import depthscope.ledger as ledger
from depthscope import DepthscopeError
from depthscope.ledger import _atlas
from depthscope.ledger._experiment import Experiment
from depthscope.ledger._registry import _REGISTRY
from depthscope.ledger._runner import atlas_matches_results

PRESETS = {"tiny": {"x": 1.0}, "quick": {"x": 2.0}, "full": {"x": 3.0}}


def _judge(m, s):
    return ledger.confirmed("fine") if m["value"] > 0 else ledger.refuted(f"value {m['value']} <= 0")


def _toy(**kw):
    base = dict(
        id="Z9",
        statement="x is positive",
        source="003",
        expected="x > 0",
        refuted_if="x <= 0",
        presets=PRESETS,
        measure=lambda s, seed: {"value": s["x"], "inf": math.inf, "series": [1.0, math.nan]},
        judge=_judge,
        counterexample={"x": -1.0},
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
    for key in (
        "id",
        "statement",
        "setting",
        "measured",
        "expected",
        "verdict",
        "reason",
        "runtime_s",
        "seed",
        "versions",
    ):
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


def _plot(m, s):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [0, m["value"]])
    return fig


@pytest.fixture
def toys(monkeypatch):
    """Two fast registered claims, Z8 and Z9; ``runs`` counts their measurements."""
    ledger.list_experiments()  # load the real claims first, so that they do not register over ours
    runs = []

    def measure(setting, seed):
        runs.append(setting["x"])
        return {"value": setting["x"] + 10 * len(runs)}

    for claim_id in ("Z8", "Z9"):
        toy = _toy(id=claim_id, measure=measure, plot=_plot, judge=lambda m, s: ledger.confirmed(f"value {m['value']}"))
        monkeypatch.setitem(_REGISTRY, claim_id, toy)
    return runs


def test_run_many_merges_with_the_earlier_results_in_the_folder(tmp_path, toys):
    """Regression: `ledger run Z9 --out DIR` wiped Z8's results of an earlier run in DIR."""
    out = tmp_path / "out"
    ledger.run_many(["Z8", "Z9"], "tiny", out=out)
    first = {r.id: r for r in ledger.load_results(out / "results.json")}
    ledger.run_many(["Z9"], "full", seed=4, out=out)
    kept = {r.id: r for r in ledger.load_results(out / "results.json")}
    assert sorted(kept) == ["Z8", "Z9"]
    assert (kept["Z8"].preset, kept["Z8"].seed, kept["Z8"].measured) == ("tiny", 0, first["Z8"].measured)
    assert (kept["Z9"].preset, kept["Z9"].seed, kept["Z9"].measured) == ("full", 4, {"value": 33.0})
    for r in kept.values():  # when each ran, in UTC
        assert datetime.fromisoformat(r.finished_at).utcoffset() == timedelta(0)
    assert kept["Z8"].finished_at == first["Z8"].finished_at
    assert kept["Z8"].figure_png == first["Z8"].figure_png and kept["Z8"].figure_png[:4] == b"\x89PNG"
    html = (out / "atlas.html").read_text()
    assert html.count("data:image/png;base64,") == 2  # the earlier claim keeps its figure
    assert "preset tiny · seed 0" in html and "preset full · seed 4" in html
    assert ledger.load_results(out / "results.json") == list(kept.values())


def test_merge_keeps_claims_no_longer_registered_after_the_others(tmp_path, toys):
    old = ledger.run_experiment(_toy(id="Z7"), {"x": 1.0}, preset="quick")
    ledger.save_results([old], tmp_path / "results.json")
    ledger.run_many(["Z9", "Z8"], "tiny", out=tmp_path)
    assert [r.id for r in ledger.load_results(tmp_path / "results.json")] == ["Z8", "Z9", "Z7"]


def test_unwritable_out_folder_fails_before_any_experiment(tmp_path, toys, monkeypatch):
    """The folder exists but refuses new files. Tests may run as root, whom a read-only mode does not
    stop, so the refusal is simulated: os.open raises EACCES for new files in that folder."""
    out = tmp_path / "locked"
    out.mkdir()
    real_open = os.open

    def refusing_open(path, flags, *args, **kwargs):
        if Path(path).parent == out and flags & os.O_CREAT:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", refusing_open)
    with pytest.raises(DepthscopeError, match=f"cannot write in {out}: Permission denied"):
        ledger.run_many(["Z8", "Z9"], "tiny", out=out)
    assert toys == []  # nothing ran


def test_unreadable_earlier_results_fail_before_any_experiment(tmp_path, toys):
    (tmp_path / "results.json").write_text('{"format": 1}')
    with pytest.raises(DepthscopeError, match="has no 'results' list.*move the file away"):
        ledger.run_many(["Z8"], "tiny", out=tmp_path)
    (tmp_path / "results.json").unlink()
    (tmp_path / "atlas.html").mkdir()
    with pytest.raises(DepthscopeError, match="atlas.html: it is a directory"):
        ledger.run_many(["Z8"], "tiny", out=tmp_path)
    assert toys == []


def _pair(out: Path) -> tuple[list[str], str]:
    reasons = [r.reason for r in ledger.load_results(out / "results.json")]
    return reasons, (out / "atlas.html").read_text()


def test_ctrl_c_between_results_and_atlas_leaves_a_consistent_pair(tmp_path, toys, monkeypatch):
    """Regression: Ctrl-C after results.json was replaced and before atlas.html left new results
    beside the old atlas. The interruption is simulated at the replace of atlas.html."""
    out = tmp_path / "out"
    ledger.run_many(["Z8", "Z9"], "tiny", out=out)
    before = _pair(out)
    real_replace = os.replace

    def interrupted(src, dst):
        if Path(dst).name == "atlas.html":
            raise KeyboardInterrupt
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ledger.run_many(["Z8", "Z9"], "tiny", out=out)
    monkeypatch.undo()
    assert _pair(out) == before  # the old pair, whole
    assert before[0] == ["value 11.0", "value 21.0"] and "value 31.0" not in before[1]
    assert sorted(p.name for p in out.iterdir()) == ["atlas.html", "results.json"]
    assert atlas_matches_results(out)


def test_ctrl_c_while_rendering_the_atlas_leaves_the_old_pair(tmp_path, toys, monkeypatch):
    out = tmp_path / "out"
    ledger.run_many(["Z8"], "tiny", out=out)
    before = _pair(out)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(_atlas, "render_atlas", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ledger.run_many(["Z8"], "quick", out=out)
    assert _pair(out) == before and atlas_matches_results(out)


def test_atlas_records_the_digest_of_its_results(tmp_path, toys):
    ledger.run_many(["Z8"], "tiny", out=tmp_path)
    assert atlas_matches_results(tmp_path)
    ledger.save_results(ledger.load_results(tmp_path / "results.json")[:0], tmp_path / "results.json")
    assert not atlas_matches_results(tmp_path)  # a results file written alone no longer matches


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        ({"format": 1}, "it has no 'results' list"),
        ({"format": 1, "results": {"R7": {}}}, "has 'results' of type dict, not a list"),
        ({"format": 1, "results": ["R7"]}, "results[0]: a claim result must be a JSON object, got str"),
        (
            {"format": 1, "results": [{"id": "R7", "verdict": "confirmed"}]},
            "results[0]: claim result R7 lacks the fields",
        ),
        ([1], "its top level is a list, not an object"),
    ],
)
def test_load_results_names_what_is_wrong(tmp_path, payload, problem):
    path = tmp_path / "results.json"
    path.write_text(json.dumps(payload))
    with pytest.raises(DepthscopeError, match=re.escape(problem)) as info:
        ledger.load_results(path)
    assert str(path) in str(info.value)


def test_results_files_from_before_figures_and_times_still_load(tmp_path):
    r = ledger.run_experiment(_toy(), {"x": 1.0})
    entry = r.to_dict()
    del entry["figure_png_base64"], entry["finished_at"]
    (tmp_path / "old.json").write_text(json.dumps({"format": 1, "results": [entry]}))
    (back,) = ledger.load_results(tmp_path / "old.json")
    assert back.finished_at == "" and back.figure_png is None and back.measured == r.measured
