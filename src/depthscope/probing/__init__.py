"""The probe: per-step and end-to-end Jacobian statistics of a chain, and its report.

The face of the package: other packages import these names from here, never from the private
modules. Inside (lowest first): `_warning` (`ProbeWarning`), `_options` (`ProbeOptions`, the
checked settings), `_quantities` (every per-step quantity declared once: field, batch reduction,
JSON, terminal column), `_report` (`BlockStats` built from those declarations, `Report`, JSON),
`_verdict` (verdicts and what drives them), `_routes` (the local statistics' route by a cost
model), `_stages` (the probe's stages), `_probe` (`probe`, which runs them and assembles the report).
"""

from depthscope.probing._options import DEFAULT_LYAPUNOV, DEFAULT_PROBES, METHODS, ProbeOptions
from depthscope.probing._probe import probe
from depthscope.probing._quantities import QUANTITIES, Column, Quantity, condition_number
from depthscope.probing._report import REPORT_FORMAT, BlockStats, Report
from depthscope.probing._verdict import DOMINANT_SHARE, EXPLODING, STABLE, VANISHING, VERDICT_LOG_GAIN, verdict
from depthscope.probing._warning import ProbeWarning

__all__ = [
    "BlockStats",
    "Column",
    "DEFAULT_LYAPUNOV",
    "DEFAULT_PROBES",
    "DOMINANT_SHARE",
    "EXPLODING",
    "METHODS",
    "ProbeOptions",
    "ProbeWarning",
    "QUANTITIES",
    "Quantity",
    "REPORT_FORMAT",
    "Report",
    "STABLE",
    "VANISHING",
    "VERDICT_LOG_GAIN",
    "condition_number",
    "probe",
    "verdict",
]
