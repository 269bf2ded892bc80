"""Every registered experiment: runs at its tiny size, returns a well-formed result, and its
refutation branch is reachable (its counterexample setting yields "refuted")."""

import json
import math

import pytest

import depthscope.ledger as ledger

IDS = ledger.list_experiments()


def _finite_json(obj):
    json.dumps(obj, allow_nan=False)  # raises on NaN/inf that escaped encoding


@pytest.mark.parametrize("claim_id", IDS)
def test_tiny_run_is_well_formed(claim_id, tiny_results):
    exp = ledger.get_experiment(claim_id)
    assert exp.statement and exp.expected and exp.refuted_if
    result = tiny_results[claim_id]
    assert result.id == claim_id
    assert result.verdict in ledger.VERDICTS
    assert result.reason.strip()
    assert result.measured, "an experiment must measure something"
    assert math.isfinite(result.runtime_s) and result.runtime_s >= 0
    _finite_json(result.to_dict())
    if exp.plot is not None:
        assert result.figure_png and result.figure_png[:4] == b"\x89PNG"


@pytest.mark.parametrize("claim_id", IDS)
def test_counterexample_is_refuted(claim_id):
    exp = ledger.get_experiment(claim_id)
    result = ledger.run(claim_id, preset="tiny", figure=False, **exp.counterexample)
    assert result.verdict == ledger.REFUTED, result.reason


def test_every_claim_of_the_theory_has_an_experiment():
    expected = [f"R{i}" for i in range(1, 13)] + [f"J{i}" for i in range(1, 9)]
    expected += [f"N{i}" for i in range(1, 5)] + [f"V{i}" for i in range(1, 11)]
    assert sorted(IDS) == sorted(expected)
