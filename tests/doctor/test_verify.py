"""verify and digits_task, and the issue's end-to-end checks: diagnose, apply the best
prescription, re-probe, and (for the sigmoid net) train both models the same way."""

import functools
import json
import math

import pytest
from tests.doctor.treatment_cases import state, unchanged, zoo

import depthscope as ds
from depthscope._errors import InputError
from depthscope.doctor import TrainTask, Verification, diagnose, digits_task, gradient_log_ratio, verify
from depthscope.probing import VERDICT_LOG_GAIN

BATCH = 8


_zoo = functools.partial(zoo, batch=BATCH)


def test_digits_task_checks_its_arguments():
    assert digits_task() == TrainTask()
    with pytest.raises(InputError, match="steps"):
        digits_task(steps=0)
    with pytest.raises(InputError, match="lr"):
        digits_task(lr=-1.0)
    with pytest.raises(InputError, match="optimizer"):
        digits_task(optimizer="lbfgs")


def test_verify_side_by_side():
    model, x = _zoo("plain_mlp", depth=12, width=16, activation="linear", slope=1.5, sigma_w=1.0)
    treated = diagnose(model, x).apply(model, "criticality")
    v = verify(model, treated, x)
    assert isinstance(v, Verification) and v.task is None and v.trained_before is None
    assert v.before.log_gain == ds.probe(model, x).log_gain
    assert v.after.log_gain == ds.probe(treated, x).log_gain
    assert v.before.verdict == "exploding" and v.stable
    rows = v.rows()
    assert [r[0] for r in rows] == v.before.column("name")
    # the gradient ratio reported is the body's input gradient against its top's
    span = v.after.body_span
    by_index = {b.index: b for b in v.after.blocks}
    expected = by_index[span[0]].grad_log_norm - by_index[span[1] + 1].grad_log_norm
    assert gradient_log_ratio(v.after) == pytest.approx(expected)
    text = str(v)
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "exploding" in text and "stable" in text and "blocks.3" in text
    json.dumps(v.to_dict(), allow_nan=False)


def test_training_needs_digits_shapes():
    model, x = _zoo("plain_mlp", depth=3, width=8)  # in_dim 8, not 64
    with pytest.raises(InputError, match=r"\(n, 64\) -> \(n, 10\)"):
        verify(model, model, x, train=digits_task(steps=1))


def test_divergence_is_reported_not_raised():
    model, x = _zoo("plain_mlp", depth=12, width=16, activation="linear", slope=1.5, sigma_w=1.0, in_dim=64)
    v = verify(model, model, x, train=digits_task(steps=20, lr=1e3))
    assert v.trained_before.diverged_at is not None and math.isnan(v.trained_before.final_loss)
    assert "diverged" in str(v)


# The checks. The 50-deep sigmoid net trains twice for 200 steps (~2.5 s together): the
# check is about training, so it must really train.
def test_sigmoid_50_diagnosed_treated_and_trains_better():
    model, x = _zoo("plain_mlp", depth=50, width=32, activation="sigmoid", in_dim=64)
    before = state(model)
    dx = diagnose(model, x)
    vanishing = dx.findings[0]
    assert vanishing.kind == "vanishing" and vanishing.steps[-1] == "head"
    assert vanishing.evidence["first_step"].startswith("blocks.")
    chosen, treated, after = dx.best(model)
    assert after.verdict == "stable"
    v = verify(model, treated, x, train=digits_task(steps=200))
    assert v.stable
    assert v.trained_after.final_loss < v.trained_before.final_loss
    assert unchanged(model, before)


def test_linear_slope_stack_becomes_stable():
    model, x = _zoo("plain_mlp", depth=20, width=32, activation="linear", slope=1.5, sigma_w=1.0)
    dx = diagnose(model, x)
    assert dx.findings[0].kind == "exploding"
    _, treated, after = dx.best(model)
    assert after.verdict == "stable" and verify(model, treated, x).stable


def test_saturated_tanh_gets_its_fraction():
    model, x = _zoo("plain_mlp", depth=20, width=64, activation="tanh", sigma_w=4.0)
    dx = diagnose(model, x)
    sat = next(f for f in dx.findings if f.kind == "saturation")
    assert 0.3 < sat.evidence["fraction"] < 0.7 and f"{sat.evidence['fraction']:.0%}" in sat.summary


# resnet56 at its defaults (the issue quotes its +5.6); batch 2 keeps it near 4 s.
def test_resnet56_batchnorm_finding_and_treatment():
    model, x = _zoo("resnet56", batch=2)
    before = state(model)
    dx = diagnose(model, x)
    bn = next(f for f in dx.findings if f.kind == "batchnorm-branches")
    assert bn.evidence["log_gain"] == pytest.approx(5.6, abs=0.15)
    assert dx.prescriptions[0].name in ("zero-gamma", "fixup")
    chosen, treated, after = dx.best(model)
    # The body (the 27 residual blocks) comes into the band; the head's pooling still divides
    # the RMS gain by about e^2 end to end.
    assert abs(after.body_log_gain) < VERDICT_LOG_GAIN
    assert unchanged(model, before)
