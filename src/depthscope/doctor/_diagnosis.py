"""`diagnose`: probe a model, find what is wrong, and rank the registered treatments that fit.

dx = diagnose(model, x)        # the probe Report, the findings, the ranked prescriptions
print(dx)                      # what is wrong, where, the evidence, what to do
treated = dx.apply(model)      # the best prescription applied to a copy; model is untouched
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from depthscope._errors import InputError
from depthscope._io import encode_json
from depthscope.chain import Chain
from depthscope.doctor._finding import Finding
from depthscope.doctor._findings import DEAD_RELU_MIN_BATCH, STOCHASTIC, eval_mode, find
from depthscope.doctor._registry import get_treatment, list_treatments
from depthscope.doctor._text import number, paragraph, step_ranges
from depthscope.doctor._treatment import Case, Treatment
from depthscope.probing import ProbeWarning, Report, probe


class DoctorWarning(UserWarning):
    """The doctor could not do what was asked as well as it promised (a treatment that did not keep
    its promise on re-probing)."""


@dataclass(frozen=True)
class Prescription:
    """A registered treatment that fits a diagnosis.

    Attributes:
        name: the registry key (``dx.apply(model, name)``).
        title: what the treatment does, in a few words.
        rationale: why it applies to this model (the treatment's ``applies``).
        source: the publication whose recipe it applies.
        constants: the published constants, with the values for this model.
        preserves_function: the treated model computes the same output.
        blocked: why it cannot be applied to this model's structure, or None.
        treats: the finding kinds it addresses.
        promise: what the re-probe of the treated model must show.
    """

    name: str
    title: str
    rationale: str
    source: str
    constants: dict[str, float] = field(default_factory=dict)
    preserves_function: bool = False
    blocked: str | None = None
    treats: tuple[str, ...] = ()
    promise: str = ""


@dataclass(frozen=True)
class Diagnosis:
    """What `diagnose` found.

    Attributes:
        report: the probe's report of the model at the input.
        findings: most severe first; empty for a healthy model.
        prescriptions: unblocked first, then by the severity of the findings they treat, then in
            registry order; empty for a healthy model.
        notes: treatments for the findings that do not fit this model's structure, and why; checks
            that could not be made (a batch too small to call ReLU units dead).
        case: what the treatments read (report, findings, chain, input).
    """

    report: Report
    findings: tuple[Finding, ...]
    prescriptions: tuple[Prescription, ...]
    notes: tuple[str, ...] = ()
    case: Case | None = field(default=None, repr=False, compare=False)
    _model: Callable[[], nn.Module | None] | None = field(default=None, repr=False, compare=False)
    _probe_kwargs: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def healthy(self) -> bool:
        """No finding: the model needs no treatment."""
        return not self.findings

    def prescription(self, name: str) -> Prescription:
        """The prescription of the treatment ``name``.

        Raises:
            UnknownTreatmentError: no treatment of that name is registered (lists the names).
            InputError: it is registered but does not apply to this model.
        """
        treatment = get_treatment(name)
        for p in self.prescriptions:
            if p.name == treatment.name:
                return p
        found = ", ".join(sorted({f.kind for f in self.findings})) or "none"
        raise InputError(
            f"treatment {treatment.name!r} does not apply to this model: it treats "
            f"{', '.join(treatment.treats)}; the findings are: {found}"
        )

    def _check_model(self, model: nn.Module) -> Case:
        if self.healthy:
            raise InputError("nothing to treat: the diagnosis found no problem (the model is healthy)")
        if self.case is None or self._model is None or self._model() is not model:
            raise InputError("apply takes the model that was diagnosed; call diagnose(model, x) on this one first")
        return self.case

    def best(self, model: nn.Module) -> tuple[Prescription, nn.Module, Report]:
        """The first unblocked prescription, in rank order, whose treated model keeps its promise
        when re-probed (same input and probe settings as the diagnosis): (prescription, treated
        model, its report). When none keeps it, the first one, with a `DoctorWarning`. Costs one
        probe per prescription tried; ``model`` is not modified.

        Raises:
            InputError: as `apply`.
        """
        case = self._check_model(model)
        usable = [p for p in self.prescriptions if p.blocked is None]
        if not usable:
            reasons = "; ".join(f"{p.name}: {p.blocked}" for p in self.prescriptions) or "none fits the findings"
            raise InputError(f"no prescription can be applied to this model ({reasons})")
        tried = []
        for p in usable:
            treatment = get_treatment(p.name)
            treated = treatment.apply(model, case)
            after = probe(treated, case.x, **self._probe_kwargs)
            if treatment.kept(self.report, after):
                return p, treated, after
            tried.append((p, treated, after))
        p, treated, after = tried[0]
        warnings.warn(
            f"no prescription kept its promise on re-probing ({', '.join(q.name for q, _, _ in tried)}); "
            f"returning the first, {p.name} (verdict {after.verdict}, log gain {after.log_gain:+.2f})",
            DoctorWarning,
            stacklevel=2,
        )
        return p, treated, after

    def apply(self, model: nn.Module, name: str | None = None) -> nn.Module:
        """A treated copy of ``model`` (the model diagnosed); ``model`` itself is not modified.

        Args:
            model: the model passed to `diagnose`.
            name: a treatment's registry name; None takes `best` (the first prescription, in rank
                order, whose re-probe keeps its promise).

        Raises:
            InputError: the model is healthy (nothing to treat), ``model`` is not the diagnosed
                model, the named treatment does not apply or is blocked (with its reason), or every
                prescription is blocked.
            UnknownTreatmentError: no treatment is registered as ``name`` (lists the names).
        """
        if name is not None:
            get_treatment(name)  # an unknown name is named first, with the registered ones
        case = self._check_model(model)
        if name is None:
            return self.best(model)[1]
        chosen = self.prescription(name)
        if chosen.blocked is not None:
            raise InputError(f"treatment {chosen.name!r} cannot be applied to this model: {chosen.blocked}")
        return get_treatment(chosen.name).apply(model, case)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (non-finite numbers as strings, as in reports)."""
        return encode_json(
            {
                "healthy": self.healthy,
                "findings": [asdict(f) for f in self.findings],
                "prescriptions": [asdict(p) for p in self.prescriptions],
                "notes": list(self.notes),
                "report": self.report.to_dict(),
            }
        )

    def __str__(self) -> str:
        return "\n".join(self.lines())

    def lines(self, width: int = 80) -> list[str]:
        """The diagnosis as plain-text lines of at most ``width`` columns."""
        r = self.report
        order = r.column("name")
        out = [
            f"depthscope doctor: {len(self.findings)} finding(s), {len(self.prescriptions)} prescription(s)",
            f"probe: {r.verdict}, log gain {r.log_gain:+.2f} over {len(r)} steps, depth scale {number(r.depth_scale)}",
        ]
        if self.healthy:
            out += ["", "healthy: no finding, nothing to prescribe."]
        else:
            out += ["", "Findings (most severe first)"]
            for i, f in enumerate(self.findings, 1):
                out += paragraph(
                    f"{i}. {f.kind} (severity {f.severity:.1f}) at {step_ranges(f.steps, order)}", "  ", width
                )
                out += paragraph(f.summary, "     ", width)
                evidence = ", ".join(f"{k} {number(v)}" for k, v in f.evidence.items())
                out += paragraph(f"evidence: {evidence}", "     ", width)
            out += ["", "Prescriptions (best first)" if self.prescriptions else "No registered treatment fits."]
            for i, p in enumerate(self.prescriptions, 1):
                keeps = "keeps the function" if p.preserves_function else "changes the function"
                out += paragraph(f"{i}. {p.name}: {p.title} ({keeps})", "  ", width)
                if p.blocked is not None:
                    out += paragraph(f"BLOCKED: {p.blocked}", "     ", width)
                out += paragraph(f"why: {p.rationale}", "     ", width)
                if p.constants:
                    out += paragraph(
                        "constants: " + ", ".join(f"{k} {number(v, 4)}" for k, v in p.constants.items()), "     ", width
                    )
                out += paragraph(f"source: {p.source}", "     ", width)
            usable = [p for p in self.prescriptions if p.blocked is None]
            if usable:
                out += [
                    "",
                    *paragraph(
                        "dx.apply(model) applies the first of these whose re-probe keeps its promise "
                        f"(tried in this order: {', '.join(p.name for p in usable)})",
                        "",
                        width,
                    ),
                ]
        for note in self.notes:
            out += paragraph(f"note: {note}", "", width)
        return out


