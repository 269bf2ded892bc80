"""The doctor: diagnose where a model's signal dies, prescribe a published fix, apply it, verify it.

    dx = ds.diagnose(model, x)              # probe + findings + ranked prescriptions
    treated = dx.apply(model)               # the best prescription, on a copy
    print(ds.verify(model, treated, x, train=ds.doctor.digits_task(steps=200)))

The face of the package. Inside (lowest first): `_finding` (`Finding` and its kinds), `_meanfield`
(q*, chi_1 and the critical sigma_w of wide random nets), `_treatment` (the `Treatment` contract
and the `Case` it reads), `_findings` (measurements -> findings), `_registry` and `treatments`
(the published fixes), `_diagnosis` (`diagnose`, `Diagnosis`, `Prescription`), `_verify`
(`verify`, before and after, optionally trained on digits).
"""

from depthscope.doctor._blocks import ScaledResidual
from depthscope.doctor._diagnosis import Diagnosis, DoctorWarning, Prescription, diagnose
from depthscope.doctor._finding import KINDS, Finding
from depthscope.doctor._meanfield import MeanField, critical_sigma_w, meanfield
from depthscope.doctor._registry import UnknownTreatmentError, get_treatment, list_treatments, register_treatment
from depthscope.doctor._structure import (  # the design tools find and edit blocks with these
    layout_of,
    measured_skip,
    module_path,
    skip_of,
)
from depthscope.doctor._text import step_ranges
from depthscope.doctor._treatment import Case, Treatment
from depthscope.doctor._verify import Training, TrainTask, Verification, digits_task, gradient_log_ratio, verify

__all__ = [
    "Case",
    "Finding",
    "KINDS",
    "MeanField",
    "Treatment",
    "critical_sigma_w",
    "meanfield",
    "ScaledResidual",
    "UnknownTreatmentError",
    "get_treatment",
    "list_treatments",
    "register_treatment",
    "layout_of",
    "measured_skip",
    "module_path",
    "skip_of",
    "Diagnosis",
    "DoctorWarning",
    "Prescription",
    "TrainTask",
    "Training",
    "Verification",
    "diagnose",
    "digits_task",
    "gradient_log_ratio",
    "step_ranges",
    "verify",
]
