"""Experiment definitions: validation at registration, settings and overrides, claim lookup."""

import importlib
import pkgutil

import pytest

import depthscope.ledger as ledger
import depthscope.ledger.claims as claims
from depthscope import DepthscopeError
from depthscope.ledger import Experiment, register_experiment

PRESETS = {"tiny": {"n": 1}, "quick": {"n": 2}, "full": {"n": 3}}


def _exp(**kw) -> Experiment:
    base = dict(
        id="Z1",
        statement="s",
        source="000",
        expected="e",
        refuted_if="r",
        presets=PRESETS,
        measure=lambda s, seed: {"n": s["n"]},
        judge=lambda m, s: ledger.confirmed("ok"),
        counterexample={"n": 0},
    )
    base.update(kw)
    return Experiment(**base)


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"id": "z-1"}, "claim id"),
        ({"id": "R7"}, "already registered"),
        ({"source": "009"}, "unknown source"),
        ({"presets": {"tiny": {"n": 1}, "quick": {"n": 2}}}, "missing preset"),
        ({"presets": {**PRESETS, "full": {"m": 1}}}, "keys differ"),
        ({"counterexample": {"m": 1}}, "counterexample"),
        ({"counterexample": {}}, "counterexample"),
    ],
)
def test_registration_rejects_malformed_experiments(kw, match):
    ledger.list_experiments()  # make sure R7 is registered
    with pytest.raises(ValueError, match=match):
        register_experiment(_exp(**kw))


def test_setting_applies_overrides_and_rejects_unknown_keys():
    e = _exp()
    assert e.setting("quick") == {"n": 2}
    assert e.setting("tiny", n=5) == {"n": 5}
    with pytest.raises(DepthscopeError, match="unknown setting"):
        e.setting("tiny", m=1)
    with pytest.raises(DepthscopeError, match="no preset"):
        e.setting("huge")


def test_judgement_rejects_unknown_verdicts():
    with pytest.raises(ValueError, match="verdict"):
        ledger.Judgement("probably", "x")


def test_unknown_claim_is_a_clear_error():
    with pytest.raises(ledger.UnknownClaimError, match="no experiment for claim 'Q9'"):
        ledger.get_experiment("Q9")
    assert ledger.get_experiment("r7").id == "R7"


def test_claims_are_listed_in_ledger_order():
    ids = ledger.list_experiments()
    families = [i[0] for i in ids]
    assert families == sorted(families, key="RJNV".index)
    for fam in "RJNV":
        nums = [int(i[1:]) for i in ids if i[0] == fam]
        assert nums == sorted(nums)


def test_resolve_ids_expands_families_and_rejects_unknown():
    assert ledger.resolve_ids(["r7"]) == ["R7"]
    assert "R7" in ledger.resolve_ids(["R"])
    assert all(i.startswith("R") for i in ledger.resolve_ids(["R"]))
    assert ledger.resolve_ids(None) == ledger.list_experiments()
    with pytest.raises(ledger.UnknownClaimError):
        ledger.resolve_ids(["R99"])


def test_every_claim_module_is_listed_once_and_registered():
    """A claim module missing from `claims.EXPERIMENTS` would never run: the list is the registry's source."""
    modules = [m.name for m in pkgutil.iter_modules(claims.__path__) if not m.name.startswith("_")]
    defined = sorted(importlib.import_module(f"{claims.__name__}.{name}").EXPERIMENT.id for name in modules)
    listed = [e.id for e in claims.EXPERIMENTS]
    assert sorted(listed) == defined
    assert listed == [i for i in ledger.list_experiments() if i in set(listed)]