def _severity(treatment: Treatment, findings: tuple[Finding, ...]) -> float:
    """The largest severity among the findings ``treatment`` treats (0 when none)."""
    return max((f.severity for f in findings if f.kind in treatment.treats), default=0.0)


def prescribe(case: Case) -> tuple[Prescription, ...]:
    """The registered treatments whose ``applies`` accepts ``case``, ranked (see `Diagnosis`)."""
    if not case.findings:
        return ()
    rows = []
    for order, treatment in enumerate(list_treatments()):
        why = treatment.applies(case)
        if why is None:
            continue
        blocked = treatment.blocked(case)
        p = Prescription(
            name=treatment.name,
            title=treatment.title,
            rationale=why,
            source=treatment.source,
            constants=dict(treatment.constants(case)) if blocked is None else {},
            preserves_function=treatment.preserves_function,
            blocked=blocked,
            treats=tuple(treatment.treats),
            promise=treatment.promise,
        )
        rows.append((blocked is not None, -_severity(treatment, case.findings), order, p))
    rows.sort(key=lambda r: r[:3])
    return tuple(r[3] for r in rows)


def _unfit(case: Case) -> list[str]:
    """Why treatments for the findings' kinds do not fit this model's structure (their ``blocked``
    reason where ``applies`` declined), one note each."""
    kinds = {f.kind for f in case.findings}
    out = []
    for treatment in list_treatments():
        if kinds.isdisjoint(treatment.treats) or treatment.applies(case) is not None:
            continue
        reason = treatment.blocked(case)
        if reason is not None:
            out.append(f"{treatment.name} does not fit this model: {reason}")
    return out


