"""The treatment registry: lookup, its error, validation of new entries."""

from __future__ import annotations

import pytest

import depthscope as ds
from depthscope.doctor import (
    Case,
    Treatment,
    UnknownTreatmentError,
    get_treatment,
    list_treatments,
    register_treatment,
)
from depthscope.doctor.treatments import TREATMENTS


def test_builtins_are_registered_once_in_list_order() -> None:
    names = [t.name for t in list_treatments()]
    assert names[: len(TREATMENTS)] == [cls.name for cls in TREATMENTS]
    assert len(set(names)) == len(names)
    for name in ("criticality", "rezero", "stable-resnet", "zero-gamma", "fixup", "deepnorm", "pre-ln"):
        assert name in names


def test_every_treatment_declares_name_title_source_treats_promise() -> None:
    for t in list_treatments():
        for attr in ("name", "title", "source", "treats", "promise"):
            assert getattr(t, attr), f"{type(t).__name__} has no {attr}"


def test_get_treatment_finds_by_name_ignoring_case() -> None:
    assert get_treatment("deepnorm").name == "deepnorm"
    assert get_treatment(" ReZero ") is get_treatment("rezero")


def test_unknown_name_is_an_input_error_listing_the_names() -> None:
    with pytest.raises(UnknownTreatmentError) as err:
        get_treatment("pre-norm-magic")
    assert isinstance(err.value, ds.InputError)
    message = str(err.value)
    assert "pre-norm-magic" in message
    for t in list_treatments():
        assert t.name in message


def test_duplicate_name_is_refused() -> None:
    before = [t.name for t in list_treatments()]
    with pytest.raises(ValueError, match="already registered"):
        register_treatment(type(get_treatment("rezero"))())
    assert [t.name for t in list_treatments()] == before


class _Incomplete(Treatment):
    name = "Bad Name"
    title = "a treatment with a malformed name"
    source = "nobody 2000"
    treats = ("vanishing",)
    promise = "nothing"

    def applies(self, case: Case) -> str | None:
        return None

    def apply(self, model, case):
        return model

    def kept(self, before, after) -> bool:
        return True


def test_malformed_entries_are_refused() -> None:
    with pytest.raises(TypeError, match="Treatment instance"):
        register_treatment(_Incomplete)  # the class, not an instance
    with pytest.raises(ValueError, match="lower-case"):
        register_treatment(_Incomplete())
    nameless = _Incomplete()
    nameless.name = "fine-name"
    nameless.promise = ""
    with pytest.raises(ValueError, match="promise"):
        register_treatment(nameless)
    unknown_kind = _Incomplete()
    unknown_kind.name = "fine-name"
    unknown_kind.treats = ("gremlins",)
    with pytest.raises(ValueError, match="gremlins"):
        register_treatment(unknown_kind)
    assert "fine-name" not in [t.name for t in list_treatments()]
