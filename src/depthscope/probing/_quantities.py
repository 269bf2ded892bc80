"""Every per-step quantity of a report, declared once.

A `Quantity` says what one field of `BlockStats` is: its name and type, whether it may be None and
what None means, how it is read from a step's measurements (`StepRecord`) and reduced over the
batch, how it travels in JSON (floats that may be inf/nan, names it had in older report formats) and
how the terminal shows it (`Column`). `BlockStats`, the report's JSON reader and the terminal table
are all built from `QUANTITIES`, so a new per-step quantity is one declaration here (plus, when it
needs a new measurement, its estimator, and its line in README.md's "What the report means").
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

from depthscope.estimators import SIGMA_MIN_EXACT, SIGMA_MIN_INVERSE_LANCZOS, SIGMA_MIN_WEYL, LocalStats

# Kinds whose sigma_min is the value itself (exact or estimated), not a bound on it.
SIGMA_MIN_VALUES = frozenset({SIGMA_MIN_EXACT, SIGMA_MIN_INVERSE_LANCZOS})


@dataclass(frozen=True)
class StepRecord:
    """What the probe's stages measured at one differentiated step k, before it becomes `BlockStats`.

    Attributes:
        name, index: the step's label and position k in the chain.
        in_shape, out_shape: per-example state shapes S_k and S_{k+1}.
        local: the step's local statistics (batch means, from `depthscope.estimators`).
        cum_log_rms, cum_log_rms_se: log RMS singular value of J(0 -> k+1) (mean over the batch of
            the per-example logs) and its standard error.
        grad_log_norm: mean over the batch of log ||dE/dx_k||.
        grad_ratio: exp of the batch mean of log(||dE/dx_k|| / ||dE/dx_{k+1}||).
    """

    name: str
    index: int
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    local: LocalStats
    cum_log_rms: float
    cum_log_rms_se: float
    grad_log_norm: float
    grad_ratio: float


@dataclass(frozen=True)
class Column:
    """How the terminal table shows a quantity.

    Attributes:
        header: the column's header.
        priority: 0 for columns always shown; on a terminal too narrow for the table, columns are
            dropped from the highest priority number down.
        digits: significant digits of a float value.
        decimals: where set, a float is shown with this many decimals instead (log quantities, whose
            absolute error is what matters: a log gain of -0.000894 reads -0.001).
        bound_mark: ``(field, value, mark)``: ``mark`` precedes the value when the block's ``field``
            equals ``value`` (sigma_min marked "≥" where it is a Weyl lower bound).
        then: a second field shown after an arrow where it differs (a shape that changes).
        justify: "left" or "right".
    """

    header: str
    priority: int
    digits: int = 3
    decimals: int | None = None
    bound_mark: tuple[str, str, str] | None = None
    then: str | None = None
    justify: str = "right"


@dataclass(frozen=True)
class Quantity:
    """One field of `BlockStats`, declared once.

    Attributes:
        name: the field's name.
        type: its annotation as text ("float", "float | None", "tuple[int, ...]", "str | None", ...):
            the JSON reader checks values against it, and floats in it may travel as "inf"/"nan".
        doc: what it is, with units and when it is None: the line of `BlockStats`'s docstring.
        measure: the value from a step's `StepRecord` (an attribute getter where it is one of its
            fields, a named function otherwise, so a declaration prints and pickles); the batch
            reduction is stated in ``doc``.
        default: the value a report written before the field existed loads with (keyword-only
            field); ``REQUIRED`` for a field every report has.
        formerly: names the field had in older report formats (the reader maps them to ``name``).
        column: how the terminal shows it; None for a field it does not show.
    """

    name: str
    type: str
    doc: str
    measure: Callable[[StepRecord], Any]
    default: Any = None
    formerly: tuple[str, ...] = ()
    column: Column | None = None

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    @property
    def is_float(self) -> bool:
        return "float" in self.type


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


# Marks a quantity that every report of every readable format has (no default).
REQUIRED: Any = _Required()


def condition_number(st: LocalStats) -> float | None:
    """sigma_max / sigma_min of a step from its batch means; None where sigma_min is not known.

    Known means exact or estimated (``sigma_min_kind`` "exact" or "inverse-lanczos"). A Weyl lower
    bound (matrix-free steps) would only bound the condition number from above, often by inf (a
    bound of 0), so it gives None, as do non-square steps and ``sigma_min=False``. A singular
    Jacobian (sigma_min = 0, a zero step included) has condition number inf, as in
    ``numpy.linalg.cond``. With a batch, the ratio is of the batch means: the per-example condition
    number at batch 1.
    """
    if st.sigma_min is None or st.sigma_min_kind not in SIGMA_MIN_VALUES:
        return None
    if st.sigma_min == 0:
        return math.inf
    return st.sigma_max / st.sigma_min


def _local_cond(record: StepRecord) -> float | None:
    return condition_number(record.local)


QUANTITIES: tuple[Quantity, ...] = (
    Quantity(
        "name", "str", "the step's label.", attrgetter("name"), REQUIRED, column=Column("step", 0, justify="left")
    ),
    Quantity(
        "index", "int", "the step's position k in the chain.", attrgetter("index"), REQUIRED, column=Column("k", 0)
    ),
    Quantity(
        "in_shape",
        "tuple[int, ...]",
        "per-example input shape S_k.",
        attrgetter("in_shape"),
        REQUIRED,
        column=Column("shape", 0, then="out_shape", justify="left"),
    ),
    Quantity("out_shape", "tuple[int, ...]", "per-example output shape S_{k+1}.", attrgetter("out_shape"), REQUIRED),
    Quantity(
        "local_rms",
        "float",
        "RMS singular value of J_k, ||J_k||_F / sqrt(n_in) (batch mean).",
        attrgetter("local.fro"),
        REQUIRED,
        formerly=("local_fro",),
        column=Column("rms σ", 1),
    ),
    Quantity(
        "local_rms_se",
        "float",
        "estimated standard error of ``local_rms`` (same units): 0 on explicit steps (exact), the "
        "Hutchinson probes' spread on matrix-free ones.",
        attrgetter("local.fro_se"),
        0.0,
        formerly=("local_fro_se",),
    ),
    Quantity(
        "local_sigma_max",
        "float",
        "largest singular value of J_k (batch mean).",
        attrgetter("local.sigma_max"),
        REQUIRED,
        column=Column("σ_max", 1),
    ),
    Quantity(
        "local_sigma_min",
        "float | None",
        "smallest singular value (batch mean; square steps, see ``sigma_min_kind``), else None.",
        attrgetter("local.sigma_min"),
        REQUIRED,
        column=Column("σ_min", 2, bound_mark=("sigma_min_kind", SIGMA_MIN_WEYL, "≥")),
    ),
    Quantity(
        "identity_gap",
        "float | None",
        "||J_k - I||_2 (batch mean; square steps), else None; singular values lie in [1-gap, 1+gap].",
        attrgetter("local.identity_gap"),
        REQUIRED,
        column=Column("‖J−I‖", 3),
    ),
    Quantity(
        "local_cond",
        "float | None",
        "condition number sigma_max / sigma_min, the ratio of the batch means (`condition_number`): "
        "None where sigma_min is not known (non-square steps, ``sigma_min=False``, a Weyl lower "
        "bound on matrix-free steps), inf where J_k is singular.",
        _local_cond,
        None,
        column=Column("κ", 4),
    ),
    Quantity(
        "cum_log_rms",
        "float",
        "log RMS singular value of J(0 -> k+1) = J_k ... J_0, the product through this step "
        "(batch mean of the per-example logs).",
        attrgetter("cum_log_rms"),
        REQUIRED,
        formerly=("cum_log_fro",),
        column=Column("log gain 0→k", 1, decimals=3),
    ),
    Quantity(
        "cum_log_rms_se",
        "float",
        "estimated standard error of ``cum_log_rms`` (natural log, so about the relative error of "
        "the gain): 0 where it is exact, the random frame's spread otherwise.",
        attrgetter("cum_log_rms_se"),
        0.0,
        formerly=("cum_log_fro_se",),
    ),
    Quantity(
        "grad_log_norm",
        "float",
        "log ||dE/dx_k|| at this step's input (batch mean of the per-example logs).",
        attrgetter("grad_log_norm"),
        REQUIRED,
    ),
    Quantity(
        "grad_ratio",
        "float",
        "||dE/dx_k|| / ||dE/dx_{k+1}||, the gradient gain across the step (exp of the batch mean of "
        "the per-example log ratios; below a step of `Report.zero_steps`, for a random projection "
        "placed at that step's input).",
        attrgetter("grad_ratio"),
        REQUIRED,
        column=Column("grad ratio", 1, digits=4),
    ),
    Quantity(
        "method",
        "str",
        '"exact" (full SVD), "explicit" (explicit J, Lanczos) or "matrix-free".',
        attrgetter("local.method"),
        REQUIRED,
    ),
    Quantity(
        "sigma_min_kind",
        "str | None",
        '"exact", "inverse-lanczos" (estimate) or "weyl-lower-bound" (a bound); None with no sigma_min.',
        attrgetter("local.sigma_min_kind"),
        REQUIRED,
    ),
)

BY_NAME: dict[str, Quantity] = {q.name: q for q in QUANTITIES}
# Old field name -> current name, from every quantity's ``formerly``.
FORMER_NAMES: dict[str, str] = {old: q.name for q in QUANTITIES for old in q.formerly}