def diagnose(
    model: nn.Module, x: torch.Tensor, *, blocks: list[str | nn.Module] | None = None, **probe_kwargs: Any
) -> Diagnosis:
    """Probe ``model`` at ``x``, find what is wrong, and prescribe the treatments that fit.

    Args:
        model: any ``nn.Module`` the probe accepts (its blocks found by `Chain.from_module`).
        x: an input batch (B, *S_0); B >= 8 also lets the doctor call ReLU units dead.
        blocks: passed to `Chain.from_module` (explicit block names or patterns).
        **probe_kwargs: passed to `depthscope.probe` (``probes``, ``seed``, ``sigma_min``, ...).

    Cost: one probe and one forward pass, plus the treatments' cheap predicates.
    """
    if not isinstance(model, nn.Module):
        raise InputError(f"diagnose takes an nn.Module (treatments rebuild it), not a {type(model).__name__}")
    training = sorted({type(m).__name__ for m in model.modules() if m.training and isinstance(m, STOCHASTIC)})
    if training:
        warnings.warn(
            f"{', '.join(training)} in training mode: diagnosing in eval mode (the mode is restored afterwards)",
            ProbeWarning,
            stacklevel=2,
        )
    with eval_mode([model]):
        chain = Chain.from_module(model, blocks, example=x)
        report = probe(chain, x, **probe_kwargs)
        findings = find(report, chain, x)
    case = Case(report, findings, chain, x)
    notes = [*_unfit(case)]
    if x.shape[0] < DEAD_RELU_MIN_BATCH:
        notes.append(f"dead ReLU units not judged: a batch of {x.shape[0]} < {DEAD_RELU_MIN_BATCH} examples")
    # Re-probes of treated copies find their blocks the same way (names carry over to the copy).
    again = dict(probe_kwargs)
    if blocks is not None and all(isinstance(b, str) for b in blocks):
        again["blocks"] = list(blocks)
    return Diagnosis(report, findings, prescribe(case), tuple(notes), case, weakref.ref(model), again)
