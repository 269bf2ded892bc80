"""The probe: per-step and end-to-end Jacobian statistics of a chain, and its report."""

from depthscope.probing._probe import ProbeWarning, probe
from depthscope.probing._report import BlockStats, Report
from depthscope.probing._verdict import VERDICT_LOG_GAIN, verdict

__all__ = ["BlockStats", "ProbeWarning", "Report", "VERDICT_LOG_GAIN", "probe", "verdict"]
