"""The probe: per-step and end-to-end Jacobian statistics of a chain, and its report."""

from depthscope.probe._probe import ProbeWarning, probe
from depthscope.probe._report import BlockStats, Report
from depthscope.probe._verdict import VERDICT_LOG_GAIN, verdict

__all__ = ["BlockStats", "ProbeWarning", "Report", "VERDICT_LOG_GAIN", "probe", "verdict"]
